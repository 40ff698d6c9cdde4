"""Monitoring: figures of a served window against brute force (AUC, residuals, by slice), SLO
breaches and alerts, output and input drift, bandit rewards from late labels, and the closed-loop
rollback with its cooldown (no flapping). Real DuckDB, a real folder registry and simulated
landed labels, all in tmp_path."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from ml import monitoring_job as M
from ml import predict, registry, simulate, storage, warehouse
from ml.config import PROJECT_ROOT
from ml.features import entity_key, load_schema
from ml.serving.bandit import Bandit

SCHEMA = str(PROJECT_ROOT / "include/schemas/traffic.yaml")
DAY = "2026-11-02"
T0 = dt.datetime(2026, 11, 3, 0, tzinfo=dt.UTC)  # windows are served hours from here on
EVALUATION = {"cost_false_negative": 5.0, "cost_false_positive": 1.0, "slice_by": "road_type"}
SLO = {"min_requests": 50, "max_error_rate": 0.01, "max_p99_latency_ms": 50.0}
QUALITY = {"min_labelled": 200, "min_auc": 0.70, "max_cost_weighted_error": 0.45, "min_slice_rows": 100,
           "min_slice_auc": 0.60}
OUTPUT = {"reference_days": 0, "max_ks": 0.3, "max_mean_shift": 0.1}
AHEAD = ["sensor_id", "date", "hour", "day_of_week", "is_holiday", "road_type", "lanes", "speed_limit_kmh",
         "latitude", "longitude", "district", "forecast_temp_c", "forecast_precip_mm", "forecast_wind_kmh",
         "scheduled_event", "roadworks"]


@pytest.fixture
def monitored(tmp_path):
    """One landed day of 40 sensors (labels), three registered versions (champion v0003,
    previous v0002), a DuckDB warehouse."""
    bucket = tmp_path / "bucket"
    simulate.simulate(str(bucket), DAY, 1, seed=5, sensors=40, forecast_days=0)
    landed = pacsv.read_csv(next((bucket / "landing" / f"dt={DAY}").glob("*.csv")), convert_options=pacsv.ConvertOptions(
        column_types={"date": pa.string(), "sensor_id": pa.string(), "hour": pa.int64()}))
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"not a model: the rollback never loads it")
    reg = {"kind": "local", "root": str(tmp_path / "registry")}
    models = registry.connect(reg)
    for _ in range(3):
        models.promote(models.register(model, {"metrics": {"auc": 0.8}}), reason="test")
    wh = {"kind": "duckdb", "path": str(tmp_path / "warehouse.duckdb"), "dataset": "prodml"}
    return {"registry": reg, "models": models, "warehouse": wh, "landed": landed,
            "landing": storage.to_uri(bucket / "landing"), "bucket": storage.to_uri(bucket)}


def good_scores(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(3.0 * (labels - 0.5) + rng.normal(0, 1.0, labels.size) - 1.5)))


def bad_scores(labels: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, labels.size)


def log_rows(monitored, *, start: dt.datetime, version: str, scores, path="head", latency=2.0, rows=None,
             date: str = DAY) -> pa.Table:
    """One served prediction per landed (sensor, hour) (or the first `rows`), within the hour from `start`."""
    landed = monitored["landed"].slice(0, rows)
    n = landed.num_rows
    features = [json.dumps({k: v for k, v in r.items() if k in AHEAD}) for r in landed.select(AHEAD).to_pylist()]
    return pa.table({
        "prediction_id": [f"{version}-{start:%H}-{i}" for i in range(n)],
        "served_at": pa.array([start + dt.timedelta(seconds=i % 3600) for i in range(n)], pa.timestamp("us", tz="UTC")),
        "entity_key": entity_keys(landed), "target_date": [date] * n, "features_hash": ["h"] * n, "features": features,
        "model_version": [version] * n,
        "path": path if isinstance(path, list) else [path] * n,
        "latency_ms": latency if isinstance(latency, list) else [latency] * n,
        "score": pa.array(np.asarray(scores[:n], dtype=np.float64)),
    })


def entity_keys(landed: pa.Table) -> pa.Array:
    """The traffic schema's entity key (sensor_id, hour) of each landed row, as the service logs it."""
    return pa.array([entity_key(k) for k in zip(landed.column("sensor_id").to_pylist(),
                                                 landed.column("hour").to_pylist(), strict=True)], pa.string())


