"""Fail fast: schema, configuration and contract errors fail their task at once (no retries, ~100 s
of backoff saved) with a message that names what to change; other errors keep their retries."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
from tests.conftest import TRAIN_LOGICAL_DATE  # noqa: E402


def test_a_permanent_error_becomes_a_failure_that_is_not_retried():
    from airflow.sdk.exceptions import AirflowFailException
    from prodml_airflow.failures import fail_fast_callable

    from ml.config import ConfigError
    from ml.drift.config import DriftError
    from ml.features import SchemaError, SplitError
    from ml.prediction_job import NoChampionError

    for error in (SchemaError("keys: no column 'x'"), SplitError("eval share 0.75"), ConfigError("no schema"),
                  DriftError("slice_by 'x'"), NoChampionError("train first")):
        def task(error=error):
            raise error

        with pytest.raises(AirflowFailException, match=type(error).__name__) as failed:
            fail_fast_callable(task)()
        assert failed.value.__cause__ is error and str(error) in str(failed.value)


def test_a_wrapped_permanent_error_counts_and_a_transient_one_passes_through():
    from airflow.sdk.exceptions import AirflowFailException
    from prodml_airflow.failures import fail_fast_callable

    from ml.features import SchemaError

    def wrapped():  # as Beam or a thread pool re-raises a worker's error
        try:
            raise SchemaError("slices: 'x' is not a feature")
        except SchemaError as exc:
            raise RuntimeError("pipeline failed") from exc

    with pytest.raises(AirflowFailException, match="RuntimeError"):
        fail_fast_callable(wrapped)()

    def transient():
        raise ConnectionError("warehouse unreachable")

    with pytest.raises(ConnectionError):
        fail_fast_callable(transient)()


def test_the_wrapper_keeps_the_signature_airflow_injects_context_by():
    import inspect

    from prodml_airflow.failures import fail_fast_callable

    def task(date: str, run_id=None) -> dict:
        return {"date": date, "run_id": run_id}

    wrapped = fail_fast_callable(task)
    assert inspect.signature(wrapped) == inspect.signature(task)
    assert wrapped("2026-11-16", run_id="r") == {"date": "2026-11-16", "run_id": "r"}
    assert fail_fast_callable(wrapped) is wrapped  # applied once


def test_every_dag_task_with_a_callable_fails_fast(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not dagbag.import_errors
    callables = 0
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            if callable(getattr(task, "python_callable", None)):
                callables += 1
                assert getattr(task.python_callable, "_prodml_fail_fast", False), f"{dag.dag_id}.{task.task_id}"
    assert callables >= 10


def test_a_child_entry_point_exits_78_on_a_permanent_error_and_the_operator_does_not_retry(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException
    from prodml_airflow.operators import PythonModuleOperator

    from ml.errors import EXIT_PERMANENT

    op = PythonModuleOperator(task_id="transform", module="ml.transform", output_uri=str(tmp_path / "out"),
                              args={"input": [str(tmp_path / "none-*.csv")], "output": str(tmp_path / "out"),
                                    "schema": str(ROOT / "include/schemas/traffic.yaml")})
    with pytest.raises(AirflowFailException, match=f"exited with {EXIT_PERMANENT}"):
        op.execute({})
    # A crash that is not known to be permanent keeps the retries.
    crash = tmp_path / "crash.py"
    crash.write_text("raise OSError('disk full')\n")
    op = PythonModuleOperator(task_id="crash", module="crash", args={}, output_uri="x",
                              python=sys.executable)
    op.module = "crash"
    import os

    old = os.getcwd()
    os.chdir(tmp_path)  # `python -m crash` finds crash.py in the working directory
    try:
        with pytest.raises(RuntimeError, match="exited with 1"):
            op.execute({})
    finally:
        os.chdir(old)


def test_static_training_with_a_broken_schema_fails_on_the_first_try(airflow_db, landed, config, tmp_path,
                                                                      monkeypatch):
    """The user's case: a schema naming a slice that is not a column. The run fails at the first
    task that reads the schema, once, with the schema's message in the failure alert."""
    from scripts import airflow_env

    schema = yaml.safe_load((ROOT / "include/schemas/traffic.yaml").read_text())
    schema["slices"] = ["borough"]  # no such column
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(schema))
    profile = yaml.safe_load((ROOT / "include/config/local.yaml").read_text())
    profile["profile"] = "broken"
    profile["schema"] = "schema.yaml"  # beside the profile file
    profile["storage"]["landing"] = config["storage"]["landing"]
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(profile))
    monkeypatch.setenv("PRODML_CONFIG", str(tmp_path / "broken.yaml"))
    monkeypatch.setenv("PRODML_DATA", str(tmp_path / "data"))

    run = airflow_env.get_dag("static_training").test(logical_date=TRAIN_LOGICAL_DATE)
    assert run.state == "failed"
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert str(tis["find_data"].state) == "success"
    assert str(tis["validate"].state) == "failed" and tis["validate"].try_number == 1  # not up for retry
    assert str(tis["train"].state) != "success"
    from ml import config as cfg
    from ml import warehouse

    wh = warehouse.connect(cfg.load()["warehouse"])
    try:
        rows = wh.run_sql_file("recent_alerts", {"limit": 10}).to_pylist()
    finally:
        wh.close()
    assert any(r["source"] == "airflow.static_training.validate" and "borough" in r["message"]
               and "not retried" in r["message"] for r in rows), rows
