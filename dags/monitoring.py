"""
### monitoring

Hourly watch over online serving (the `prediction_log` the service writes) and the closed loop.

`window` (the hour before the run's time; a `window_end` param picks another) → `evaluate`
(`ml.monitoring_job.evaluate_window`): SLOs (error rate, p99 latency) and output drift (served
scores vs the batch predictions of the same keys) of the hour; quality from late labels (AUC,
cost-weighted error, residuals, by road type) and input drift (vs the champion's training
reference) over the last `lookback_hours`; every figure in `monitoring_windows`, breaches alerted
(new kinds of error flagged by signature). `update_bandit`: late-label rewards, once per landed
date, teach the routing bandit; its shares go to `bandit_shares`. `refresh_advice`: the serving
advisor re-reads the request log (`batch_prediction` precomputes its head).

**Closed-loop rollback** (`monitoring.rollback`): `judge_rollback` confirms a breach when the
champion's last N judged windows are all bad, then `roll_back` moves the champion back to
`previous` (the champion Asset fires: `batch_prediction` rescores) and writes a `rollback_audit`
row. Held back, with an audit row and an alert: within the cooldown of the last automatic
rollback; after one automatic rollback until a person re-arms it (param `rearm_by`, or
`python -m ml.monitoring_job rearm --by NAME --reason TEXT`); when `previous` was itself rolled
back automatically.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronTriggerTimetable, Param, dag, task
from prodml_airflow.assets import CHAMPION
from prodml_airflow.defaults import default_args
from prodml_airflow.failures import fail_fast
from prodml_airflow.targets import google_cloud
from prodml_airflow.vertex_endpoint import vertex_endpoint
from prodml_airflow.vertex_mirror import vertex_mirror

from ml.config import load

CONFIG = load()
MONITORING, ADVISOR = CONFIG["monitoring"], CONFIG["advisor"]
SERVING = CONFIG.get("serving") or {}
BANDIT = SERVING.get("bandit") or {}
ROLLBACK = MONITORING["rollback"]


@dag(
    dag_id="monitoring",
    description="Hourly: SLOs, drift and late-label quality of served predictions; bandit rewards; auto-rollback.",
    schedule=CronTriggerTimetable("0 * * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,  # windows are judged in order: the closed loop counts consecutive bad ones
    default_args=default_args(alerts=CONFIG.get("alerts")),
    params={
        "window_end": Param(None, type=["null", "string"], format="date-time",
                            description="Judge the window ending here (ISO time) instead of the run's hour."),
        "rearm_by": Param(None, type=["null", "string"],
                          description="Your name: re-arms automatic rollback after it fired (audited)."),
        "rearm_reason": Param("reviewed", type="string", description="Why automatic rollback is re-armed."),
    },
    tags=["prodml", "monitoring", "serving"],
    doc_md=__doc__,
)
def monitoring():
    @task
    def window(params=None, logical_date=None, dag_run=None) -> dict:
        from ml.monitoring_job import resolve_window

        return resolve_window(explicit_end=(params or {}).get("window_end"),
                              run_time=logical_date or dag_run.run_after, minutes=MONITORING["window_minutes"])

    @task
    def rearm(params=None, run_id=None) -> dict:
        from ml.monitoring_job import rearm

        if not (params or {}).get("rearm_by"):
            return {"rearmed": False}
        return rearm(actor=params["rearm_by"], reason=params.get("rearm_reason") or "",
                     warehouse_config=CONFIG["warehouse"], run_id=run_id)

    @task
    def evaluate(w: dict, run_id=None) -> dict:
        from ml.monitoring_job import evaluate_window

        return evaluate_window(
            start=w["start"], end=w["end"], run_id=run_id, registry_config=CONFIG["registry"],
            warehouse_config=CONFIG["warehouse"], landing_uri=CONFIG["storage"]["landing"],
            schema_path=CONFIG["schema_path"], evaluation=CONFIG["evaluation"], drift_config=CONFIG.get("drift") or {},
            lookback_hours=MONITORING["lookback_hours"], slo=MONITORING["slo"], quality=MONITORING["quality"],
            output_drift=MONITORING["output_drift"], input_drift=MONITORING["input_drift"],
            rollback_on=ROLLBACK["figures"])

    @task
    def update_bandit(w: dict) -> dict:
        from ml.evaluate import decision_threshold
        from ml.monitoring_job import update_bandit
        from ml.serving.bandit import default_state_uri, parse_versions

        evaluation = CONFIG["evaluation"]
        return update_bandit(
            until=w["end"], label_days=MONITORING["bandit"]["label_days"], registry_config=CONFIG["registry"],
            warehouse_config=CONFIG["warehouse"], landing_uri=CONFIG["storage"]["landing"],
            schema_path=CONFIG["schema_path"],
            threshold=decision_threshold(evaluation["cost_false_negative"], evaluation["cost_false_positive"]),
            state_uri=BANDIT.get("state_uri") or default_state_uri(CONFIG["storage"]["bucket"]),
            challengers=parse_versions(SERVING.get("challengers")), floor=BANDIT.get("floor", 0.05),
            guard_probability=BANDIT.get("guard_probability", 0.99),
            guard_min_rewards=BANDIT.get("guard_min_rewards", 200))

    @task
    def refresh_advice(w: dict) -> dict:
        from ml import warehouse
        from ml.features import load_schema
        from ml.serving import advisor

        with warehouse.connect(CONFIG["warehouse"]) as wh:
            wh.ensure_tables()
            advice = advisor.refresh(
                wh, until=dt.datetime.fromisoformat(w["end"]), days=ADVISOR["window_days"], min_requests=ADVISOR["min_requests"],
                advice_uri=ADVISOR["advice_uri"], target_share=ADVISOR["target_share"],
                max_static_keys=ADVISOR["max_static_keys"], min_peakedness=ADVISOR["min_peakedness"],
                cost_per_stored_row=ADVISOR["cost_per_stored_row"], cost_per_online_call=ADVISOR["cost_per_online_call"],
                key_columns=list(load_schema(CONFIG["schema_path"]).entity_keys))
        return {k: advice[k] for k in ("written", "recommendation", "requests", "cardinality", "peakedness",
                                       "head_size", "head_share")}

    @task
    def judge_rollback(w: dict, run_id=None) -> dict:
        from ml.monitoring_job import check_rollback

        return check_rollback(window_end=w["end"], run_id=run_id, registry_config=CONFIG["registry"],
                              warehouse_config=CONFIG["warehouse"],
                              consecutive_windows=ROLLBACK["consecutive_windows"],
                              cooldown_hours=ROLLBACK["cooldown_hours"], enabled=ROLLBACK["enabled"], now=w["end"])

    # only roll_back is skipped without a breach: the endpoint sync below still runs every hour
    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def breach_confirmed(decision: dict) -> bool:
        return decision["action"] == "rollback"

    @task(outlets=[CHAMPION])
    def roll_back(decision: dict, w: dict, run_id=None) -> dict:
        from ml.monitoring_job import execute_rollback

        return execute_rollback(decision=decision, run_id=run_id, registry_config=CONFIG["registry"],
                                warehouse_config=CONFIG["warehouse"], now=w["end"])

    w = window()
    evaluated = evaluate(w)
    bandit = update_bandit(w)
    evaluated >> [bandit, refresh_advice(w)]
    decision = judge_rollback(w)
    [evaluated, rearm()] >> decision
    moved = roll_back(decision, w)
    breach_confirmed(decision) >> moved
    mirror = vertex_mirror(registry_config=CONFIG["registry"], google=google_cloud(CONFIG),
                           settings=CONFIG["registry"].get("vertex_mirror"))
    if mirror is not None:  # gcp profile: the Vertex aliases follow the rollback
        moved >> mirror
    endpoint = vertex_endpoint(registry_config=CONFIG["registry"], serving_config=SERVING, google=google_cloud(CONFIG))
    if endpoint is not None:  # gcp profile, serving.vertex_endpoint on: the split follows the bandit (and a rollback)
        [bandit, mirror] >> endpoint


fail_fast(monitoring())  # schema/config errors fail at once; transient ones keep their retries