def load(monitored, table: str, rows: pa.Table) -> None:
    with warehouse.connect(monitored["warehouse"]) as wh:
        wh.ensure_tables()
        predict.ensure_predictions_table(wh, load_schema(SCHEMA))
        wh.load_arrow(table, rows)


def labels(monitored) -> np.ndarray:
    return np.asarray(monitored["landed"].column("congested").to_pylist(), dtype=np.float64)


def run_window(monitored, start: dt.datetime, *, rollback_on=("auc", "cost_weighted_error"), input_drift=None,
               slo=SLO) -> dict:
    return M.evaluate_window(
        start=start.isoformat(), end=(start + dt.timedelta(hours=1)).isoformat(), run_id=f"run-{start:%d%H}",
        registry_config=monitored["registry"], warehouse_config=monitored["warehouse"], landing_uri=monitored["landing"],
        schema_path=SCHEMA, evaluation=EVALUATION, drift_config={}, lookback_hours=1, slo=slo, quality=QUALITY,
        output_drift=OUTPUT, input_drift=input_drift or {"min_rows": 10**9}, rollback_on=list(rollback_on))


def figures(monitored, start: dt.datetime) -> dict:
    with warehouse.connect(monitored["warehouse"]) as wh:
        rows = wh.query("SELECT * FROM prodml.monitoring_windows WHERE window_start = @s", {"s": start}).to_pylist()
    return {(r["model_version"], r["figure"], r["slice"]): r for r in rows}


def brute_auc(y, s) -> float:
    pos, neg = s[y == 1], s[y == 0]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (pos.size * neg.size))


def test_quality_figures_match_brute_force_overall_and_by_slice(monitored):
    y = labels(monitored)
    scores = good_scores(y, seed=1)
    load(monitored, "prediction_log", log_rows(monitored, start=T0, version="v0003", scores=scores))
    # predictions for a day whose labels have not landed: served, not labelled
    load(monitored, "prediction_log", log_rows(monitored, start=T0, version="v0003", scores=scores, rows=30, date="2026-11-04"))
    result = run_window(monitored, T0)
    got = figures(monitored, T0)
    n = y.size
    assert got[("v0003", "requests", "all")]["value"] == n + 30 and got[("v0003", "labelled", "all")]["value"] == n
    assert got[("v0003", "auc", "all")]["value"] == pytest.approx(brute_auc(y, scores))
    residual = y - scores
    assert got[("v0003", "residual_mean", "all")]["value"] == pytest.approx(residual.mean())
    assert got[("v0003", "residual_abs_mean", "all")]["value"] == pytest.approx(np.abs(residual).mean())
    assert got[("v0003", "brier", "all")]["value"] == pytest.approx((residual ** 2).mean())
    predicted = scores >= 1 / 6  # the cost-optimal threshold for c_fn = 5, c_fp = 1
    weights = np.where(y == 1, 5.0, 1.0)
    assert got[("v0003", "cost_weighted_error", "all")]["value"] == pytest.approx(
        (weights * (predicted != (y == 1))).sum() / weights.sum())
    roads = np.asarray(monitored["landed"].column("road_type").to_pylist())
    for road in set(roads.tolist()):
        mask = roads == road
        row = got[("v0003", "auc", f"road_type={road}")]
        assert row["value"] == pytest.approx(brute_auc(y[mask], scores[mask]))
        assert (row["threshold"] is None) == (mask.sum() < QUALITY["min_slice_rows"])  # small slices not judged
    assert got[("all", "auc", "all")]["value"] == pytest.approx(brute_auc(y, scores))
    assert got[("v0003", "auc", "all")]["threshold"] == 0.70 and not got[("v0003", "auc", "all")]["breached"]
    assert result["verdict"] == 0.0 and got[("v0003", "window_bad", "all")]["value"] == 0.0
    # a rerun replaces the window's rows, it never duplicates them
    run_window(monitored, T0)
    with warehouse.connect(monitored["warehouse"]) as wh:
        assert wh.query("SELECT COUNT(*) AS n FROM prodml.monitoring_windows").column("n")[0].as_py() == len(got)


