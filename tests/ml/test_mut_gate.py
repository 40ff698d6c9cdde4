"""The gate's small decisions one by one: what each metric check records, slices skipped or judged,
the blessing record without infra budgets, promotion refusals, the model size (infra validation's
own tests are left out of the mutation run: their fixture serves models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml import gate, registry


def test_model_size_is_every_file_under_the_model_folder_in_mib(tmp_path):
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"x" * 2**20)
    (tmp_path / "variables" / "variables.data").write_bytes(b"x" * 2**19)
    assert gate.model_size_mb(tmp_path) == 1.5
    assert gate.model_size_mb(str(tmp_path)) == 1.5


# ---------------------------------------------------------------- decide: what each check records


def test_a_check_without_threshold_is_recorded_as_skipped():
    out = gate.decide({"auc": 0.8}, None, {})
    assert out["checks"]["value.auc"] == {"value": 0.8, "threshold": None, "passed": None, "skipped": "no threshold"}
    assert out["decision"] == "pass"


def test_a_change_check_without_champion_metric_does_not_stop_the_next_one():
    out = gate.decide({"auc": 0.8, "cost_weighted_error": 0.5}, {"cost_weighted_error": 0.3},
                      {"max_auc_drop": 0.01, "max_cost_weighted_error_increase": 0.1})
    assert out["checks"]["change.auc"] == {"skipped": "champion has no auc", "passed": None}
    assert out["checks"]["change.cost_weighted_error"]["passed"] is False
    assert out["reasons"] == ["cost-weighted error increase vs champion 0.2000 > max 0.1"]


def slices(**values):
    return {"slices": {"road": {k: {"auc": a, "n": n} for k, (a, n) in values.items()}}}


def test_without_min_slice_rows_every_slice_is_judged_even_an_empty_one():
    out = gate.decide(slices(a=(0.5, 0)), None, {"min_slice_auc": 0.6})
    assert out["checks"]["slice.road=a.auc"]["passed"] is False


def test_a_slice_of_unknown_size_is_skipped_under_a_minimum():
    out = gate.decide({"slices": {"road": {"a": {"auc": 0.5}}}}, None, {"min_slice_auc": 0.6, "min_slice_rows": 1})
    assert out["checks"]["slice.road=a"] == {"skipped": "None rows < min_slice_rows 1"}
    champion = {"slices": {"road": {"a": {"auc": 0.9}}}}
    judged = gate.decide(slices(a=(0.5, 5)), champion, {"max_slice_auc_drop": 0.1, "min_slice_rows": 1})
    assert judged["checks"]["slice.road=a.auc_drop"] == {"skipped": "champion slice has None rows"}


def test_a_skipped_slice_does_not_stop_the_slices_after_it():
    out = gate.decide(slices(a=(0.9, 10), b=(0.5, 500)), None, {"min_slice_auc": 0.6, "min_slice_rows": 100})
    assert out["checks"]["slice.road=a"] == {"skipped": "10 rows < min_slice_rows 100"}
    assert out["checks"]["slice.road=b.auc"]["passed"] is False
    champion = slices(a=(0.9, 10), b=(0.9, 500))
    drop = gate.decide(slices(a=(0.5, 500), b=(0.5, 500)), champion, {"max_slice_auc_drop": 0.1, "min_slice_rows": 100})
    assert drop["checks"]["slice.road=a.auc_drop"] == {"skipped": "champion slice has 10 rows"}
    assert drop["checks"]["slice.road=b.auc_drop"] == {"value": pytest.approx(0.4), "threshold": 0.1,
                                                       "passed": False, "candidate": 0.5, "champion": 0.9}


def test_a_champion_without_the_slice_value_is_no_comparison():
    out = gate.decide(slices(a=(0.5, 500), new=(0.5, 500)), slices(a=(0.9, 500)),
                      {"max_slice_auc_drop": 0.1, "min_slice_rows": 100})
    assert "slice.road=new.auc_drop" not in out["checks"]
    assert out["checks"]["slice.road=a.auc_drop"]["passed"] is False


# ---------------------------------------------------------------- the record (no infra budgets)


def test_the_record_keeps_thresholds_candidate_champion_and_a_utc_time():
    thresholds = {"min_auc": 0.5}
    record = gate.evaluate_gate({"auc": 0.8}, None, thresholds, model_dir=Path("/m/v1"), candidate={"version": "v1"})
    assert record["thresholds"] is thresholds and record["checks"]["infra"] == {"skipped": "no infra budgets configured"}
    assert record["candidate"] == {"version": "v1", "metrics": {"auc": 0.8}, "model_dir": "/m/v1"}
    assert record["champion"] is None
    assert record["decided_at"].endswith("+00:00")
    assert "model_dir" not in gate.evaluate_gate({"auc": 0.8}, None, thresholds)["candidate"]
    # a champion named without metrics is still recorded (its metrics are None)
    named = gate.evaluate_gate({"auc": 0.8}, None, thresholds, champion={"version": "v0"})
    assert named["champion"] == {"version": "v0", "metrics": None}
    assert gate.evaluate_gate({"auc": 0.8}, {"auc": 0.7}, thresholds)["champion"] == {"metrics": {"auc": 0.7}}


# ---------------------------------------------------------------- promotion needs the stored blessing


@pytest.fixture
def models(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"x")
    folder = registry.FolderRegistry(tmp_path / "registry")
    folder.register(model, {})
    return folder


def test_promotion_refusals_say_why(models):
    with pytest.raises(gate.NotBlessedError) as info:
        gate.promote_if_blessed(models, "v0001")
    assert str(info.value).startswith("refusing to promote v0001: no blessing stored (")
    assert str(info.value).endswith("); run the gate and store_blessing() first")
    gate.store_blessing(models, "v0001", {"decision": "pass", "reasons": [], "candidate": {"version": "v0001"}})
    with pytest.raises(gate.NotBlessedError) as info:
        gate.promote_if_blessed(models, "v0001", {"decision": "fail", "reasons": ["AUC low", "too slow"]})
    assert str(info.value) == "refusing to promote v0001: given blessing decision is 'fail': AUC low; too slow"
    with pytest.raises(gate.NotBlessedError) as info:
        gate.promote_if_blessed(models, "v0001", {"decision": None})
    assert str(info.value) == "refusing to promote v0001: given blessing decision is None: no reasons recorded"
    assert gate.promote_if_blessed(models, "v0001")["champion"] == "v0001"
    assert models.history()[-1]["reason"] == "gate passed"
