"""
### static_training

Full retrain on a fixed window of landed data (the course's *static training*: physics-like
problems, or a weekly refresh).

`find_data` (complete partitions in the window ending at the run's logical date, or at the
`end_date` param) → `validate`
(Great Expectations suite generated from the schema; bad rows → quarantine with their reason; a
file over the violation limit stops the run here, before any training) → `drift` (against the
champion's reference statistics, thresholds and policy from the profile's `drift:` section; every
score → `drift_scores`, breaches → alerts; HTML report; policy `block` stops the run here) →
`transform` (Beam: parse, clean, statistics, sharded TFRecords, hash split by the schema's split_key) → `train`
(`ml.trainer`, warm start from the champion) → the `promotion` task group: `evaluate_candidate` /
`evaluate_champion` (AUC, cost-weighted error, per slice, on the same eval data) → `register_candidate` (immutable
version + reference statistics for drift) → `gate` (thresholds, champion comparison, infra
validation in a separate process; blessing stored with the version) → `promote` (moves the
`champion` alias, emits the champion Asset → `batch_prediction`) or `keep` (alert, champion
untouched).

Artifacts: `<artifacts>/static_training/<ds_nodash>/` (layout: `ml.run_layout`), so a rerun of the
same interval overwrites its own outputs and nothing else. Task bodies: `ml.training_job`,
`ml.promotion_job`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronTriggerTimetable, Param, dag, task
from prodml_airflow.defaults import default_args
from prodml_airflow.failures import fail_fast
from prodml_airflow.promotion import champion_checkpoint, promotion
from prodml_airflow.targets import google_cloud, transform_runner, vertex_trainer
from prodml_airflow.tasks import beam_transform, train_model
from prodml_airflow.tuned import trainer_flags, training_params
from prodml_airflow.validation import DriftCheckOperator, ValidateDataOperator
from prodml_airflow.vertex_endpoint import vertex_endpoint
from prodml_airflow.vertex_mirror import vertex_mirror

from ml.config import load
from ml.run_layout import RunLayout

CONFIG = load()
RUN = RunLayout.for_run(CONFIG["storage"]["artifacts"], "static_training", "{{ ds_nodash }}")
TRAINING = CONFIG["training"]


@dag(
    dag_id="static_training",
    description="Weekly full retrain on the last window_days of landed data; the gate decides promotion.",
    schedule=CronTriggerTimetable("0 3 * * 1", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(alerts=CONFIG.get("alerts")),
    tags=["prodml", "training"],
    doc_md=__doc__,
    params={
        "end_date": Param(None, type=["null", "string"],
                          description="Train on the window_days before this YYYY-MM-DD (default: the run's date)."),
    },
)
def static_training():
    @task
    def find_data(logical_date=None, params=None) -> dict:
        from ml import training_job

        end_date = (params or {}).get("end_date") or logical_date.date().isoformat()
        return training_job.find_data(end_date=end_date, landing_uri=CONFIG["storage"]["landing"],
                                      window_days=TRAINING["window_days"])

    found = find_data()
    validate = ValidateDataOperator(
        task_id="validate",
        files=found["files"],
        schema_path=CONFIG["schema_path"],
        quarantine_uri=CONFIG["storage"]["quarantine"] + "/static_training/{{ ds_nodash }}",
        accepted_uri=CONFIG["storage"]["validated"],  # shared with dynamic_training's window
        report_uri=RUN.validation,  # GX's validation result per file
        limits=CONFIG["validation"],
        multiple_outputs=True,  # downstream tasks take validate.output["accepted"]
    )
    drift = DriftCheckOperator(
        task_id="drift",
        data=validate.output["accepted"],
        schema_path=CONFIG["schema_path"],
        registry_config=CONFIG["registry"],
        warehouse=CONFIG["warehouse"],
        report_uri=RUN.drift_report,
        data_date="{{ ds }}",
        config=CONFIG["drift"],  # thresholds and policy as the profile says now
    )
    transform = beam_transform(
        task_id="transform", inputs=validate.output["accepted"], output=RUN.transform,
        schema_path=CONFIG["schema_path"], eval_fraction=TRAINING["eval_fraction"],
        num_shards=CONFIG["beam"]["num_shards"], runner=transform_runner(CONFIG))
    drift >> transform  # a `block` policy stops the run before training

    train = train_model(
        task_id="train", output=RUN.candidate, vertex=vertex_trainer(CONFIG),
        trainer_args={
            "train": RUN.train_files,
            "eval": RUN.eval_files,
            "stats": RUN.stats,
            "schema": CONFIG["schema_path"],
            "warm_start": "{{ ti.xcom_pull(task_ids='champion_checkpoint') or '' }}",
            # epochs, batch_size, learning_rate, hidden_units: the profile's, or the tuning DAG's best
            **trainer_flags(training_params(training=TRAINING, best_uri=CONFIG["tuning"].get("best_uri"))),
        },
    )

    [transform, champion_checkpoint(registry_config=CONFIG["registry"])] >> train
    tail = promotion(candidate=train.output, dates=found["dates"], reference_files=validate.output["accepted"],
                     layout=RUN, trained_by="static_training", registry_config=CONFIG["registry"],
                     schema_path=CONFIG["schema_path"], evaluation=CONFIG["evaluation"],
                     gate_thresholds=CONFIG["gate"], drift_config=CONFIG["drift"],
                     warehouse_config=CONFIG["warehouse"])
    mirror = vertex_mirror(registry_config=CONFIG["registry"], google=google_cloud(CONFIG),
                           settings=CONFIG["registry"].get("vertex_mirror"))
    if mirror is not None:  # gcp profile: Vertex AI Model Registry follows the bucket registry
        tail >> mirror
    endpoint = vertex_endpoint(registry_config=CONFIG["registry"], serving_config=CONFIG.get("serving"),
                               google=google_cloud(CONFIG))
    if endpoint is not None:  # gcp profile, serving.vertex_endpoint on: the endpoint serves the champion
        mirror >> endpoint


fail_fast(static_training())  # schema/config errors fail at once; transient ones keep their retries