def test_slo_breaches_are_stored_and_alerted_new_then_recurring(monitored):
    y = labels(monitored)
    n = 200
    paths = ["fallback" if i % 20 == 0 else "tail" for i in range(n)]  # 5 % not answered by a model
    latency = [300.0 if i % 10 == 0 else 3.0 for i in range(n)]  # p99 far above 50 ms
    for hour in range(2):
        load(monitored, "prediction_log", log_rows(monitored, start=T0 + dt.timedelta(hours=hour), version="v0003",
                                               scores=good_scores(y, 2), path=paths, latency=latency, rows=n))
    first = run_window(monitored, T0)
    got = figures(monitored, T0)
    assert got[("v0003", "error_rate", "all")]["value"] == pytest.approx(0.05)
    assert got[("v0003", "error_rate", "all")]["breached"] and got[("v0003", "latency_p99_ms", "all")]["breached"]
    assert got[("v0003", "latency_p50_ms", "all")]["value"] == pytest.approx(3.0)
    assert "v0003:error_rate[all]" in first["breaches"]
    assert first["verdict"] == 0.0  # SLOs are not in the rollback figures: alerted, not rolled back
    run_window(monitored, T0 + dt.timedelta(hours=1))
    with warehouse.connect(monitored["warehouse"]) as wh:
        rows = wh.run_sql_file("recent_alerts", {"limit": 100}).to_pylist()
    slo_alerts = [r for r in rows if r["source"] == "monitoring.error_rate" and "v0003" in r["message"]]
    assert sorted(r["is_new"] for r in slo_alerts) == [False, True]  # the second is the same kind of error
    # in the rollback figures, the same breach makes the window bad
    assert run_window(monitored, T0, rollback_on=["error_rate"])["verdict"] == 1.0


def test_a_thin_window_is_stored_not_judged(monitored):
    y = labels(monitored)
    load(monitored, "prediction_log", log_rows(monitored, start=T0, version="v0003", scores=bad_scores(y, 3), rows=20,
                                           path="fallback", latency=900.0))
    result = run_window(monitored, T0)
    got = figures(monitored, T0)
    assert got[("v0003", "error_rate", "all")]["value"] == 1.0 and got[("v0003", "error_rate", "all")]["threshold"] is None
    assert not any(r["breached"] for r in got.values())
    assert result["verdict"] is None and got[("v0003", "window_bad", "all")]["value"] is None  # no evidence


def test_output_drift_against_the_batch_predictions_of_the_same_keys(monitored):
    y = labels(monitored)
    scores = good_scores(y, 4)
    landed = monitored["landed"]
    load(monitored, "predictions", pa.table({
        "target_date": pa.array([dt.date.fromisoformat(DAY)] * y.size, pa.date32()),
        "sensor_id": landed.column("sensor_id").cast(pa.string()), "hour": landed.column("hour").cast(pa.int64()),
        "entity_key": entity_keys(landed), "score": pa.array(scores),
        "predicted_congested": pa.array((scores >= 1 / 6).astype(np.int64)), "model_version": ["v0003"] * y.size,
        "run_id": ["batch"] * y.size,
        "predicted_at": pa.array([T0] * y.size, pa.timestamp("us", tz="UTC"))}))
    load(monitored, "prediction_log", log_rows(monitored, start=T0, version="v0003", scores=scores))  # head hits
    shifted = np.clip(scores + 0.3, 0, 1)
    load(monitored, "prediction_log", log_rows(monitored, start=T0 + dt.timedelta(hours=1), version="v0003", scores=shifted))
    run_window(monitored, T0)
    run_window(monitored, T0 + dt.timedelta(hours=1))
    same, drifted = figures(monitored, T0), figures(monitored, T0 + dt.timedelta(hours=1))
    assert same[("v0003", "output_ks", "all")]["value"] == pytest.approx(0.0)
    assert not same[("v0003", "output_ks", "all")]["breached"]
    assert drifted[("v0003", "output_ks", "all")]["breached"] and drifted[("v0003", "output_mean_shift", "all")]["breached"]
    assert drifted[("v0003", "output_mean_shift", "all")]["value"] == pytest.approx(abs(shifted.mean() - scores.mean()))


def test_input_drift_of_served_instances_against_the_champion_reference(monitored):
    from ml import drift

    files = storage.glob(monitored["landing"] + f"/dt={DAY}/*.csv")
    drift.store_reference(monitored["models"], "v0003", files, SCHEMA, {})
    y = labels(monitored)
    load(monitored, "prediction_log", log_rows(monitored, start=T0, version="v0003", scores=good_scores(y, 5)))
    overrides = {"features": {"sensor_id": {"monitor": False}, "hour": {"monitor": False}}}
    run_window(monitored, T0, input_drift={"min_rows": 100, "drift": overrides})
    got = figures(monitored, T0)
    assert got[("all", "input_rows", "all")]["value"] == y.size  # distinct instances
    assert got[("all", "input_drifted_share", "all")]["value"] == 0.0  # served the training day itself
    with warehouse.connect(monitored["warehouse"]) as wh:
        scored = wh.query("SELECT feature, metric, value, breached FROM prodml.drift_scores WHERE run_id = 'run-0300'"
                          ).to_pylist()
    assert {"road_type", "forecast_temp_c", "lanes"} <= {r["feature"] for r in scored}  # every score stored
    assert not any(r["breached"] for r in scored)
    # the readings (known at the hour, never in a request) are missing from served traffic by design:
    # stored, not alarmed
    missing = [r for r in scored if r["feature"] == "vehicle_count" and r["metric"] == "missing"]
    assert missing and missing[0]["value"] == 1.0 and not missing[0]["breached"]


