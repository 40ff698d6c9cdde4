"""Serving advisor: entropy and peakedness against the textbook, head coverage on Zipf keys, the
recommendation and its cost table, the request log (real DuckDB), the advice batch prediction reads."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import entropy as scipy_entropy

from ml import storage
from ml.features import entity_key
from ml.prediction_job import rows_with_keys
from ml.serving import advisor
from ml.warehouse import DuckDBWarehouse

SETTINGS = {"target_share": 0.8, "max_static_keys": 1000, "min_peakedness": 0.15, "cost_per_stored_row": 2e-7,
            "cost_per_online_call": 5e-6}
NOW = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)


def zipf_keys(n_keys: int, s: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n request keys drawn from Zipf(s) over n_keys keys (rank r has probability ∝ r^-s); the pmf."""
    pmf = 1.0 / np.arange(1, n_keys + 1) ** s
    pmf /= pmf.sum()
    return np.random.default_rng(seed).choice(n_keys, size=n, p=pmf), pmf


def test_entropy_and_peakedness_are_the_textbook_definitions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(0, 50, size=int(rng.integers(2, 300)))
        counts[0] = 1  # at least two keys with requests
        counts[1] = 3
        assert advisor.entropy(counts) == pytest.approx(scipy_entropy(counts))  # natural log
        k = int((counts > 0).sum())
        assert advisor.peakedness(counts) == pytest.approx(1 - scipy_entropy(counts) / math.log(k))
    assert advisor.peakedness([7] * 40) == pytest.approx(0.0, abs=1e-12)  # evenly spread
    assert advisor.peakedness([5]) == 1.0 and advisor.peakedness([0, 9, 0]) == 1.0  # one key takes all
    assert advisor.peakedness([]) is None
    # two keys 3:1 → H = -(3/4 ln 3/4 + 1/4 ln 1/4), K = 2
    assert advisor.peakedness([3, 1]) == pytest.approx(1 - (-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / math.log(2))


def test_head_on_zipf_keys_covers_the_target_with_the_known_size():
    keys, pmf = zipf_keys(1000, 1.1, 200_000, seed=1)
    counts = advisor.count_keys(keys.tolist())
    head, share = advisor.head(counts, 0.8)
    known = int(np.searchsorted(np.cumsum(pmf), 0.8) + 1)  # fewest top ranks with 80 % of the mass
    assert abs(len(head) - known) <= 0.05 * known
    assert share >= 0.8
    total = sum(counts.values())
    assert sum(counts[k] for k in head[:-1]) / total < 0.8  # minimal: one key fewer misses the target
    assert head[:5] == [0, 1, 2, 3, 4]  # the most requested ranks first
    assert advisor.head(counts, 0.0) == ([], 0.0)
    assert len(advisor.head(counts, 1.0)[0]) == len(counts)
    with pytest.raises(ValueError):
        advisor.head(counts, 1.5)


def test_zipf_traffic_is_hybrid_flat_traffic_dynamic_small_key_space_static():
    keys, _ = zipf_keys(4800, 1.0, 20_000, seed=2)
    peaked = advisor.advise(advisor.count_keys(keys.tolist()), days=1, **SETTINGS)
    assert peaked["recommendation"] == "hybrid" and peaked["peakedness"] >= 0.15
    assert peaked["head_keys"] and len(peaked["head_keys"]) == peaked["head_size"]

    flat = np.random.default_rng(3).integers(0, 4800, size=20_000)
    spread = advisor.advise(advisor.count_keys(flat.tolist()), days=1, **SETTINGS)
    assert spread["recommendation"] == "dynamic" and spread["peakedness"] < 0.05 and spread["head_keys"] == []

    small = advisor.advise(advisor.count_keys(keys[keys < 500].tolist()), days=1, **SETTINGS)
    assert small["recommendation"] == "static" and small["head_keys"] is None  # None: precompute every key


def test_the_trade_off_in_numbers():
    counts = {("S0001", 8): 600, ("S0002", 8): 300, ("S0003", 9): 60, ("S0004", 9): 40}
    advice = advisor.advise(counts, days=2, target_share=0.9, max_static_keys=1, min_peakedness=0.1,
                            cost_per_stored_row=0.01, cost_per_online_call=0.002, key_space=10,
                            key_columns=["sensor_id", "hour"])
    assert advice["requests"] == 1000 and advice["requests_per_day"] == 500 and advice["cardinality"] == 4
    assert advice["head_size"] == 2 and advice["head_share"] == pytest.approx(0.9)
    static, dynamic, hybrid = (advice["options"][k] for k in ("static", "dynamic", "hybrid"))
    assert (static["rows_stored"], static["model_calls_per_day"]) == (10, 0)  # the whole key space
    assert static["cost_per_day"] == pytest.approx(10 * 0.01)
    assert (dynamic["rows_stored"], dynamic["model_calls_per_day"]) == (0, 500)
    assert dynamic["cost_per_day"] == pytest.approx(500 * 0.002)
    assert hybrid["rows_stored"] == 2 and hybrid["model_calls_per_day"] == pytest.approx(50)
    assert hybrid["cost_per_day"] == pytest.approx(2 * 0.01 + 50 * 0.002)
    assert advice["cheapest"] == "static"
    # break-even: a key pays its row when requests/day x call cost > row cost (5 requests/day here)
    assert advice["break_even_requests_per_day"] == pytest.approx(5)
    assert advice["cost_optimal_head_size"] == 4  # 300/day, 150, 30, 20: all above 5
    assert advice["head_keys"] == [{"sensor_id": "S0001", "hour": 8}, {"sensor_id": "S0002", "hour": 8}]
    assert "hybrid" in advisor.table(advice) and "<- advised" in advisor.table(advice)


KEYS = ["sensor_id", "hour"]  # the traffic schema's entity keys (its keys without the partition column)


def _log_rows(keys: list[tuple[str, int]], served_at: dt.datetime) -> pa.Table:
    n = len(keys)
    return pa.table({
        "prediction_id": [f"p{i}" for i in range(n)],
        "served_at": pa.array([served_at] * n, pa.timestamp("us", tz="UTC")),
        "entity_key": [entity_key(k) for k in keys], "target_date": ["2026-11-09"] * n,
        "features_hash": ["h"] * n, "features": ["{}"] * n, "model_version": ["v0001"] * n,
        "path": ["head"] * n, "latency_ms": [1.0] * n, "score": [0.5] * n,
    })


def test_refresh_from_the_request_log_writes_the_advice_batch_prediction_reads(tmp_path):
    ranks, _ = zipf_keys(2400, 1.1, 5000, seed=4)
    keys = [(f"S{r // 24 + 1:04d}", int(r % 24)) for r in ranks]
    uri = storage.to_uri(tmp_path / "bucket") + "/serving/advice.json"
    settings = {**SETTINGS, "max_static_keys": 100}
    with DuckDBWarehouse(tmp_path / "w.duckdb", "prodml") as wh:
        wh.ensure_tables()
        wh.load_arrow("prediction_log", _log_rows(keys, NOW - dt.timedelta(hours=3)))
        wh.load_arrow("prediction_log", _log_rows(keys[:100], NOW - dt.timedelta(days=9)))  # outside the window
        assert advisor.advised_keys(uri) is None  # no advice yet: batch prediction scores every key
        thin = advisor.refresh(wh, until=NOW, days=7, min_requests=10_000, advice_uri=uri, key_columns=KEYS,
                               **settings)
        assert not thin["written"] and not storage.exists(uri)
        advice = advisor.refresh(wh, until=NOW, days=7, min_requests=1000, advice_uri=uri, key_columns=KEYS,
                                 **settings)
    assert advice["written"] and advice["requests"] == 5000 and advice["recommendation"] == "hybrid"
    stored = json.loads(storage.read_text(uri))
    assert stored["head_size"] == advice["head_size"] and stored["window"]["until"] == NOW.isoformat()
    head = advisor.advised_keys(uri)
    expected, _ = advisor.head(advisor.count_keys(keys), 0.8)
    assert [(k["sensor_id"], k["hour"]) for k in head] == expected

    # batch prediction keeps exactly the head's rows of the day's forecast table
    forecast = pa.table({"sensor_id": [f"S{i // 24 + 1:04d}" for i in range(2400)],
                         "hour": pa.array([i % 24 for i in range(2400)], pa.int64()),
                         "date": ["2026-11-10"] * 2400})
    kept = rows_with_keys(forecast, head)
    assert kept.num_rows == len(head)
    assert set(zip(kept.column("sensor_id").to_pylist(), kept.column("hour").to_pylist(), strict=True)) == set(expected)
    assert rows_with_keys(forecast, []).num_rows == 0  # dynamic: nothing precomputed


def test_cli_prints_the_table_and_json_from_a_key_file(tmp_path, capsys):
    ranks, _ = zipf_keys(2400, 1.2, 3000, seed=5)
    path = tmp_path / "keys.csv"
    path.write_text("sensor_id,hour\n" + "".join(f"S{r // 24 + 1:04d},{r % 24}\n" for r in ranks))
    assert advisor.main(["--keys", str(path), "--days", "1", "--key-space", "2400", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recommendation"] == "hybrid" and out["requests"] == 3000 and "head_keys" not in out
    assert out["key_space"] == 2400 and out["options"]["static"]["rows_stored"] == 2400
    assert advisor.main(["--keys", str(path), "--days", "1", "--key-space", "2400"]) == 0
    assert "advice: hybrid" in capsys.readouterr().out
