"""Which path answers: head hits from the champion's batch partition, tail misses from the champion
SavedModel (the same scores batch prediction computes), fallback without a model; the head follows
new partitions and new champions."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest

from ml import features as F
from ml import predict
from ml import warehouse as W
from tests.serving.conftest import DAY, HEAD_KEYS, HEAD_SCORE, SCHEMA, auth, head_rows, instance


def _predict(client, rows) -> list[dict]:
    r = client.post("/predict", json={"instances": rows}, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _wait_for(client, check, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = client.get("/healthz").json()
        if check(health):
            return health
        time.sleep(0.05)
    raise AssertionError(f"not reached in {timeout_s} s: {health}")


def test_head_hit_tail_miss_and_their_versions(make_client, world):
    client = make_client()
    one = world["versions"][0]
    hit, miss, other_day = instance(*HEAD_KEYS[0]), instance("S0777", DAY, 8), instance("S0001", "2026-11-21", 8)
    out = _predict(client, [hit, miss, other_day, instance(*HEAD_KEYS[2])])
    assert [p["path"] for p in out] == ["head", "tail", "tail", "head"]
    assert {p["model_version"] for p in out} == {one}
    assert out[0]["score"] == HEAD_SCORE and out[3]["score"] == HEAD_SCORE
    assert len({p["prediction_id"] for p in out}) == 4 and all(len(p["prediction_id"]) == 32 for p in out)
    # The tail scores are what batch prediction computes for the same rows (one transform, in the model).
    schema = F.load_schema(SCHEMA)
    rows = [miss, other_day]
    model = predict.load_model(world["registry"].get("champion")["path"])
    batch = predict.score_columns(model, F.to_model_inputs(schema, {f.name: [r[f.name] for r in rows]
                                                                     for f in schema.model_inputs}))
    np.testing.assert_allclose([out[1]["score"], out[2]["score"]], batch, rtol=1e-6)
    assert 0.0 < out[1]["score"] < 1.0
    health = client.get("/healthz").json()
    assert health["head"] == {"rows": 3, "dates": [DAY], "model_version": one}
    metrics = client.get("/metrics").text
    assert "prodml_head_hit_ratio 0.5" in metrics
    assert f'prodml_predictions_total{{model_version="{one}",path="head"}} 2.0' in metrics
    assert f'prodml_predictions_total{{model_version="{one}",path="tail"}} 2.0' in metrics


def test_without_a_champion_the_fallback_answers(make_client, world):
    import json

    from ml.storage import to_path

    aliases = to_path(world["config"]["registry"]["root"]) / "aliases.json"
    aliases.write_text(json.dumps({"champion": None, "previous": None}))
    client = make_client()
    out = _predict(client, [instance(*HEAD_KEYS[0]), instance("S0777")])
    assert [(p["path"], p["model_version"]) for p in out] == [("fallback", "fallback")] * 2


def test_a_new_partition_is_picked_up(make_client, world):
    client = make_client()
    one = world["versions"][0]
    new_key = ("S0555", "2026-11-21", 17)
    assert _predict(client, [instance(*new_key)])[0]["path"] == "tail"
    with client.app.state.service.warehouse_session() as wh:  # the service's process: take turns
        wh.replace_partition("predictions", head_rows(one, [new_key], score=0.777), "target_date",
                             dt.date(2026, 11, 21))
    _wait_for(client, lambda h: h["head"]["dates"] == [DAY, "2026-11-21"])
    out = _predict(client, [instance(*new_key), instance(*HEAD_KEYS[0])])
    assert [(p["path"], p["score"]) for p in out] == [("head", 0.777), ("head", HEAD_SCORE)]


def test_head_days_keeps_the_newest_partitions_only(make_client, world):
    one = world["versions"][0]
    with W.connect(world["config"]["warehouse"]) as wh:
        wh.replace_partition("predictions", head_rows(one, [("S0001", "2026-11-21", 8)], score=0.5), "target_date",
                             dt.date(2026, 11, 21))
    client = make_client(head_days=1)
    out = _predict(client, [instance(*HEAD_KEYS[0]), instance("S0001", "2026-11-21", 8)])
    assert [p["path"] for p in out] == ["tail", "head"]


def test_a_new_champion_empties_the_head_until_its_own_partition_lands(make_client, world):
    """Rows written by another version are never served as head: every answer's model_version is
    the model that computed it."""
    client = make_client()
    one, two = world["versions"]
    world["registry"].promote(two, "test")
    _wait_for(client, lambda h: h["champion"] == two)
    out = _predict(client, [instance(*HEAD_KEYS[0])])
    assert (out[0]["path"], out[0]["model_version"]) == ("tail", two)
    with client.app.state.service.warehouse_session() as wh:
        wh.replace_partition("predictions", head_rows(two, score=0.321), "target_date", dt.date.fromisoformat(DAY))
    _wait_for(client, lambda h: h["head"]["model_version"] == two and h["head"]["rows"] == 3)
    out = _predict(client, [instance(*HEAD_KEYS[0])])
    assert (out[0]["path"], out[0]["model_version"], out[0]["score"]) == ("head", two, 0.321)


class _Alternate:
    """A stand-in for the bandit: alternates between the versions; reports its shares."""

    def __init__(self, **options):
        self.options, self.i = options, 0

    def choose(self, versions):
        self.i += 1
        return versions[self.i % len(versions)]

    def shares(self):
        return {"v0001": 0.5, "v0002": 0.5}


def test_challengers_are_routed_through_the_router_and_shares_are_metrics(make_client, world, monkeypatch):
    from ml.serving import service

    made = []
    monkeypatch.setattr(service, "make_router", lambda options: made.append(options) or _Alternate(**options))
    client = make_client(challengers=("v0002",), bandit={"floor": 0.1})
    assert client.get("/healthz").json()["versions"] == ["v0001", "v0002"] and made == [{"floor": 0.1}]
    out = _predict(client, [instance(f"S{i:04d}", DAY, 3) for i in range(100, 110)])
    assert {p["model_version"] for p in out} == {"v0001", "v0002"} and {p["path"] for p in out} == {"tail"}
    metrics = client.get("/metrics").text
    assert 'prodml_route_share{model_version="v0001"} 0.5' in metrics
    assert 'prodml_model_info{model_version="v0002",role="challenger"} 1.0' in metrics


def test_without_a_router_the_observed_split_is_exported(make_client):
    client = make_client()
    _predict(client, [instance("S0900", DAY, 3)])
    assert 'prodml_route_share{model_version="v0001"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize("n", [1, 40])
def test_tail_rows_keep_their_order_in_a_micro_batch(make_client, n):
    client = make_client(max_batch=16)
    rows = [instance(f"S{1000 + i:04d}", DAY, i % 24, lanes=1 + i % 6) for i in range(n)]
    out = _predict(client, rows)
    single = [_predict(client, [row])[0]["score"] for row in rows[:5]]
    assert [p["score"] for p in out[:5]] == pytest.approx(single, rel=1e-6)