def test_bandit_rewards_once_per_labelled_date(monitored, tmp_path):
    y = labels(monitored)
    load(monitored, "prediction_log", log_rows(monitored, start=T0, version="v0003", scores=good_scores(y, 6)))
    load(monitored, "prediction_log", log_rows(monitored, start=T0, version="v0002", scores=bad_scores(y, 7)))
    state = monitored["bucket"] + "/serving/bandit.json"
    args = {"until": (T0 + dt.timedelta(hours=1)).isoformat(), "label_days": 3, "registry_config": monitored["registry"],
            "warehouse_config": monitored["warehouse"], "landing_uri": monitored["landing"], "schema_path": SCHEMA,
            "threshold": 1 / 6, "state_uri": state, "challengers": ["v0002"], "floor": 0.05,
            "guard_probability": 0.99, "guard_min_rewards": 200}
    first = M.update_bandit(**args)
    assert first["applied"] == [DAY] and first["shares"] == {"v0003": 1.0, "v0002": 0.0}  # v0002 stopped
    bandit = Bandit.load(state)
    right = int(((good_scores(y, 6) >= 1 / 6) == (y == 1)).sum())
    assert bandit.arms["v0003"]["successes"] == right and bandit.rewards("v0003") == y.size
    assert bandit.arms["v0002"]["stopped"] is not None  # random scores: clearly worse after 960 rewards
    assert M.update_bandit(**args)["applied"] == []  # the date's labels count once
    with warehouse.connect(monitored["warehouse"]) as wh:
        rows = wh.query("SELECT version, share, stopped FROM prodml.bandit_shares ORDER BY version").to_pylist()
        guard = wh.query("SELECT COUNT(*) AS n FROM prodml.alerts WHERE source = 'bandit.guard'").column("n")[0]
    assert [(r["version"], r["stopped"]) for r in rows] == [("v0002", True), ("v0003", False)]
    assert rows[1]["share"] == 1.0 and guard.as_py() == 1


def _judge_and_act(monitored, end: dt.datetime, *, cooldown_hours=24.0) -> dict:
    decision = M.check_rollback(window_end=end.isoformat(), run_id=f"run-{end:%d%H}", registry_config=monitored["registry"],
                                warehouse_config=monitored["warehouse"], consecutive_windows=3,
                                cooldown_hours=cooldown_hours, enabled=True, now=end)
    if decision["action"] == "rollback":
        M.execute_rollback(decision=decision, run_id=f"run-{end:%d%H}", registry_config=monitored["registry"],
                           warehouse_config=monitored["warehouse"], now=end)
    return decision


def _serve_and_judge(monitored, hour: int, version: str, good: bool) -> dict:
    y = labels(monitored)
    start = T0 + dt.timedelta(hours=hour)
    scores = good_scores(y, hour) if good else bad_scores(y, hour)
    load(monitored, "prediction_log", log_rows(monitored, start=start, version=version, scores=scores))
    run_window(monitored, start)
    return _judge_and_act(monitored, start + dt.timedelta(hours=1))


