"""Infra validation on a tiny real SavedModel (built in seconds, no training): the fast tier.

The model has the trainer's export shape (the feature contract's preprocessing layers inside, a
`serve` signature on raw features), so the gate's child process loads it, sends canary requests
one row at a time and in batches, and measures latency, peak memory and size as it does for a
trained candidate. The serving runs are independent processes: they run side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ml import gate
from ml.config import PROJECT_ROOT

SCHEMA = str(PROJECT_ROOT / "tests" / "ml" / "data" / "tiny_schema.yaml")
# raw model inputs of the tiny schema, nulls included (the model imputes them)
ROWS = {"basket_eur": [10.5, 99.0, None, 5.25, 1200.0, 0.0, 42.0, 7.5, 300.0, 19.99],
        "channel": ["web", "app", "store", "kiosk", None, "web", "app", "store", "web", "app"],
        "items": [1, 3, None, 2, 40, 1, 5, 2, 9, 4]}
GENEROUS = {"max_p99_latency_ms": 60_000, "max_batch_p99_latency_ms": 60_000,
            "max_peak_memory_mb": 1_000_000, "max_model_size_mb": 100_000,
            "single_requests": 7, "batch_requests": 3, "batch_size": 4}
IMPOSSIBLE = {"max_p99_latency_ms": 0, "max_batch_p99_latency_ms": 0, "max_peak_memory_mb": 1,
              "max_model_size_mb": 0.001, "batch_size": 3}
THRESHOLDS = {"min_auc": 0.5, "max_cost_weighted_error": 0.5}
METRICS = {"auc": 0.75, "cost_weighted_error": 0.25}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    # `make mutate` builds the models once (PRODML_TINY_MODELS) instead of once per mutant
    out = Path(os.environ.get("PRODML_TINY_MODELS") or tmp_path_factory.mktemp("tiny-models"))
    if not (out / "serving" / "saved_model.pb").exists():
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, "-m", "tests.ml.tiny_model", str(out), SCHEMA], env=env,
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    corrupt = tmp_path_factory.mktemp("corrupt")
    (corrupt / "variables").mkdir()
    (corrupt / "saved_model.pb").write_bytes(b"not a graph")
    return {"serving": out / "serving", "out_of_range": out / "out_of_range", "corrupt": corrupt}


@pytest.fixture(scope="module")
def runs(models) -> dict:
    """Every serving scenario once, in parallel child processes."""
    calls = {
        "generous": lambda: gate.infra_validate(str(models["serving"]), ROWS, GENEROUS, schema_path=SCHEMA),
        "out_of_range": lambda: gate.infra_validate(models["out_of_range"], ROWS, GENEROUS, schema_path=SCHEMA),
        "corrupt": lambda: gate.infra_validate(models["corrupt"], ROWS, GENEROUS, schema_path=SCHEMA),
    }
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {name: pool.submit(call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def test_the_tiny_model_passes_with_generous_budgets(runs, models):
    infra = runs["generous"]
    assert infra["passed"] is True and infra["reasons"] == []
    measured = infra["measured"]
    # warm-up: 1 row + 1 batch of 4; 7 single rows; batches of 4 rows starting at 0, 4, 8 (of 10 rows)
    assert measured["expected_predictions"] == 1 + 4 + 7 + (4 + 4 + 2)
    assert measured["predictions"] == measured["expected_predictions"]
    assert measured["canary_rows"] == 10
    assert measured["single_latency_ms"]["n"] == 7 and measured["batch_latency_ms"]["n"] == 3
    assert measured["non_finite"] == measured["out_of_range"] == 0
    assert 0 <= measured["score_min"] <= measured["score_max"] <= 1
    assert measured["peak_memory_mb"] > 1 and measured["load_s"] > 0
    assert measured["model_size_mb"] == round(gate.model_size_mb(models["serving"]), 3) > 0
    assert infra["budgets"]["single_requests"] == 7 and infra["budgets"]["timeout_s"] == 180  # defaults kept
    json.dumps(infra)  # goes into the blessing as it stands


def test_real_measurements_over_impossible_budgets_fail(runs):
    measured = runs["generous"]["measured"]
    reasons = gate.check_budgets(measured, IMPOSSIBLE)
    assert [r.split(" > budget")[0].rsplit(" ", 2)[0] for r in reasons] == [
        "infra: p99 latency (1 row)", "infra: p99 latency (3 rows)", "infra: peak memory of the serving process",
        "infra: model size on disk"]
    assert reasons[-1].endswith(f"{measured['model_size_mb']:.3f} MB > budget 0.001 MB")


def test_predictions_outside_zero_one_fail(runs):
    out = runs["out_of_range"]
    assert out["passed"] is False
    measured = out["measured"]
    assert measured["out_of_range"] > 0 and measured["non_finite"] == 0
    assert out["reasons"] == [f"infra: {measured['out_of_range']} predictions are outside [0, 1]"]


def test_a_model_that_does_not_load_fails_with_the_childs_error(runs):
    out = runs["corrupt"]
    assert out["passed"] is False and len(out["reasons"]) == 1
    assert out["reasons"][0].startswith("infra: the model failed to load or serve in a separate process (exit 1): ")
    assert "saved_model.pb" in out["measured"]["error"] and out["reasons"][0].endswith(out["measured"]["error"])


def test_no_canary_rows_no_model_or_no_time_fail_without_serving(models, tmp_path):
    empty = gate.infra_validate(models["serving"], {"basket_eur": []}, GENEROUS, schema_path=SCHEMA)
    assert empty["reasons"] == ["infra: no canary rows to send"] and not empty["passed"]
    missing = gate.infra_validate(tmp_path, ROWS, GENEROUS, schema_path=SCHEMA)
    assert missing["reasons"] == [f"infra: no SavedModel at {tmp_path} (saved_model.pb missing)"]
    # a zero timeout expires before any child can answer
    late = gate.infra_validate(models["serving"], ROWS, {**GENEROUS, "timeout_s": 0}, schema_path=SCHEMA)
    assert late["reasons"] == ["infra: the serving process did not finish within 0 s"]


def test_model_size_counts_every_file(tmp_path):
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"x" * 2**19)
    (tmp_path / "variables" / "v.data").write_bytes(b"x" * 2**19)
    assert gate.model_size_mb(tmp_path) == 1.0
    assert gate.model_size_mb(Path(tmp_path).as_uri()) == 1.0


def test_the_gate_records_infra_validation_with_the_candidate(tmp_path):
    # the serving itself is tested above; here the gate's wiring (no child needed: no SavedModel)
    record = gate.evaluate_gate(METRICS, None, {**THRESHOLDS, "infra": GENEROUS}, model_dir=str(tmp_path),
                                canary_rows=ROWS, schema_path=SCHEMA, candidate={"version": "v0007"})
    assert record["decision"] == "fail" and record["checks"]["value.auc"]["passed"] is True
    assert record["reasons"] == record["checks"]["infra"]["reasons"] == [
        f"infra: no SavedModel at {tmp_path} (saved_model.pb missing)"]
    assert record["checks"]["infra"]["budgets"]["single_requests"] == 7
    assert record["candidate"] == {"version": "v0007", "metrics": METRICS, "model_dir": str(tmp_path)}
    assert record["thresholds"]["min_auc"] == 0.5 and record["champion"] is None
    json.dumps(record)  # the blessing is JSON as it stands
