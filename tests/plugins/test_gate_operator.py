"""GateOperator is thin (one call into ml.gate, blessing stored, small dict returned) and the
Vertex alias moves come from the Google provider's operators."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins/prodml_airflow/gate.py"
SCHEMA = str(ROOT / "include/schemas/traffic.yaml")
THRESHOLDS = {"min_auc": 0.7, "max_cost_weighted_error": 0.6, "max_auc_drop": 0.02,
              "max_cost_weighted_error_increase": 0.03, "max_slice_auc_drop": 0.05, "min_slice_rows": 200,
              "canary_rows": 8, "infra": {"max_p99_latency_ms": 1000}}
GCP = {"project": "my-project", "region": "europe-west4", "gcp_conn_id": "google_cloud_default"}


def test_top_level_imports_only_airflow_sdk():
    tree = ast.parse(MODULE.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in top}
    assert modules <= {"__future__", "collections.abc", "airflow.sdk", "prodml_airflow.failures"}  # stdlib-only helper


@pytest.fixture
def candidate(tmp_path, monkeypatch):
    pytest.importorskip("airflow.sdk")
    from ml import gate, registry

    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"graph")
    root = tmp_path / "registry"
    v1 = registry.register(root, model, {})
    registry.promote(root, v1)
    v2 = registry.register(root, model, {})
    canary = tmp_path / "canary.json"
    canary.write_text(json.dumps({"sensor_id": ["S0001"] * 10, "hour": list(range(10))}))
    calls = []

    def fake_infra(model_dir, rows, budgets, *, schema_path):  # the real one is tested in tests/ml
        calls.append((model_dir, rows, budgets))
        return {"passed": True, "reasons": [], "measured": {}, "budgets": budgets}

    monkeypatch.setattr(gate, "infra_validate", fake_infra)
    return {"root": root, "model": model, "v1": v1, "v2": v2, "canary": canary, "calls": calls}


def _operator(c, task_id, candidate_metrics, champion_metrics):
    from prodml_airflow.gate import GateOperator

    return GateOperator(task_id=task_id, candidate_version=c["v2"], model_dir=str(c["model"]),
                        candidate_metrics=candidate_metrics, champion_metrics=champion_metrics,
                        champion_version=c["v1"], canary_uri=str(c["canary"]), schema_path=SCHEMA,
                        thresholds=THRESHOLDS, registry_config={"kind": "local", "root": str(c["root"])})


def test_gate_operator_pass_stores_the_blessing(candidate, tmp_path):
    from ml import registry

    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text(json.dumps({"auc": 0.81, "cost_weighted_error": 0.4}))
    op = _operator(candidate, "gate", f"file://{metrics_file}", {"auc": 0.8, "cost_weighted_error": 0.4})
    assert {"candidate_version", "model_dir", "candidate_metrics", "champion_metrics", "canary_uri"} <= set(
        op.template_fields)
    out = op.execute({})
    assert out["decision"] == "pass" and out["reasons"] == []
    assert out["version"] == candidate["v2"] and out["champion_version"] == candidate["v1"]
    assert out["blessing_uri"].endswith(f"{candidate['v2']}/attachments/blessing.json")
    stored = registry.read_attachment(candidate["root"], candidate["v2"], "blessing")
    assert stored["decision"] == "pass" and stored["champion"]["metrics"]["auc"] == 0.8
    model_dir, rows, budgets = candidate["calls"][0]
    assert len(rows["hour"]) == 8 and budgets == THRESHOLDS["infra"]
    assert registry.aliases(candidate["root"])["champion"] == candidate["v1"]  # the gate never promotes


def test_gate_operator_fail_is_a_result_and_a_retry_keeps_the_first_decision(candidate):
    from ml import gate, registry

    op = _operator(candidate, "gate", '{"auc": 0.6, "cost_weighted_error": 0.4}', "None")
    out = op.execute({})  # does not raise: the DAG branches on the decision
    assert out["decision"] == "fail" and out["reasons"] == ["AUC 0.6000 < min 0.7"]
    retried = _operator(candidate, "gate_retry", {"auc": 0.9, "cost_weighted_error": 0.1}, None).execute({})
    assert retried["decision"] == "fail" and len(candidate["calls"]) == 1
    with pytest.raises(gate.NotBlessedError):
        gate.promote_if_blessed(registry.FolderRegistry(candidate["root"]), candidate["v2"])
    assert registry.aliases(candidate["root"])["champion"] == candidate["v1"]


def test_vertex_promote_tasks_use_the_google_provider_operators():
    pytest.importorskip("airflow.providers.google")
    from airflow.providers.google.cloud.operators.vertex_ai.model_service import (
        AddVersionAliasesOnModelOperator,
        DeleteVersionAliasesOnModelOperator,
        UploadModelOperator,
    )
    from prodml_airflow.gate import vertex_promote_tasks, vertex_register_task, vertex_retire_task

    previous, champion = vertex_promote_tasks(**GCP, model_id="prodml-traffic",
                                              new_version="{{ ti.xcom_pull('register') }}", current_champion="6")
    assert all(isinstance(t, AddVersionAliasesOnModelOperator) for t in (previous, champion))
    assert (previous.model_id, list(previous.version_aliases)) == ("prodml-traffic@6", ["previous"])
    assert champion.model_id == "prodml-traffic@{{ ti.xcom_pull('register') }}"
    assert list(champion.version_aliases) == ["champion"]
    assert (champion.project_id, champion.region) == ("my-project", "europe-west4")
    only = vertex_promote_tasks(**GCP, model_id="prodml-traffic", new_version="1")
    assert len(only) == 1 and only[0].task_id == "vertex_move_champion"

    retire = vertex_retire_task(**GCP, model_id="prodml-traffic", version="7")
    assert isinstance(retire, DeleteVersionAliasesOnModelOperator)
    assert (retire.model_id, list(retire.version_aliases)) == ("prodml-traffic@7", ["champion"])

    upload = vertex_register_task(**GCP, display_name="prodml-traffic", artifact_uri="gs://b/artifacts/run/model",
                                  parent_model="prodml-traffic", metadata={"schema_hash": "ab"})
    assert isinstance(upload, UploadModelOperator) and upload.parent_model == "prodml-traffic"
    assert upload.model["artifact_uri"] == "gs://b/artifacts/run/model"
    assert upload.model["labels"] == {"schema_hash": "ab"}
