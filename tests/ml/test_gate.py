"""The model gate: metric checks (pure), infra validation in a separate process, blessing + promotion."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest

from ml import gate, registry
from ml.gate import NotBlessedError

THRESHOLDS = {
    "min_auc": 0.70,
    "max_cost_weighted_error": 0.60,
    "max_auc_drop": 0.02,
    "max_cost_weighted_error_increase": 0.03,
    "max_slice_auc_drop": 0.05,
    "min_slice_rows": 200,
    "min_slice_auc": None,
}
GENEROUS = {"max_p99_latency_ms": 60_000, "max_batch_p99_latency_ms": 60_000,
            "max_peak_memory_mb": 1_000_000, "max_model_size_mb": 100_000,
            "single_requests": 20, "batch_requests": 3, "batch_size": 32}
IMPOSSIBLE = {"max_p99_latency_ms": 0, "max_batch_p99_latency_ms": 0, "max_peak_memory_mb": 1,
              "max_model_size_mb": 0.001, "single_requests": 5, "batch_requests": 1, "batch_size": 16}


def _metrics(auc=0.80, cwe=0.40, slices=None) -> dict:
    slices = slices or {"arterial": (0.82, 900), "residential": (0.78, 800), "highway": (0.85, 50)}
    return {"auc": auc, "cost_weighted_error": cwe, "positive_rate": 0.2, "n": 1750, "threshold": 1 / 6,
            "slices": {"road_type": {k: {"auc": a, "cost_weighted_error": cwe, "n": n}
                                     for k, (a, n) in slices.items()}}}


# ---------------------------------------------------------------- decide (pure)


def test_pass_with_and_without_champion():
    first = gate.decide(_metrics(), None, THRESHOLDS)
    assert first["decision"] == "pass" and first["reasons"] == []
    assert first["checks"]["change"] == {"skipped": "no champion (first model)"}
    assert first["checks"]["value.auc"]["passed"] is True

    better = gate.decide(_metrics(auc=0.81, cwe=0.39), _metrics(auc=0.80, cwe=0.40), THRESHOLDS)
    assert better["decision"] == "pass", better["reasons"]
    assert better["checks"]["change.auc"]["candidate"] == 0.81
    # within tolerance: a small drop is noise, not a regression
    assert gate.decide(_metrics(auc=0.79), _metrics(auc=0.80), THRESHOLDS)["decision"] == "pass"


def test_auc_below_floor_and_error_above_ceiling():
    out = gate.decide(_metrics(auc=0.65, cwe=0.7), None, THRESHOLDS)
    assert out["decision"] == "fail"
    assert any(r.startswith("AUC 0.6500 < min 0.7") for r in out["reasons"])
    assert any(r.startswith("cost-weighted error 0.7000 > max 0.6") for r in out["reasons"])


def test_worse_than_champion_fails_even_above_the_floor():
    out = gate.decide(_metrics(auc=0.75, cwe=0.45), _metrics(auc=0.80, cwe=0.40), THRESHOLDS)
    assert out["decision"] == "fail"
    assert out["checks"]["value.auc"]["passed"] is True
    assert any("AUC drop vs champion 0.0500 > max 0.02" in r for r in out["reasons"])
    assert any("cost-weighted error increase vs champion 0.0500 > max 0.03" in r for r in out["reasons"])


def test_one_slice_much_worse_fails_small_slices_ignored():
    champion = _metrics(slices={"arterial": (0.82, 900), "residential": (0.78, 800), "highway": (0.90, 50)})
    candidate = _metrics(slices={"arterial": (0.83, 900), "residential": (0.70, 800), "highway": (0.40, 50)})
    out = gate.decide(candidate, champion, THRESHOLDS)
    assert out["decision"] == "fail"
    assert out["reasons"] == ["road_type=residential AUC drop vs champion 0.0800 > max 0.05"]
    assert "skipped" in out["checks"]["slice.road_type=highway"]  # 50 rows < 200: not judged
    assert out["checks"]["slice.road_type=arterial.auc_drop"]["passed"] is True


def test_missing_metric_fails_and_null_threshold_skips():
    out = gate.decide({"auc": None, "cost_weighted_error": 0.3}, None, THRESHOLDS)
    assert out["decision"] == "fail" and "AUC: no value" in out["reasons"][0]
    loose = {**THRESHOLDS, "min_auc": None}
    out = gate.decide({"auc": None, "cost_weighted_error": 0.3}, None, loose)
    assert out["decision"] == "pass" and out["checks"]["value.auc"]["skipped"]
    # optional absolute slice floor applies to the first model too
    out = gate.decide(_metrics(), None, {**THRESHOLDS, "min_slice_auc": 0.8})
    assert out["reasons"] == ["road_type=residential AUC 0.7800 < min 0.8"]


def test_evaluate_gate_without_infra_inputs_fails():
    record = gate.evaluate_gate(_metrics(), None, {**THRESHOLDS, "infra": GENEROUS})
    assert record["decision"] == "fail"
    assert "required for infra validation" in record["reasons"][0]
    no_saved_model = gate.infra_validate("/nonexistent", {"x": [1]}, GENEROUS, schema_path="s.yaml")
    assert not no_saved_model["passed"] and "saved_model.pb missing" in no_saved_model["reasons"][0]


# ---------------------------------------------------------------- promote_if_blessed


@pytest.fixture
def reg(tmp_path: Path):
    model = tmp_path / "export"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    root = tmp_path / "registry"
    v1 = registry.register(root, model, {"metrics": _metrics()})
    registry.promote(root, v1, "first")
    return root, model, v1


def test_a_worse_candidate_can_never_be_promoted(reg):
    root, model, v1 = reg
    v2 = registry.register(root, model, {"metrics": _metrics(auc=0.6)})  # registered, not promoted
    record = gate.evaluate_gate(_metrics(auc=0.6), _metrics(), THRESHOLDS, candidate={"version": v2},
                                champion={"version": v1})
    assert record["decision"] == "fail" and record["champion"]["version"] == v1
    before = (registry.aliases(root), registry.history(root))

    with pytest.raises(NotBlessedError, match="no blessing stored"):
        gate.promote_if_blessed(registry.FolderRegistry(root), v2)
    gate.store_blessing(registry.FolderRegistry(root), v2, record)
    with pytest.raises(NotBlessedError, match="decision is 'fail'.*AUC 0.6000 < min 0.7"):
        gate.promote_if_blessed(registry.FolderRegistry(root), v2, record)
    # a caller cannot bless by passing a forged record: the stored one decides
    forged = {**copy.deepcopy(record), "decision": "pass", "reasons": []}
    with pytest.raises(NotBlessedError, match="stored blessing decision is 'fail'"):
        gate.promote_if_blessed(registry.FolderRegistry(root), v2, forged)
    # nor overwrite the stored one
    with pytest.raises(registry.RegistryError, match="already exists"):
        gate.store_blessing(registry.FolderRegistry(root), v2, forged)
    assert (registry.aliases(root), registry.history(root)) == before
    assert registry.read_attachment(root, v2, "blessing")["decision"] == "fail"


def test_blessed_candidate_is_promoted_and_blessing_must_match_version(reg):
    root, model, v1 = reg
    v2 = registry.register(root, model, {"metrics": _metrics(auc=0.81)})
    v3 = registry.register(root, model, {"metrics": _metrics(auc=0.81)})
    record = gate.evaluate_gate(_metrics(auc=0.81), _metrics(), THRESHOLDS, candidate={"version": v2})
    assert record["decision"] == "pass" and record["checks"]["infra"]["skipped"]
    gate.store_blessing(registry.FolderRegistry(root), v3, record)  # v2's blessing attached to v3 by mistake
    with pytest.raises(NotBlessedError, match=f"blessing is for {v2}"):
        gate.promote_if_blessed(registry.FolderRegistry(root), v3)
    gate.store_blessing(registry.FolderRegistry(root), v2, record)
    assert gate.promote_if_blessed(registry.FolderRegistry(root), v2) == {"champion": v2, "previous": v1}
    assert registry.history(root)[-1]["reason"] == "gate passed"
    assert gate.summary(record) == {"decision": "pass", "reasons": [], "version": v2, "champion_version": None}


# ---------------------------------------------------------------- canaries and infra (real SavedModel)


def test_canary_rows_are_held_out_raw_features(trained_model, tmp_path):
    from ml import features as F

    schema = F.load_schema(trained_model["schema_path"])
    rows = gate.load_canary(trained_model["landing"], trained_model["schema_path"], n=40, eval_fraction=0.2)
    assert set(rows) == {f.name for f in schema.model_inputs}
    assert all(len(v) == 40 for v in rows.values())
    assert all(F.split_bucket(rows["sensor_id"], 0.2))  # only the eval side of the split
    assert isinstance(rows["road_type"][0], str) and isinstance(rows["lanes"][0], int)
    path = tmp_path / "canary.json"
    path.write_text(json.dumps(rows))
    assert gate.load_canary(str(path), trained_model["schema_path"], n=10) == {k: v[:10] for k, v in rows.items()}


@pytest.fixture(scope="module")
def served(trained_model):
    """One real gate run: the candidate served in a separate process with generous budgets."""
    schema_path = trained_model["schema_path"]
    rows = gate.load_canary(trained_model["landing"], schema_path, n=48, eval_fraction=0.2)
    record = gate.evaluate_gate(_metrics(), None, {**THRESHOLDS, "infra": GENEROUS},
                                model_dir=trained_model["model_dir"], canary_rows=rows, schema_path=schema_path,
                                candidate={"version": "v0001"})
    return {**trained_model, "rows": rows, "record": record}


def test_infra_pass_with_generous_budgets(served):
    record = served["record"]
    assert record["decision"] == "pass", record["reasons"]
    measured = record["checks"]["infra"]["measured"]
    # warm-up 1 row + 1 batch, 20 single-row requests, 3 batches of 32 over 48 rows
    assert measured["predictions"] == measured["expected_predictions"] == 1 + 32 + 20 + (32 + 16 + 32)
    assert measured["non_finite"] == measured["out_of_range"] == 0
    assert 0 <= measured["score_min"] <= measured["score_max"] <= 1
    assert measured["single_latency_ms"]["n"] == 20 and measured["peak_memory_mb"] > 1
    assert record["candidate"]["model_dir"] == served["model_dir"]
    json.dumps(record)  # the blessing is JSON as it stands


def _replay(monkeypatch, stdout: str, returncode: int = 0) -> list:
    """Replace the serving child by a recorded answer (the real one ran in `served`)."""
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, returncode, stdout=stdout, stderr="Traceback ...\nBoom")

    monkeypatch.setattr(gate.subprocess, "run", fake_run)
    return calls


def test_infra_fails_on_impossible_budgets(served, monkeypatch):
    measured = served["record"]["checks"]["infra"]["measured"]
    child = {k: v for k, v in measured.items() if k != "model_size_mb"}
    calls = _replay(monkeypatch, "some TF log line\n" + json.dumps(child) + "\n")
    record = gate.evaluate_gate(_metrics(), None, {**THRESHOLDS, "infra": IMPOSSIBLE},
                                model_dir=served["model_dir"], canary_rows=served["rows"],
                                schema_path=served["schema_path"])
    assert calls[0][1:4] == ["-m", "ml.gate", "infra"]
    assert record["decision"] == "fail"
    text = "\n".join(record["reasons"])
    for what in ("p99 latency (1 row)", "p99 latency (16 rows)", "peak memory", "model size on disk"):
        assert f"infra: {what}" in text, text
    assert record["checks"]["value.auc"]["passed"] is True  # only infra failed


def test_infra_fails_on_bad_predictions_and_on_a_crashing_child(served, monkeypatch):
    measured = dict(served["record"]["checks"]["infra"]["measured"], non_finite=2, out_of_range=1,
                    predictions=3)
    _replay(monkeypatch, json.dumps(measured))
    out = gate.infra_validate(served["model_dir"], served["rows"], GENEROUS, schema_path=served["schema_path"])
    assert out["reasons"] == [f"infra: 3 predictions for {measured['expected_predictions']} requested rows",
                              "infra: 2 predictions are NaN or infinite",
                              "infra: 1 predictions are outside [0, 1]"]
    _replay(monkeypatch, json.dumps({"error": "OSError: SavedModel file does not exist"}), returncode=1)
    out = gate.infra_validate(served["model_dir"], served["rows"], GENEROUS, schema_path=served["schema_path"])
    assert out["reasons"] == ["infra: the model failed to load or serve in a separate process (exit 1): "
                              "OSError: SavedModel file does not exist"]
    _replay(monkeypatch, "", returncode=-9)
    out = gate.infra_validate(served["model_dir"], served["rows"], GENEROUS, schema_path=served["schema_path"])
    assert out["reasons"][0].endswith("(exit -9): Boom")