def test_closed_loop_rolls_back_once_then_holds_no_flapping(monitored):
    models = monitored["models"]
    assert models.aliases() == {"champion": "v0003", "previous": "v0002"}
    # ok, bad, bad, bad → one rollback, on the third bad window
    actions = [_serve_and_judge(monitored, h, "v0003", good)["action"] for h, good in enumerate([True, False, False, False])]
    assert actions == ["none", "none", "none", "rollback"]
    assert models.aliases() == {"champion": "v0002", "previous": "v0003"}
    # the restored champion goes bad too, inside the cooldown: confirmed, but held
    held = [_serve_and_judge(monitored, h, "v0002", False) for h in (4, 5, 6)]
    assert [d["action"] for d in held] == ["none", "none", "suppressed"] and "cooldown" in held[-1]["reason"]
    assert models.aliases()["champion"] == "v0002"
    # after the cooldown: still held, automatic rollback disarmed itself until a person re-arms it
    later = T0 + dt.timedelta(hours=4 + 25)
    disarmed = _judge_and_act(monitored, later)
    assert disarmed["action"] == "suppressed" and "re-arms" in disarmed["reason"]
    M.rearm(actor="alice", reason="v0002 investigated", warehouse_config=monitored["warehouse"],
            at=later + dt.timedelta(seconds=30))
    rearmed = _judge_and_act(monitored, later + dt.timedelta(minutes=1))
    # going back would restore v0003, the version the loop removed: held for a person to decide
    assert rearmed["action"] == "suppressed" and "v0003" in rearmed["reason"]
    assert [h["action"] for h in models.history()].count("rollback") == 1
    with warehouse.connect(monitored["warehouse"]) as wh:
        audit = wh.run_sql_file("rollback_audit_recent", {"limit": 50}).to_pylist()[::-1]
        alerts = wh.query("SELECT source FROM prodml.alerts").column("source").to_pylist()
    assert [a["action"] for a in audit] == ["rollback", "suppressed", "suppressed", "rearmed", "suppressed"]
    first = audit[0]
    assert (first["from_version"], first["to_version"], first["actor"]) == ("v0003", "v0002", "monitoring")
    assert len(json.loads(first["windows"])) == 3 and audit[3]["actor"] == "alice"
    assert "registry.rollback" in alerts and "monitoring.rollback_held" in alerts and "monitoring.window_bad" in alerts


def test_windows_without_evidence_do_not_break_or_count_towards_a_streak(monitored):
    assert _serve_and_judge(monitored, 0, "v0003", False)["action"] == "none"
    assert _serve_and_judge(monitored, 1, "v0003", False)["action"] == "none"
    run_window(monitored, T0 + dt.timedelta(hours=2))  # no traffic at all
    assert _judge_and_act(monitored, T0 + dt.timedelta(hours=3))["action"] == "none"
    assert _serve_and_judge(monitored, 3, "v0003", False)["action"] == "rollback"


def test_a_retried_rollback_does_not_flip_back(monitored):
    for hour in range(3):  # the third bad window rolls v0003 back to v0002 (run run-0303)
        _serve_and_judge(monitored, hour, "v0003", False)
    assert monitored["models"].aliases()["champion"] == "v0002"
    decision = {"action": "rollback", "reason": "test", "from_version": "v0003", "to_version": "v0002", "windows": []}
    retried = M.execute_rollback(decision=decision, run_id="run-0303", registry_config=monitored["registry"],
                                 warehouse_config=monitored["warehouse"], now=T0 + dt.timedelta(hours=3))
    assert retried["rolled_back"] and monitored["models"].aliases()["champion"] == "v0002"  # not flipped to v0003
    stale = M.execute_rollback(decision={**decision, "from_version": "v0001", "to_version": "v0003"}, run_id="run-x",
                               registry_config=monitored["registry"], warehouse_config=monitored["warehouse"], now=T0)
    assert not stale["rolled_back"] and monitored["models"].aliases()["champion"] == "v0002"  # the champion moved on
    with warehouse.connect(monitored["warehouse"]) as wh:
        audit = wh.query("SELECT action, run_id FROM prodml.rollback_audit ORDER BY acted_at").to_pylist()
    assert audit == [{"action": "suppressed", "run_id": "run-x"}, {"action": "rollback", "run_id": "run-0303"}]


@pytest.mark.parametrize("verdicts, audit, enabled, expected", [
    ([True, True], [], True, "none"),                                     # fewer than N judged windows
    ([True, False, True], [], True, "none"),                              # not N in a row
    ([True, True, True], [], True, "rollback"),
    ([True, True, True], [], False, "suppressed"),                        # off in the profile
    ([True, True, True], [("rollback", "monitoring", -2, "v0009")], True, "suppressed"),   # cooldown
    ([True, True, True], [("rollback", "monitoring", -30, "v0009")], True, "suppressed"),  # disarmed
    ([True, True, True], [("rearmed", "bob", -1, None), ("rollback", "monitoring", -30, "v0009")], True, "rollback"),
    ([True, True, True], [("rollback", "bob", -1, "v0009")], True, "rollback"),  # a person's rollback: no cooldown
    ([True, True, True], [("rearmed", "bob", -1, None), ("rollback", "monitoring", -30, "v0001")], True,
     "suppressed"),                                                        # previous was rolled back automatically
])
def test_rollback_policy(verdicts, audit, enabled, expected):
    now = T0
    rows = [{"action": a, "actor": who, "acted_at": now + dt.timedelta(hours=h), "from_version": v}
            for a, who, h, v in audit]
    decision = M.decide_rollback(verdicts=[{"window_end": now, "breached": b} for b in verdicts], audit=rows,
                                 champion="v0002", previous="v0001", now=now, consecutive_windows=3,
                                 cooldown_hours=24, enabled=enabled)
    assert decision["action"] == expected, decision["reason"]
    assert decision["to_version"] == ("v0001" if expected == "rollback" else None)


