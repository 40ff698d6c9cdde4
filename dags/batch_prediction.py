"""
### batch_prediction

Static serving: the champion scores every (sensor, hour) of a target date from the known-ahead
feature table (`forecast/dt=<date>/`), and the rows land in the warehouse table `predictions`,
replacing that date's partition (idempotent: a rerun or backfill never duplicates rows).
When the serving advisor has stored an advice (`advisor.advice_uri`), only its head keys are
precomputed (hybrid serving: the service computes the tail on demand); without one, every key.

**Target date**
- scheduled and backfill runs (daily at 00:00 UTC): the run's logical date. The cron trigger
  timetable makes the logical date the moment the run fires, so the run at the start of day D
  scores day D, and `airflow backfill create --dag-id batch_prediction --from-date A --to-date B`
  fills the tables for the dates A..B.
- runs triggered by the champion Asset (a new model; such runs have no logical date in
  Airflow 3): the day after the newest complete landed partition, i.e. the next day to predict.
- a manual run may set the `target_date` param (YYYY-MM-DD), which wins over both.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from prodml_airflow.assets import CHAMPION
from prodml_airflow.defaults import default_args
from prodml_airflow.failures import fail_fast

from ml.config import load

CONFIG = load()


@dag(
    dag_id="batch_prediction",
    description="Champion scores every sensor-hour of a day into the warehouse (daily and on a new champion).",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 0 * * *", timezone="UTC"),
        assets=[CHAMPION],
    ),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(alerts=CONFIG.get("alerts")),
    params={"target_date": Param(None, type=["null", "string"], format="date",
                                 description="Score this date instead of the one the run implies.")},
    tags=["prodml", "serving"],
    doc_md=__doc__,
)
def batch_prediction():
    @task
    def target_date(params=None, logical_date=None) -> str:
        from ml.prediction_job import resolve_target_date

        return resolve_target_date(
            explicit=(params or {}).get("target_date"),
            logical_date=logical_date,  # None for Asset-triggered runs
            landing_uri=CONFIG["storage"]["landing"],
        )

    @task
    def predict(date: str, run_id=None) -> dict:
        from ml.prediction_job import predict_to_warehouse
        from ml.serving.advisor import advised_keys

        # No champion yet is a NoChampionError: permanent (a retry cannot train a model), so it fails at once.
        return predict_to_warehouse(
            target_date=date,
            registry_config=CONFIG["registry"],
            forecast_uri=CONFIG["storage"]["forecast"],
            schema_path=CONFIG["schema_path"],
            warehouse_config=CONFIG["warehouse"],
            evaluation=CONFIG["evaluation"],
            batch_size=CONFIG["batch_prediction"]["batch_size"],
            run_id=run_id,
            keys=advised_keys(CONFIG["advisor"]["advice_uri"]),  # the advised head; None: every key
        )

    predict(target_date())


fail_fast(batch_prediction())  # schema/config errors fail at once; transient ones keep their retries
