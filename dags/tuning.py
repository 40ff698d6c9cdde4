"""
### tuning

Hyperparameter search (manual): parallel trials, later ones guided by the earlier ones, the best
parameters stored for the next training run.

`prepare` (the data: the champion's transformed training data, or the `transform` param's folder;
the run's study name and trial folder) → local profile: `trial` mapped over `trial_indices` (the
`trials` param: dynamic task mapping; at most `tuning.parallel` at once). Every trial asks the run's shared Optuna
study (journal file storage under the data root, safe for several processes) for parameters: TPE
proposes them from every trial finished so far, random for the first `n_startup_trials`. It then
trains and scores them with `python -m ml.trial` (ml.trainer, then the eval split's AUC) and tells
the study → `store_best`. On the gcp profile with Vertex training, `tune` is one Vertex AI
hyperparameter tuning job (Vizier guides the trials; the trial job is the trainer's worker pool
running ml.trial) → `store_best`.

The best parameters go to `tuning.best_uri` (`<bucket>/tuning/best.json`). The next
`static_training` / `dynamic_training` run merges them over the profile's `training:` section
(`training_params`), and the gate still decides whether the tuned candidate is promoted. Search
space, budget and parallelism: the profile's `tuning:` section. Task bodies: `ml.tuning`, `ml.trial`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, TriggerRule, dag, task
from prodml_airflow.defaults import default_args
from prodml_airflow.failures import fail_fast
from prodml_airflow.targets import vertex_trainer
from prodml_airflow.tasks import tuning_job

from ml import tuning as T
from ml.config import load

CONFIG = load()
TUNING, TRAINING, EVALUATION = CONFIG["tuning"], CONFIG["training"], CONFIG["evaluation"]
VERTEX = vertex_trainer(CONFIG)


@dag(
    dag_id="tuning",
    description="Manual: parallel hyperparameter trials guided by a shared study; best parameters for the next training.",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(alerts=CONFIG.get("alerts")),
    params={
        "trials": Param(TUNING["trials"], type="integer", minimum=1, description="Trial budget of this run."),
        "transform": Param(None, type=["null", "string"],
                           description="A Beam transform folder to tune on; empty = the champion's training data."),
    },
    tags=["prodml", "training"],
    doc_md=__doc__,
)
def tuning():
    @task(multiple_outputs=True)
    def prepare(params=None, run_id=None) -> dict:
        return T.prepare(registry_config=CONFIG["registry"], transform_uri=params.get("transform"),
                         artifacts_uri=CONFIG["storage"]["artifacts"], run_id=run_id)

    prepared = prepare()
    common = {"schema_path": CONFIG["schema_path"], "training": TRAINING, "evaluation": EVALUATION,
              "epochs": TUNING["trial_epochs"], "seed": TUNING["seed"], "metric": TUNING["metric"],
              "space": TUNING["search_space"]}

    if VERTEX is not None:  # gcp with Vertex training: Vizier runs the study
        tune = tuning_job(task_id="tune", trial_args=T.trial_args(data=prepared, **common),
                          output=prepared["output_root"], vertex=VERTEX,
                          search_space=T.vertex_parameter_specs(TUNING["search_space"]), metric=TUNING["metric"],
                          trials="{{ params.trials }}", parallel=TUNING["parallel"],
                          max_failed_trials=TUNING.get("max_failed_trials", 0))

        @task
        def store_best(job: dict, prepared: dict, run_id=None) -> dict:
            best = T.best_from_vertex_job(job, TUNING["metric"], TUNING["search_space"])
            return T.store_best(best_uri=TUNING["best_uri"], best=best, metric=TUNING["metric"], source="vertex",
                                study=job.get("name", prepared["study"]), run_id=run_id)

        store_best(tune.output, prepared)
        return

    @task(max_active_tis_per_dagrun=TUNING["parallel"])
    def trial(index: int, prepared: dict) -> dict:
        return T.run_trial(index=index, study_name=prepared["study"], storage_uri=TUNING["study_storage"],
                           space=TUNING["search_space"], seed=TUNING["seed"], n_startup_trials=TUNING["n_startup_trials"],
                           trial_args=T.trial_args(data=prepared, **common), output_root=prepared["output_root"],
                           metric=TUNING["metric"])

    @task(trigger_rule=TriggerRule.ALL_DONE)  # the best of the trials that finished
    def store_best(prepared: dict, run_id=None) -> dict:
        return T.store_study_best(study_name=prepared["study"], storage_uri=TUNING["study_storage"],
                                  best_uri=TUNING["best_uri"], metric=TUNING["metric"], run_id=run_id)

    @task
    def trial_indices(params=None) -> list[int]:
        return T.trial_indices(params["trials"])

    trials = trial.partial(prepared=prepared).expand(index=trial_indices())
    trials >> store_best(prepared)


fail_fast(tuning())  # schema/config errors fail at once; transient ones keep their retries