def test_resolve_window_floors_to_the_grid():
    w = M.resolve_window(explicit_end=None, run_time=dt.datetime(2026, 11, 3, 10, 17, tzinfo=dt.UTC), minutes=60)
    assert (w["start"], w["end"]) == ("2026-11-03T09:00:00+00:00", "2026-11-03T10:00:00+00:00")
    assert w["id"] == "20261103T0900-60m"
    explicit = M.resolve_window(explicit_end="2026-11-03T12:00:00", run_time=T0, minutes=15)
    assert (explicit["start"], explicit["end"]) == ("2026-11-03T11:45:00+00:00", "2026-11-03T12:00:00+00:00")


DAG_RUNS = """
import datetime as dt, json, sys
sys.path[:0] = [{root!r}, {root!r} + "/plugins"]
from scripts import airflow_env
airflow_env.apply(airflow_home={home!r}, data_dir={data!r})
airflow_env.init_db()
import pyarrow as pa, pyarrow.csv as pacsv
import tests.ml.test_monitoring as T
from ml import predict, registry, simulate, storage, warehouse
from ml.config import load
cfg = load()
bucket = storage.to_path(cfg["storage"]["bucket"])
simulate.simulate(str(bucket), T.DAY, 1, seed=5, sensors=40, forecast_days=0)
landed = pacsv.read_csv(next((bucket / "landing" / f"dt={{T.DAY}}").glob("*.csv")), convert_options=pacsv.ConvertOptions(
    column_types={{"date": pa.string(), "sensor_id": pa.string(), "hour": pa.int64()}}))
model = bucket.parent / "model"
model.mkdir()
(model / "saved_model.pb").write_bytes(b"x")
models = registry.connect(cfg["registry"])
for _ in range(3):
    models.promote(models.register(model, {{}}), reason="test")
monitored = {{"landed": landed, "warehouse": cfg["warehouse"]}}
for h in range(3):
    T.load(monitored, "prediction_log", T.log_rows(monitored, start=T.T0 + dt.timedelta(hours=h), version="v0003",
                                               scores=T.bad_scores(T.labels(monitored), h)))
dag = airflow_env.get_dag("monitoring")
states = []
for h in range(1, 4):
    run = dag.test(logical_date=T.T0 + dt.timedelta(hours=h, minutes=5),
                   run_conf={{"window_end": (T.T0 + dt.timedelta(hours=h)).isoformat()}})
    states.append({{ti.task_id: str(ti.state) for ti in run.get_task_instances()}})
with warehouse.connect(cfg["warehouse"]) as wh:
    audit = wh.run_sql_file("rollback_audit_recent", {{"limit": 5}}).to_pylist()
print(json.dumps({{"states": states, "aliases": models.aliases(), "audit": audit}}, default=str))
"""


@pytest.mark.slow
def test_the_monitoring_dag_rolls_back_through_airflow(tmp_path):
    """Three hourly runs of the real DAG (dag.test) over bad windows: the third rolls back, once."""
    import os
    import subprocess
    import sys

    code = DAG_RUNS.format(root=str(PROJECT_ROOT), home=str(tmp_path / "home"), data=str(tmp_path / "data"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PRODML_PROFILE": "local"}, cwd=PROJECT_ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    skipped = [s["roll_back"] for s in result["states"]]
    assert skipped == ["skipped", "skipped", "success"]  # the champion Asset fires only on a rollback
    assert all(s["evaluate"] == s["update_bandit"] == s["refresh_advice"] == "success" for s in result["states"])
    assert result["aliases"] == {"champion": "v0002", "previous": "v0003"}
    assert [(a["action"], a["from_version"], a["to_version"]) for a in result["audit"]] == [("rollback", "v0003", "v0002")]
