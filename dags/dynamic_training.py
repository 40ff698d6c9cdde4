"""
### dynamic_training

Retrain when new data lands (the course's *dynamic training*: traffic is fashion, not physics).

`wait_for_file_set` (a filesystem sensor locally, the Google provider's GCS sensor on gcp;
deferrable, with a timeout shorter than the schedule; no new data → the run is *skipped*) →
`pick_file_set` (the oldest complete `dt=…/` set with its `_SUCCESS` marker that the
`processed_file_sets` record has not seen; a `file_set` param pins one) → `validate` (GX suite;
bad rows → quarantine) → `check_validation` (a rejected set is recorded, alerted and stops the
run: no training, champion untouched) → `drift` (against the champion's reference; scores always
stored, breaches alerted; policy `block` stops the run before training) → `training_window` (validated sets of the last `window_days`) →
`transform` (Beam) → `train` (warm start from the champion) → evaluate → register → `gate` →
`promote` or `keep` → `record_outcome`.

Param `shuffle_labels` trains a deliberately bad candidate (labels permuted) to drill the gate.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, TriggerRule, dag, task
from prodml_airflow.defaults import default_args
from prodml_airflow.promotion import champion_checkpoint, evaluate_gate_promote
from prodml_airflow.tasks import beam_transform, file_set_sensor, train_model
from prodml_airflow.validation import DriftCheckOperator, ValidateDataOperator

from ml.config import load

CONFIG = load()
RUN_DIR = CONFIG["storage"]["artifacts"] + "/dynamic_training/{{ ti.xcom_pull(task_ids='pick_file_set', key='date') }}"
VALIDATED = CONFIG["storage"]["validated"]


@dag(
    dag_id="dynamic_training",
    schedule="*/30 * * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(CONFIG),
    params={
        "file_set": Param(None, type=["null", "string"], description="Process this dt=YYYY-MM-DD set."),
        "shuffle_labels": Param(False, type="boolean", description="Gate drill: train on permuted labels."),
    },
    tags=["prodml", "training"],
    doc_md=__doc__,
)
def dynamic_training():
    sensor = file_set_sensor(CONFIG, task_id="wait_for_file_set", timeout=dt.timedelta(minutes=25))

    @task
    def pick_file_set(params=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from ml import file_sets, landing, registry, warehouse

        wh = warehouse.connect(CONFIG["warehouse"])
        try:
            done = file_sets.processed(wh)
        finally:
            wh.close()
        wanted = (params or {}).get("file_set")
        if wanted:
            files = landing.complete_partitions(CONFIG["storage"]["landing"]).get(wanted)
            if not files:
                raise AirflowSkipException(f"file set dt={wanted} is not complete (no _SUCCESS marker)")
            if wanted in done:
                raise AirflowSkipException(f"file set dt={wanted} was already processed ({done[wanted]})")
            return {"date": wanted, "files": files}
        seen = file_sets.trained_until(registry.list_versions(CONFIG["registry"]["root"]))
        found = file_sets.next_unprocessed(CONFIG["storage"]["landing"], done, seen)
        if found is None:
            raise AirflowSkipException("no new complete file set: nothing to do")
        return {"date": found[0], "files": found[1]}

    picked = pick_file_set()
    validate = ValidateDataOperator(
        task_id="validate", files=picked["files"], schema_path=CONFIG["schema_path"],
        quarantine_uri=CONFIG["storage"]["quarantine"] + "/dt={{ ti.xcom_pull(task_ids='pick_file_set', key='date') }}",
        accepted_uri=VALIDATED, report_uri=RUN_DIR + "/validation", limits=CONFIG["validation"],
        fail_on_reject=False, multiple_outputs=True,
    )

    @task
    def check_validation(summary: dict, date: str, run_id=None) -> dict:
        """A rejected file set is recorded as handled (so it is not retried forever) and stops the run."""
        from airflow.sdk.exceptions import AirflowFailException

        from ml import file_sets, warehouse

        if summary["ok"]:
            return summary
        wh = warehouse.connect(CONFIG["warehouse"])
        try:
            file_sets.record(wh, date, run_id, "rejected")
        finally:
            wh.close()
        raise AirflowFailException(f"file set dt={date} rejected by validation, champion unchanged: "
                                   + " | ".join(summary["rejected"]))

    checked = check_validation(validate.output, picked["date"])
    drift = DriftCheckOperator(
        task_id="drift", data=checked["accepted"], schema_path=CONFIG["schema_path"],
        registry_root=CONFIG["registry"]["root"], warehouse=CONFIG["warehouse"],
        report_uri=RUN_DIR + "/drift_report.html",
        data_date="{{ ti.xcom_pull(task_ids='pick_file_set', key='date') }}",
        config=CONFIG["drift"],  # thresholds and policy as the profile says now
    )

    @task
    def training_window(date: str) -> dict:
        """Validated sets of the last window_days up to this one (rejected sets have no validated rows)."""
        from ml import landing
        from ml.storage import to_path

        days = CONFIG["training"]["window_days"]
        end = (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()
        dates = sorted(landing.partitions_in_window(CONFIG["storage"]["landing"], end, days))
        root = to_path(VALIDATED)
        files = [str(p) for d in dates for p in sorted(root.glob(f"dt={d}__*.csv"))]
        return {"dates": [d for d in dates if any(f"dt={d}__" in f for f in files)], "files": files}

    window = training_window(picked["date"])
    checked >> window
    transform = beam_transform(CONFIG, task_id="transform", inputs=window["files"], output=RUN_DIR + "/transform")
    drift >> transform  # policy alert: scores, alerts, report, the gate decides; block: the run stops here

    t = CONFIG["training"]
    train = train_model(CONFIG, task_id="train", output=RUN_DIR + "/candidate", trainer_args={
        "train": RUN_DIR + "/transform/train/part-*.tfrecord",
        "eval": RUN_DIR + "/transform/eval/part-*.tfrecord",
        "stats": RUN_DIR + "/transform/stats.json",
        "schema": CONFIG["schema_path"],
        "warm_start": "{{ ti.xcom_pull(task_ids='champion_checkpoint') or '' }}",
        "shuffle_labels": "{{ params.shuffle_labels }}",
        "epochs": t["epochs"], "batch_size": t["batch_size"], "learning_rate": t["learning_rate"],
        "hidden_units": ",".join(str(u) for u in t["hidden_units"]),
    })
    [transform, champion_checkpoint(CONFIG)] >> train
    promoted, kept = evaluate_gate_promote(CONFIG, run_dir=RUN_DIR, candidate=train.output, data=window,
                                           reference_files=window["files"], trained_by="dynamic_training")

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def record_outcome(date: str, run_id=None, ti=None) -> str:
        from ml import file_sets, warehouse

        outcome = "promoted" if ti.xcom_pull(task_ids="promote") else "kept"
        wh = warehouse.connect(CONFIG["warehouse"])
        try:
            file_sets.record(wh, date, run_id, outcome)
        finally:
            wh.close()
        return outcome

    sensor >> picked
    [promoted, kept] >> record_outcome(picked["date"])


dynamic_training()
