"""Test session environment: a private AIRFLOW_HOME and data folder, set before airflow is imported.

Expensive things are built once per session and shared: the simulated landing area and one
static_training run through real Airflow (which trains one model).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts import airflow_env  # noqa: E402

SESSION_DIR = Path(tempfile.mkdtemp(prefix="prodml-tests-"))
os.environ["PRODML_PROFILE"] = "local"
airflow_env.apply(airflow_home=SESSION_DIR / "airflow_home", data_dir=SESSION_DIR / "data")

# `make mutate` (tests/mutmut_plugin.py loaded): mutmut forks each mutant's pytest from one process
# that has collected the tests; import there, once, what the tested code imports lazily (about 3 s
# each for TensorFlow/Keras and Great Expectations in every mutant that reaches them). Importing
# them starts no thread, so forking after it stays as safe as before. Here, not in the plugin:
# conftest runs under pytest's output capture, and absl's log handler (imported with TensorFlow)
# closes the stream it was made with, which outside the capture is mutmut's own output (INTERNALERROR).
if "tests.mutmut_plugin" in sys.modules:
    import great_expectations  # noqa: F401
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

SIM_START = "2026-11-01"
SIM_DAYS = 14
SIM_SENSORS = 40
TRAIN_LOGICAL_DATE = dt.datetime(2026, 11, 15, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def config():
    from ml.config import load

    return load()


@pytest.fixture(scope="session")
def schema(config):
    from ml.features import load_schema

    return load_schema(config["schema_path"])


@pytest.fixture(scope="session")
def airflow_db():
    airflow_env.init_db()


@pytest.fixture(scope="session")
def landed(config):
    """Two weeks of simulated landing data (+ a week of forecasts) in the session bucket."""
    from ml import simulate
    from ml.storage import to_path

    bucket = to_path(config["storage"]["bucket"])
    truth = simulate.simulate(str(bucket), SIM_START, SIM_DAYS, seed=3, sensors=SIM_SENSORS)
    return {"bucket": bucket, "truth": truth, "sensors": SIM_SENSORS}


@pytest.fixture(scope="session")
def static_training_run(airflow_db, landed, config):
    """One real static_training run (Beam transform, trainer subprocess, evaluation, registry)."""
    dag = airflow_env.get_dag("static_training")
    run = dag.test(logical_date=TRAIN_LOGICAL_DATE)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    run_dir = f"{config['storage']['artifacts']}/static_training/{TRAIN_LOGICAL_DATE:%Y%m%d}"
    return {"state": run.state, "states": states, "run_dir": run_dir}


# Tests that need the session's trained model or Airflow, or the drift tests' six simulated weeks
# (`world`), are the slow tier; `-m "not slow"` is the fast unit tier (seconds per file) that
# `make mutate` runs for every mutant.
SLOW_FIXTURES = {"static_training_run", "trained_model", "airflow_db", "landed", "world"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
