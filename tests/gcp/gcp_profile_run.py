"""Run static_training, then batch_prediction twice, through real Airflow (`dag.test`) on the gcp
profile, in a process of its own (the DAG files read the profile when they are parsed).

    python -m tests.gcp.gcp_profile_run OUT.json

The caller sets the environment: PRODML_PROFILE=gcp, PRODML_BUCKET, AIRFLOW_HOME, the emulator
variables and the runner settings that keep compute local. Writes {"static": {...}, "predict": [...]}.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

from scripts import airflow_env

TRAIN_LOGICAL_DATE = dt.datetime(2026, 11, 15, tzinfo=dt.UTC)
PREDICT_LOGICAL_DATE = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)


def _run(dag_id: str, logical_date: dt.datetime) -> dict:
    run = airflow_env.get_dag(dag_id).test(logical_date=logical_date)
    return {"state": run.state, "states": {ti.task_id: ti.state for ti in run.get_task_instances()}}


def main(out: str) -> int:
    airflow_env.apply(airflow_home=os.environ["AIRFLOW_HOME"])
    airflow_env.init_db()
    result = {"static": _run("static_training", TRAIN_LOGICAL_DATE), "predict": []}
    if result["static"]["state"] == "success":
        for _ in range(2):  # the rerun must replace the day's rows, not add to them
            result["predict"].append(_run("batch_prediction", PREDICT_LOGICAL_DATE))
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
