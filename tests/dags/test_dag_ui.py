"""What a newcomer meets in the Airflow UI: a one-line description per DAG, trigger forms that
accept their defaults as they are, DAGs that cannot race themselves, and a failure that says
what to do instead of retrying for minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_dag_has_a_one_line_description(dagbag):
    assert dagbag.dag_ids
    for dag_id, dag in dagbag.dags.items():
        assert dag.description, f"{dag_id}: the DAG list shows no description"
        assert "\n" not in dag.description and len(dag.description) <= 150, dag_id  # a tooltip, not the docs


def test_every_param_is_described_and_its_default_passes_the_trigger_form(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for name in dag.params:
            param = dag.params.get_param(name)
            where = f"{dag_id}.{name}"
            assert param.description, f"{where}: no description in the trigger form"
            param.resolve(suppress_exception=False)  # the default validates against its schema
            # The form sends an empty field as null: an empty default must accept null, or the
            # form marks the field required and the Trigger button stays disabled.
            if param.value in (None, ""):
                types = param.schema.get("type")
                assert "null" in (types if isinstance(types, list) else [types]), where


def test_every_dag_runs_one_at_a_time(dagbag):
    # two rollbacks (or two trainings) at once would race on the same champion alias
    for dag_id, dag in dagbag.dags.items():
        assert dag.max_active_runs == 1, dag_id


def test_rollback_default_restores_the_previous_champion(dagbag):
    params = dagbag.get_dag("rollback").params
    assert params["version"] is None and params["reason"]


def test_batch_prediction_without_a_champion_fails_at_once_and_says_to_train(airflow_db, tmp_path, monkeypatch):
    from scripts import airflow_env

    monkeypatch.setenv("PRODML_DATA", str(tmp_path))  # an empty registry: nothing was ever trained
    dag = airflow_env.get_dag("batch_prediction")
    run = dag.test(run_conf={"target_date": "2026-11-16"})
    assert run.state == "failed"
    ti = next(t for t in run.get_task_instances() if t.task_id == "predict")
    assert str(ti.state) == "failed" and ti.try_number == 1  # failed for good, not up for retry
    from ml import config, warehouse

    wh = warehouse.connect(config.load()["warehouse"])  # the failure alert carries the message
    try:
        rows = wh.run_sql_file("recent_alerts", {"limit": 10}).to_pylist()
    finally:
        wh.close()
    assert any(r["source"] == "airflow.batch_prediction.predict" and "static_training" in r["message"]
               for r in rows), rows


def test_prediction_job_names_the_way_out_when_no_champion_exists(tmp_path):
    from ml.prediction_job import NoChampionError, predict_to_warehouse

    with pytest.raises(NoChampionError, match="make demo.*static_training"):
        predict_to_warehouse(
            target_date="2026-11-16", registry_config={"kind": "local", "root": str(tmp_path / "registry")},
            forecast_uri=f"file://{tmp_path}/forecast", schema_path=str(ROOT / "include/schemas/traffic.yaml"),
            warehouse_config={"kind": "duckdb", "path": str(tmp_path / "w.duckdb"), "dataset": "prodml"},
            evaluation={"cost_false_negative": 5.0, "cost_false_positive": 1.0}, batch_size=16, run_id=None)
