"""The validation/drift operators are thin: they store arguments and make one call into ml/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins/prodml_airflow/validation.py"


def test_top_level_imports_only_airflow_sdk():
    tree = ast.parse(MODULE.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in top}
    # prodml_airflow.failures imports ml.errors only (stdlib): still no ml/GX/Beam at parse time
    assert modules <= {"__future__", "collections.abc", "airflow.sdk", "prodml_airflow.failures"}


def test_validate_operator_runs_and_fails_on_a_rejected_file(tmp_path):
    pytest.importorskip("airflow.sdk")
    from prodml_airflow.validation import DriftCheckOperator, ValidateDataOperator

    from ml.schema_check import DataError

    good = tmp_path / "good.csv"
    good.write_text("order_id,basket_eur,channel,items,coupon_code,returned\n"
                    + "".join(f"O{i},{10 + i}.5,web,{1 + i % 3},,0\n" for i in range(10)))
    schema = str(ROOT / "tests/ml/data/tiny_schema.yaml")
    op = ValidateDataOperator(task_id="validate", files=[str(good)], schema_path=schema,
                              quarantine_uri=str(tmp_path / "q"), accepted_uri=str(tmp_path / "a"))
    assert set(op.template_fields) >= {"files", "quarantine_uri"}
    out = op.execute({})
    assert out["ok"] and out["rows_accepted"] == 10 and len(out["accepted"]) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("order_id,basket,channel\nO1,1,web\n")
    op = ValidateDataOperator(task_id="validate2", files=[str(bad)], schema_path=schema,
                              quarantine_uri=str(tmp_path / "q"))
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="basket_eur") as failed:  # a bad file: no retries
        op.execute({})
    assert isinstance(failed.value.__cause__, DataError)
    drift_op = DriftCheckOperator(task_id="drift", data="x.csv", schema_path=schema, registry_config={"kind": "local", "root": "/r"})
    assert "data" in drift_op.template_fields and drift_op.version == "champion"
