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
`transform` (Beam) → `train` (warm start from the champion) → the `promotion` task group (evaluate
→ register → `gate` → `promote` or `keep`) → `record_outcome`. Task bodies: `ml.training_job`,
`ml.promotion_job`; the run folder's layout: `ml.run_layout`.

Param `shuffle_labels` trains a deliberately bad candidate (labels permuted) to drill the gate.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, TriggerRule, dag, task
from prodml_airflow.defaults import default_args
from prodml_airflow.failures import fail_fast
from prodml_airflow.promotion import champion_checkpoint, promotion
from prodml_airflow.targets import google_cloud, transform_runner, vertex_trainer
from prodml_airflow.tasks import beam_transform, file_set_sensor, train_model
from prodml_airflow.tuned import trainer_flags, training_params
from prodml_airflow.validation import DriftCheckOperator, ValidateDataOperator
from prodml_airflow.vertex_endpoint import vertex_endpoint
from prodml_airflow.vertex_mirror import vertex_mirror

from ml.config import load
from ml.run_layout import RunLayout

CONFIG = load()
FILE_SET = "{{ ti.xcom_pull(task_ids='pick_file_set', key='date') }}"
RUN = RunLayout.for_run(CONFIG["storage"]["artifacts"], "dynamic_training", FILE_SET)
LANDING, VALIDATED = CONFIG["storage"]["landing"], CONFIG["storage"]["validated"]
TRAINING = CONFIG["training"]


@dag(
    dag_id="dynamic_training",
    description="New file set landed: validate, check drift, retrain, gate, then promote or keep the champion.",
    schedule="*/30 * * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(alerts=CONFIG.get("alerts")),
    params={
        "file_set": Param(None, type=["null", "string"], description="Process this dt=YYYY-MM-DD set."),
        "shuffle_labels": Param(False, type="boolean", description="Gate drill: train on permuted labels."),
    },
    tags=["prodml", "training"],
    doc_md=__doc__,
)
def dynamic_training():
    sensor = file_set_sensor(task_id="wait_for_file_set", landing_uri=LANDING, timeout=dt.timedelta(minutes=25),
                             google=google_cloud(CONFIG))

    @task
    def pick_file_set(params=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from ml import training_job

        try:
            return training_job.pick_file_set(wanted=(params or {}).get("file_set"), landing_uri=LANDING,
                                              registry_config=CONFIG["registry"],
                                              warehouse_config=CONFIG["warehouse"])
        except training_job.NothingToTrain as exc:
            raise AirflowSkipException(str(exc)) from None

    picked = pick_file_set()
    validate = ValidateDataOperator(
        task_id="validate", files=picked["files"], schema_path=CONFIG["schema_path"],
        quarantine_uri=CONFIG["storage"]["quarantine"] + "/dt=" + FILE_SET,
        accepted_uri=VALIDATED, report_uri=RUN.validation, limits=CONFIG["validation"],
        fail_on_reject=False, multiple_outputs=True,
    )

    @task
    def check_validation(summary: dict, date: str, run_id=None) -> dict:
        """A rejected file set is recorded as handled (so it is not retried forever) and stops the run."""
        from airflow.sdk.exceptions import AirflowFailException

        from ml import training_job

        try:
            return training_job.check_validation(summary=summary, file_set=date, run_id=run_id,
                                                 warehouse_config=CONFIG["warehouse"])
        except training_job.FileSetRejected as exc:
            raise AirflowFailException(str(exc)) from None

    checked = check_validation(validate.output, picked["date"])
    drift = DriftCheckOperator(
        task_id="drift", data=checked["accepted"], schema_path=CONFIG["schema_path"],
        registry_config=CONFIG["registry"], warehouse=CONFIG["warehouse"],
        report_uri=RUN.drift_report, data_date=FILE_SET,
        config=CONFIG["drift"],  # thresholds and policy as the profile says now
    )

    @task
    def training_window(date: str) -> dict:
        """Validated sets of the last window_days up to this one (rejected sets have no validated rows)."""
        from ml import training_job

        return training_job.training_window(date=date, landing_uri=LANDING, validated_uri=VALIDATED,
                                            window_days=TRAINING["window_days"])

    window = training_window(picked["date"])
    checked >> window
    transform = beam_transform(
        task_id="transform", inputs=window["files"], output=RUN.transform, schema_path=CONFIG["schema_path"],
        eval_fraction=TRAINING["eval_fraction"],
        num_shards=CONFIG["beam"]["num_shards"], runner=transform_runner(CONFIG))
    drift >> transform  # policy alert: scores, alerts, report, the gate decides; block: the run stops here

    train = train_model(task_id="train", output=RUN.candidate, vertex=vertex_trainer(CONFIG), trainer_args={
        "train": RUN.train_files,
        "eval": RUN.eval_files,
        "stats": RUN.stats,
        "schema": CONFIG["schema_path"],
        "warm_start": "{{ ti.xcom_pull(task_ids='champion_checkpoint') or '' }}",
        "shuffle_labels": "{{ params.shuffle_labels }}",
        # epochs, batch_size, learning_rate, hidden_units: the profile's, or the tuning DAG's best
        **trainer_flags(training_params(training=TRAINING, best_uri=CONFIG["tuning"].get("best_uri"))),
    })
    [transform, champion_checkpoint(registry_config=CONFIG["registry"])] >> train
    tail = promotion(candidate=train.output, dates=window["dates"], reference_files=window["files"], layout=RUN,
                     trained_by="dynamic_training", registry_config=CONFIG["registry"],
                     schema_path=CONFIG["schema_path"], evaluation=CONFIG["evaluation"],
                     gate_thresholds=CONFIG["gate"], drift_config=CONFIG["drift"],
                     warehouse_config=CONFIG["warehouse"])

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def record_outcome(date: str, run_id=None, ti=None) -> str:
        from ml import training_job

        return training_job.record_outcome(file_set=date, promoted=bool(ti.xcom_pull(task_ids="promote")),
                                           run_id=run_id, warehouse_config=CONFIG["warehouse"])

    sensor >> picked
    tail >> record_outcome(picked["date"])  # after promote or keep
    mirror = vertex_mirror(registry_config=CONFIG["registry"], google=google_cloud(CONFIG),
                           settings=CONFIG["registry"].get("vertex_mirror"))
    if mirror is not None:  # gcp profile: Vertex AI Model Registry follows the bucket registry
        tail >> mirror
    endpoint = vertex_endpoint(registry_config=CONFIG["registry"], serving_config=CONFIG.get("serving"),
                               google=google_cloud(CONFIG))
    if endpoint is not None:  # gcp profile, serving.vertex_endpoint on: the endpoint serves the champion
        mirror >> endpoint


fail_fast(dynamic_training())  # schema/config errors fail at once; transient ones keep their retries
