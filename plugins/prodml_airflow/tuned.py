"""The trainer's hyperparameters for a training DAG: the profile's `training:` section with the
`tuning` DAG's stored best parameters merged over it (`ml.tuning.training_params`), read at run time,
not at parse time (no bucket read while the DAG file parses)."""

from __future__ import annotations

from airflow.sdk import task

TRAINER_FLAGS = ("epochs", "batch_size", "learning_rate", "hidden_units")


def training_params(*, training: dict, best_uri: str | None):
    """Task `training_params`: {"epochs", "batch_size", "learning_rate", "hidden_units", "tuned_from"}
    (one XCom per key). `best_uri`: the profile's `tuning.best_uri` (None: never tuned)."""

    @task(task_id="training_params", multiple_outputs=True)
    def params() -> dict:
        from ml import tuning

        return tuning.training_params(training=training, best_uri=best_uri)

    return params()


def trainer_flags(params) -> dict:
    """The trainer_args entries taken from the `training_params` task (XCom references, resolved when
    the train task renders; they also make `training_params` upstream of it)."""
    return {name: params[name] for name in TRAINER_FLAGS}
