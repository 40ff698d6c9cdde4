"""
### static_training

Full retrain on a fixed window of landed data (the course's *static training*: physics-like
problems, or a weekly refresh).

`find_data` (complete partitions in the window ending at the run's logical date) → `validate`
(Great Expectations suite generated from the schema; bad rows → quarantine with their reason; a
file over the violation limit stops the run here, before any training) → `drift` (against the
champion's reference statistics, thresholds and policy from the profile's `drift:` section; every
score → `drift_scores`, breaches → alerts; HTML report; policy `block` stops the run here) →
`transform` (Beam: parse, clean, statistics, sharded TFRecords, hash split by sensor) → `train`
(`ml.trainer`, warm start from the champion) → `evaluate_candidate` / `evaluate_champion` (AUC,
cost-weighted error, by road type, on the same eval data) → `register_candidate` (immutable
version + reference statistics for drift) → `gate` (thresholds, champion comparison, infra
validation in a separate process; blessing stored with the version) → `promote` (moves the
`champion` alias, emits the champion Asset → `batch_prediction`) or `keep` (alert, champion
untouched).

Artifacts: `<artifacts>/static_training/<ds_nodash>/`, so a rerun of the same interval overwrites
its own outputs and nothing else.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronTriggerTimetable, dag, task
from prodml_airflow.defaults import default_args
from prodml_airflow.promotion import champion_checkpoint, evaluate_gate_promote
from prodml_airflow.tasks import beam_transform, train_model
from prodml_airflow.validation import DriftCheckOperator, ValidateDataOperator

from ml.config import load

CONFIG = load()
RUN_DIR = CONFIG["storage"]["artifacts"] + "/static_training/{{ ds_nodash }}"


@dag(
    dag_id="static_training",
    schedule=CronTriggerTimetable("0 3 * * 1", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(CONFIG),
    tags=["prodml", "training"],
    doc_md=__doc__,
)
def static_training():
    @task
    def find_data(logical_date=None) -> dict:
        from ml import landing

        end = logical_date.date().isoformat()
        days = CONFIG["training"]["window_days"]
        found = landing.partitions_in_window(CONFIG["storage"]["landing"], end, days)
        if not found:
            raise ValueError(f"no complete partition (with _SUCCESS) in the {days} days before {end} "
                             f"under {CONFIG['storage']['landing']}")
        return {"dates": sorted(found), "files": [f for files in found.values() for f in files]}

    found = find_data()
    validate = ValidateDataOperator(
        task_id="validate",
        files=found["files"],
        schema_path=CONFIG["schema_path"],
        quarantine_uri=CONFIG["storage"]["quarantine"] + "/static_training/{{ ds_nodash }}",
        accepted_uri=CONFIG["storage"]["validated"],  # shared with dynamic_training's window
        report_uri=RUN_DIR + "/validation",  # GX's validation result per file
        limits=CONFIG["validation"],
        multiple_outputs=True,  # downstream tasks take validate.output["accepted"]
    )
    drift = DriftCheckOperator(
        task_id="drift",
        data=validate.output["accepted"],
        schema_path=CONFIG["schema_path"],
        registry_root=CONFIG["registry"]["root"],
        warehouse=CONFIG["warehouse"],
        report_uri=RUN_DIR + "/drift_report.html",
        data_date="{{ ds }}",
        config=CONFIG["drift"],  # thresholds and policy as the profile says now
    )
    transform = beam_transform(CONFIG, task_id="transform", inputs=validate.output["accepted"],
                               output=RUN_DIR + "/transform")
    drift >> transform  # a `block` policy stops the run before training

    train = train_model(
        CONFIG, task_id="train", output=RUN_DIR + "/candidate",
        trainer_args={
            "train": RUN_DIR + "/transform/train/part-*.tfrecord",
            "eval": RUN_DIR + "/transform/eval/part-*.tfrecord",
            "stats": RUN_DIR + "/transform/stats.json",
            "schema": CONFIG["schema_path"],
            "warm_start": "{{ ti.xcom_pull(task_ids='champion_checkpoint') or '' }}",
            "epochs": CONFIG["training"]["epochs"],
            "batch_size": CONFIG["training"]["batch_size"],
            "learning_rate": CONFIG["training"]["learning_rate"],
            "hidden_units": ",".join(str(u) for u in CONFIG["training"]["hidden_units"]),
        },
    )

    [transform, champion_checkpoint(CONFIG)] >> train
    evaluate_gate_promote(CONFIG, run_dir=RUN_DIR, candidate=train.output, data=found,
                          reference_files=validate.output["accepted"],
                          trained_by="static_training")


static_training()
