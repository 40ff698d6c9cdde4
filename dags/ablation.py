"""
### ablation

Leave-one-feature-out retrains (monthly): which features no longer pay their way.

`prepare` (the data: the champion's transformed training data, or the `transform` param's folder;
the run's folder) → `plan` (per seed: a baseline run and one run without each model input of the
schema, or of the `features` param; the trainer's hyperparameters as the next training run would
use them) → `retrain` (dynamic task mapping, one task per run, at most `ablation.parallel` at once:
`python -m ml.trial` in a subprocess locally, a Vertex AI CustomJob in the trainer image on gcp;
each run trains, scores its eval-split AUC and writes `trial.json`) → `report` (each feature's AUC
delta against the baseline, paired by seed, with a Student's t interval across seeds; a feature whose
interval does not lie above `ablation.min_auc_gain` is flagged and alerted).

The report is stored in the run folder (`<artifacts>/ablation/<run>/report.json`) and at
`ablation.report_uri` (the latest). Task bodies: `ml.ablation`, `ml.trial`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronTriggerTimetable, Param, TriggerRule, dag, task
from prodml_airflow.defaults import default_args
from prodml_airflow.failures import fail_fast
from prodml_airflow.targets import vertex_trainer
from prodml_airflow.tasks import train_runs

from ml.config import load

CONFIG = load()
ABLATION = CONFIG["ablation"]
VERTEX = vertex_trainer(CONFIG)
SCHEMA_ARG = VERTEX.schema_uri if VERTEX is not None else CONFIG["schema_path"]  # what the runs read


@dag(
    dag_id="ablation",
    description="Monthly leave-one-feature-out retrains: AUC delta per feature with a CI across seeds; flags the ones that don't pay.",
    schedule=CronTriggerTimetable("0 4 1 * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(alerts=CONFIG.get("alerts")),
    params={
        "features": Param(ABLATION.get("features") or None, type=["null", "array"],
                          description="Model inputs to ablate; empty = every model input of the schema."),
        "seeds": Param(list(ABLATION["seeds"]), type="array", minItems=1,
                       description="One baseline and one run per feature for each seed."),
        "transform": Param(None, type=["null", "string"],
                           description="A Beam transform folder to retrain on; empty = the champion's training data."),
    },
    tags=["prodml", "training"],
    doc_md=__doc__,
)
def ablation():
    @task
    def prepare(params=None, run_id=None) -> dict:
        from ml import trial, tuning

        data = trial.experiment_data(registry_config=CONFIG["registry"], transform_uri=params.get("transform"))
        return {**data, "run_uri": f"{CONFIG['storage']['artifacts']}/ablation/{tuning.run_key(run_id)}"}

    @task
    def plan(prepared: dict, params=None) -> list[dict]:
        from ml import ablation, tuning

        trainer = tuning.training_params(training=CONFIG["training"], best_uri=CONFIG["tuning"].get("best_uri"))
        return ablation.plan(data=prepared, schema_path=CONFIG["schema_path"], schema_arg=SCHEMA_ARG,
                             features=params.get("features"), seeds=params["seeds"], trainer_params=trainer,
                             epochs=ABLATION["epochs"], evaluation=CONFIG["evaluation"],
                             output_root=f"{prepared['run_uri']}/runs")

    @task(trigger_rule=TriggerRule.ALL_DONE)  # report what finished (a failed run is left out, logged)
    def report(runs: list[dict], prepared: dict, run_id=None) -> dict:
        from ml import ablation

        return ablation.finish(outputs=[r["output_uri"] for r in runs], confidence=ABLATION["confidence"],
                               min_auc_gain=ABLATION["min_auc_gain"], run_uri=prepared["run_uri"],
                               report_uri=ABLATION["report_uri"], data_version=prepared["version"],
                               warehouse_config=CONFIG["warehouse"], run_id=run_id)

    prepared = prepare()
    runs = plan(prepared)
    retrain = train_runs(task_id="retrain", runs=runs, vertex=VERTEX, max_active=ABLATION["parallel"])
    retrain >> report(runs, prepared)


fail_fast(ablation())  # schema/config errors fail at once; transient ones keep their retries
