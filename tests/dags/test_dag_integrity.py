"""DAG integrity: every DAG imports cleanly, follows the conventions and parses light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
HEAVY = ("tensorflow", "keras", "apache_beam", "great_expectations", "google.cloud.", "scipy", "duckdb")

PARSE_PROBE = """
import importlib.util, json, sys, time
sys.path[:0] = [{root!r}, {root!r} + "/plugins"]
from scripts import airflow_env
airflow_env.apply(airflow_home={home!r}, data_dir={data!r})
import airflow.sdk  # noqa: F401  (DAG processors have airflow imported already)
out = {{}}
for path in {files!r}:
    before = set(sys.modules)
    start = time.perf_counter()
    spec = importlib.util.spec_from_file_location("dag_" + str(len(out)), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out[path] = {{"seconds": time.perf_counter() - start,
                  "heavy": sorted(m for m in set(sys.modules) - before if m.startswith({heavy!r}))}}
print(json.dumps(out))
"""


def _parse_in_fresh_process(profile: str, tmp_path) -> dict:
    code = PARSE_PROBE.format(root=str(ROOT), home=str(tmp_path / "home"), data=str(tmp_path / "data"),
                              files=[str(f) for f in DAG_FILES], heavy=HEAVY)
    env = {**os.environ, "PRODML_PROFILE": profile}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"static_training", "batch_prediction"} <= set(dagbag.dag_ids)


def test_dag_id_is_file_name_and_docs_are_module_docstring(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert Path(dag.fileloc).stem == dag_id
        assert dag.doc_md and dag.doc_md.strip().startswith(f"### {dag_id}")


def test_conventions_tags_owner_retries_backoff_alerting(dagbag):
    from prodml_airflow.defaults import alert_on_failure

    for dag_id, dag in dagbag.dags.items():
        assert "prodml" in dag.tags, dag_id
        for task in dag.tasks:
            where = f"{dag_id}.{task.task_id}"
            assert task.owner == "ml-platform", where
            assert task.retries >= 2, where
            assert task.retry_exponential_backoff, where
            assert alert_on_failure in (task.on_failure_callback if isinstance(task.on_failure_callback, list)
                                        else [task.on_failure_callback]), where


def test_a_configured_notifier_joins_the_failure_callbacks():
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    from prodml_airflow.defaults import alert_on_failure, failure_callbacks

    assert failure_callbacks({"notifier": None}) == [alert_on_failure]
    callbacks = failure_callbacks({"notifier": {
        "class": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
        "kwargs": {"from_email": "ml@example.com", "to": "oncall@example.com"}}})
    assert callbacks[0] is alert_on_failure and isinstance(callbacks[1], SmtpNotifier)


def test_failure_callback_raises_an_alert_in_the_warehouse(config):
    from prodml_airflow.defaults import alert_on_failure

    from ml import warehouse

    class TI:
        dag_id, task_id, try_number = "static_training", "train", 3

    alert_on_failure({"task_instance": TI(), "exception": RuntimeError("trainer exited with 1"),
                      "run_id": "manual__x"})
    wh = warehouse.connect(config["warehouse"])
    try:
        rows = wh.run_sql_file("recent_alerts", {"limit": 50}).to_pylist()
    finally:
        wh.close()
    mine = [r for r in rows if r["source"] == "airflow.static_training.train"]
    assert mine and mine[0]["severity"] == "error" and "trainer exited with 1" in mine[0]["message"]
    assert json.loads(mine[0]["context"])["run_id"] == "manual__x"


def test_local_parse_imports_nothing_heavy(tmp_path):
    report = _parse_in_fresh_process("local", tmp_path)
    for path, r in report.items():
        assert r["heavy"] == [], f"{path} imports {r['heavy']} at parse time"


def test_dags_parse_under_the_gcp_profile(tmp_path):
    report = _parse_in_fresh_process("gcp", tmp_path)
    assert set(report) == {str(f) for f in DAG_FILES}


def test_airflow_dags_list_local_shows_the_dags(airflow_db):
    out = subprocess.run([str(Path(sys.executable).with_name("airflow")), "dags", "list", "--local", "-o", "json"],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    listing = next(line for line in out.stdout.splitlines() if line.startswith('[{"dag_id"'))
    ids = {d["dag_id"] for d in json.loads(listing)}
    assert {"static_training", "batch_prediction"} <= ids


PROMOTION = {"evaluate_candidate", "evaluate_champion", "register_candidate", "gate", "decide", "promote", "keep"}


def test_training_dags_end_in_the_promotion_task_group_with_unprefixed_ids(dagbag):
    for dag_id in ("static_training", "dynamic_training"):
        dag = dagbag.dags[dag_id]
        group = dag.task_group_dict["promotion"]
        assert {t.task_id for t in group} == PROMOTION, dag_id  # `gate`, `promote`, ... as the branch names them
        assert dag.get_task("decide").downstream_task_ids == {"promote", "keep"}
        assert dag.get_task("evaluate_candidate").upstream_task_ids == {"train"}
    assert dagbag.dags["dynamic_training"].get_task("record_outcome").upstream_task_ids >= {"promote", "keep"}


def test_ml_never_imports_airflow():
    """ml/ is plain Python, testable without Airflow. The one exception is a gcp backend reaching its
    service through the Google provider's hook (BigQueryHook), imported inside that backend only."""
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "ml").rglob("*.py"))
                 if any(line.lstrip().startswith(("import airflow", "from airflow"))
                        and not line.lstrip().startswith("from airflow.providers.google.cloud.hooks.")
                        for line in p.read_text().splitlines())]
    assert offenders == []
    hooks = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "ml").rglob("*.py"))
             if "from airflow.providers.google.cloud.hooks." in p.read_text()]
    assert hooks == ["ml/warehouse.py"]
