"""Bandit routing: the guard's exact probability against numerical integration, convergence on
simulated rewards, the guard, the exploration floor, persistence, the service's router, and the
Vertex AI traffic split built with the client library's types."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from ml import storage
from ml.serving.bandit import (
    Bandit,
    ThompsonBandit,
    deployed_model,
    parse_versions,
    prob_less,
    rewards_from_labels,
    traffic_percentages,
    update_endpoint_request,
    vertex_traffic_split,
)

# The convergence claim: champion right 70 % of the time, challenger 80 %; rewards applied in
# windows of 100 requests (as the monitoring DAG applies late labels in batches). From this round
# on, the better arm serves >= 80 % of every 100-request block (measured: worst of 20 seeds, 800).
ROUNDS_TO_80 = 1000


def simulate(rates: dict, rounds: int, seed: int, window: int = 100, **options) -> tuple[Bandit, list[str]]:
    rng = np.random.default_rng(seed)
    versions = list(rates)
    bandit = Bandit(versions[0], versions[1:], **options)
    chosen, pending = [], {}
    for r in range(1, rounds + 1):
        version = bandit.choose(rng)
        chosen.append(version)
        right = rng.random() < rates[version]
        wins, losses = pending.get(version, (0, 0))
        pending[version] = (wins + right, losses + (not right))
        if r % window == 0:
            bandit.apply_window(f"w{r}", pending)
            pending = {}
    return bandit, chosen


@pytest.mark.parametrize("params", [(3, 5, 4, 2), (30, 20, 25, 25), (200, 100, 190, 110), (1, 1, 1, 1)])
def test_prob_less_is_the_integral(params):
    a1, b1, a2, b2 = params
    exact, _ = integrate.quad(lambda y: stats.beta.cdf(y, a1, b1) * stats.beta.pdf(y, a2, b2), 0, 1, limit=200)
    assert prob_less(a1, b1, a2, b2) == pytest.approx(exact, abs=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_the_better_arm_gets_80_percent_of_traffic_within_the_stated_rounds(seed):
    bandit, chosen = simulate({"v0001": 0.70, "v0002": 0.80}, rounds=3000, seed=seed)
    blocks = np.asarray(chosen[ROUNDS_TO_80:]).reshape(-1, 100)
    assert ((blocks == "v0002").mean(axis=1) >= 0.8).all()
    assert bandit.shares()["v0002"] >= 0.9
    assert bandit.arms["v0002"]["stopped"] is None  # the guard stops losers only


def test_the_guard_stops_a_clearly_losing_challenger():
    bandit, chosen = simulate({"v0001": 0.75, "v0002": 0.55, "v0003": 0.76}, rounds=12000, seed=7)
    stopped = bandit.arms["v0002"]["stopped"]
    assert stopped is not None and stopped["p_worse"] > 0.99 and stopped["rewards"] >= 200
    assert bandit.shares()["v0002"] == 0.0 and "v0002" not in bandit.active()
    last = np.asarray(chosen[-2000:])
    assert (last == "v0002").sum() == 0  # never chosen again
    assert bandit.arms["v0003"]["stopped"] is None and bandit.arms["v0001"]["stopped"] is None


def test_the_guard_waits_for_its_minimum_of_rewards():
    bandit = Bandit("v0001", ["v0002"], guard_min_rewards=50)
    bandit.update_counts("v0001", successes=900, failures=100)
    assert bandit.update_counts("v0002", successes=0, failures=49) is None  # clearly worse, too few rewards
    assert bandit.update("v0002", False)["rewards"] == 50  # the 50th reward stops it
    assert bandit.p_worse("v0002") > 0.99


def test_the_floor_is_respected():
    bandit = Bandit("v0001", ["v0002", "v0003"], floor=0.05)
    bandit.update_counts("v0001", successes=9000, failures=1000)
    for v in ("v0002", "v0003"):
        bandit.arms[v]["successes"], bandit.arms[v]["failures"] = 100, 900  # no guard here: counts set directly
    shares = bandit.shares()
    assert shares["v0002"] == pytest.approx(0.05) and shares["v0003"] == pytest.approx(0.05)
    assert sum(shares.values()) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    chosen = np.asarray([bandit.choose(rng) for _ in range(20000)])
    for v in ("v0002", "v0003"):  # 5 % each; binomial sd ~0.15 % at this n
        assert (chosen == v).mean() == pytest.approx(0.05, abs=0.006)
    # a floor larger than 1/n means uniform
    assert Bandit("a", ["b", "c"], floor=0.5).shares() == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_state_round_trips_and_windows_apply_once(tmp_path):
    bandit = Bandit("v0001", ["v0002"], floor=0.1, guard_probability=0.97, guard_min_rewards=30)
    assert bandit.apply_window("labels:2026-11-02", {"v0001": (40, 10), "v0002": (30, 20), "v0009": (5, 5)})
    assert not bandit.apply_window("labels:2026-11-02", {"v0001": (40, 10)})  # a rerun counts nothing
    assert bandit.posterior("v0001") == (41, 11) and "v0009" not in bandit.arms
    uri = storage.to_uri(tmp_path) + "/serving/bandit.json"
    bandit.save(uri)
    again = Bandit.load(uri)
    assert again.to_json() == bandit.to_json() and again.shares() == bandit.shares()
    assert Bandit.load(storage.to_uri(tmp_path) + "/missing.json") is None
    # the registry moves on: v0002 becomes champion, v0003 a new challenger, v0001 leaves
    assert again.sync("v0002", ["v0003"]) == ["v0001"]
    assert again.champion == "v0002" and again.posterior("v0003") == (1, 1) and again.posterior("v0002") == (31, 21)


def test_share_rows_for_the_warehouse():
    bandit = Bandit("v0001", ["v0002"])
    bandit.update_counts("v0001", successes=70, failures=30)
    import datetime as dt

    rows = bandit.share_rows(window_id="labels:2026-11-02", at=dt.datetime(2026, 11, 3, tzinfo=dt.UTC)).to_pylist()
    assert [r["role"] for r in rows] == ["champion", "challenger"]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert rows[0]["p_worse_than_champion"] is None and 0 < rows[1]["p_worse_than_champion"] < 1
    assert rows[0]["successes"] == 70 and rows[1]["stopped"] is False


def test_rewards_from_labels_brute_force():
    versions = ["a", "a", "b", "b", "b"]
    scores = [0.9, 0.1, 0.5, 0.05, 0.2]
    labels = [1, 1, 0, 0, 1]
    threshold = 1 / 6
    expected = {}
    for v, s, y in zip(versions, scores, labels, strict=True):
        wins, losses = expected.get(v, (0, 0))
        right = (s >= threshold) == bool(y)
        expected[v] = (wins + right, losses + (not right))
    assert rewards_from_labels(versions, scores, labels, threshold) == expected == {"a": (1, 1), "b": (2, 1)}


def test_the_service_router_follows_the_stored_posterior(tmp_path):
    uri = storage.to_uri(tmp_path) + "/bandit.json"
    learned = Bandit("v0001", ["v0002", "v0003"], floor=0.05)
    learned.update_counts("v0001", successes=300, failures=700)
    learned.update_counts("v0002", successes=900, failures=100)
    learned.arms["v0003"]["stopped"] = {"p_worse": 1.0, "rewards": 500, "reason": "stopped"}
    learned.save(uri)
    router = ThompsonBandit(state_uri=uri, seed=1)
    picks = [router.choose(["v0001", "v0002", "v0003"]) for _ in range(4000)]
    assert picks.count("v0003") == 0  # stopped by the guard
    assert picks.count("v0002") / len(picks) >= 0.9
    assert router.shares()["v0002"] == pytest.approx(0.95, abs=0.01)
    # no stored state: the prior, over the versions the service has loaded (champion first)
    fresh = ThompsonBandit(seed=2)
    assert fresh.choose(["v0005"]) == "v0005"
    assert set(fresh.shares()) == {"v0005"}
    assert parse_versions(" v0002, v0003 ,") == ["v0002", "v0003"] and parse_versions(None) == []


def test_traffic_percentages_sum_to_100_and_keep_the_floor():
    assert traffic_percentages({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}) == {"a": 34, "b": 33, "c": 33}
    split = traffic_percentages({"v0001": 0.05, "v0002": 0.8977, "v0003": 0.0523, "v0004": 0.0})
    assert sum(split.values()) == 100 and split["v0001"] >= 5 and split["v0003"] >= 5 and split["v0004"] == 0
    rng = np.random.default_rng(0)
    for _ in range(200):
        shares = dict(zip("abcde", rng.dirichlet(np.ones(5)), strict=True))
        points = traffic_percentages(shares)
        assert sum(points.values()) == 100
        assert all(abs(points[k] - 100 * shares[k]) < 1 for k in shares)
    with pytest.raises(ValueError):
        traffic_percentages({"a": 0.0})


def test_vertex_endpoint_traffic_split_with_the_client_types():
    from google.cloud.aiplatform_v1.types import DeployedModel, DeployModelRequest, UpdateEndpointRequest

    endpoint = "projects/p/locations/europe-west4/endpoints/123"
    model = "projects/p/locations/europe-west4/models/prodml-traffic"
    shares = {"v0003": 0.9, "v0004": 0.1, "v0002": 0.0}
    assert vertex_traffic_split(shares) == {"3": 90, "4": 10}  # stopped versions left out
    request = update_endpoint_request(endpoint=endpoint, shares=shares)
    assert isinstance(request, UpdateEndpointRequest)
    assert dict(request.endpoint.traffic_split) == {"3": 90, "4": 10} and request.endpoint.name == endpoint
    assert list(request.update_mask.paths) == ["traffic_split"]
    assert UpdateEndpointRequest.deserialize(UpdateEndpointRequest.serialize(request)) == request
    deployed = deployed_model(version="v0004", model=model)
    assert isinstance(deployed, DeployedModel) and deployed.id == "4" and deployed.model == f"{model}@v0004"
    assert deployed.dedicated_resources.min_replica_count == 1
    # a new challenger deployed with its share ("0" names the model being deployed)
    deploy = DeployModelRequest(endpoint=endpoint, deployed_model=deployed,
                                traffic_split={"3": 90, "0": 10})
    assert sum(deploy.traffic_split.values()) == 100
    with pytest.raises(ValueError):
        vertex_traffic_split({"champion": 1.0})  # DeployedModel ids are digits: pass the registry version
    assert vertex_traffic_split({"champion": 1.0}, {"champion": "77"}) == {"77": 100}
