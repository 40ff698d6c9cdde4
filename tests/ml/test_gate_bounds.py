"""The gate at its edges: a value exactly at a floor or a ceiling passes, the next float past it fails.

Values are binary fractions (0.75, 0.125, ...) so differences such as champion - candidate are exact
and "exactly at the threshold" means exactly. `math.nextafter` gives the smallest step past it.
"""

from __future__ import annotations

import math

import pytest

from ml import gate

UP, DOWN = math.inf, -math.inf

# Every threshold set, and every one of them hit exactly by the metrics below.
EDGE = {
    "min_auc": 0.75,
    "max_cost_weighted_error": 0.5,
    "max_auc_drop": 0.125,
    "max_cost_weighted_error_increase": 0.25,
    "max_slice_auc_drop": 0.0625,
    "min_slice_auc": 0.625,
    "min_slice_rows": 100,
}


def _metrics(auc=0.75, cwe=0.5, slice_auc=0.75, slice_n=100) -> dict:
    return {"auc": auc, "cost_weighted_error": cwe,
            "slices": {"road_type": {"arterial": {"auc": slice_auc, "n": slice_n}}}}


def _failed(out: dict) -> set[str]:
    return {name for name, check in out["checks"].items() if check.get("passed") is False}


def test_everything_exactly_at_its_threshold_passes():
    # candidate: AUC at the floor, error at the ceiling, slice AUC at the slice floor;
    # against the champion: AUC drop, error increase and slice drop each exactly at their maximum.
    champion = _metrics(auc=0.875, cwe=0.25, slice_auc=0.6875)
    out = gate.decide(_metrics(auc=0.75, cwe=0.5, slice_auc=0.625), champion, EDGE)
    assert out["decision"] == "pass", out["reasons"]
    judged = {name: check["passed"] for name, check in out["checks"].items() if "passed" in check}
    assert judged == {"value.auc": True, "value.cost_weighted_error": True, "change.auc": True,
                      "change.cost_weighted_error": True, "slice.road_type=arterial.auc": True,
                      "slice.road_type=arterial.auc_drop": True}
    assert out["checks"]["change.auc"]["value"] == 0.125
    assert out["checks"]["change.cost_weighted_error"]["value"] == 0.25
    assert out["checks"]["slice.road_type=arterial.auc_drop"]["value"] == 0.0625


@pytest.mark.parametrize("metric, value, check, reason", [
    ("auc", math.nextafter(0.75, DOWN), "value.auc", "AUC 0.7500 < min 0.75"),
    ("cwe", math.nextafter(0.5, UP), "value.cost_weighted_error", "cost-weighted error 0.5000 > max 0.5"),
    ("slice_auc", math.nextafter(0.625, DOWN), "slice.road_type=arterial.auc", "road_type=arterial AUC 0.6250 < min 0.625"),
])
def test_a_value_just_past_its_floor_or_ceiling_fails(metric, value, check, reason):
    out = gate.decide(_metrics(**{metric: value}), None, {**EDGE, "min_slice_auc": 0.625})
    assert out["decision"] == "fail"
    assert _failed(out) == {check}
    assert out["reasons"] == [reason]


@pytest.mark.parametrize("candidate, champion, check, reason", [
    # AUC drop 0.125 is the maximum; the candidate one float lower drops a little more
    (_metrics(auc=math.nextafter(0.75, DOWN)), _metrics(auc=0.875), "change.auc", "AUC drop vs champion"),
    # error increase 0.25 is the maximum
    (_metrics(cwe=math.nextafter(0.5, UP)), _metrics(cwe=0.25), "change.cost_weighted_error",
     "cost-weighted error increase vs champion"),
    # slice AUC drop 0.0625 is the maximum
    (_metrics(slice_auc=math.nextafter(0.6875, DOWN)), _metrics(slice_auc=0.75),
     "slice.road_type=arterial.auc_drop", "road_type=arterial AUC drop vs champion"),
])
def test_a_change_just_past_its_maximum_fails(candidate, champion, check, reason):
    # value floors loosened so that only the change check is at its edge
    thresholds = {**EDGE, "min_auc": 0.5, "max_cost_weighted_error": 0.75, "min_slice_auc": None}
    out = gate.decide(candidate, champion, thresholds)
    assert out["decision"] == "fail"
    assert _failed(out) == {check}
    assert len(out["reasons"]) == 1 and out["reasons"][0].startswith(reason)


def test_min_slice_rows_is_inclusive_on_both_sides():
    bad_slice = {**EDGE, "min_slice_auc": 0.9}  # the slice fails whenever it is judged
    judged = gate.decide(_metrics(slice_n=100), None, bad_slice)
    assert _failed(judged) == {"slice.road_type=arterial.auc"}
    skipped = gate.decide(_metrics(slice_n=99), None, bad_slice)
    assert skipped["decision"] == "pass"
    assert skipped["checks"]["slice.road_type=arterial"] == {"skipped": "99 rows < min_slice_rows 100"}

    # the champion's slice counts too: at 100 rows the drop is judged, at 99 it is not
    worse = _metrics(slice_auc=0.5)
    drop = gate.decide(worse, _metrics(slice_auc=0.75, slice_n=100), {**EDGE, "min_slice_auc": None,
                                                                        "min_auc": None, "max_auc_drop": None})
    assert _failed(drop) == {"slice.road_type=arterial.auc_drop"}
    assert drop["checks"]["slice.road_type=arterial.auc_drop"]["champion"] == 0.75
    small = gate.decide(worse, _metrics(slice_auc=0.75, slice_n=99), {**EDGE, "min_slice_auc": None,
                                                                       "min_auc": None, "max_auc_drop": None})
    assert small["decision"] == "pass"
    assert small["checks"]["slice.road_type=arterial.auc_drop"] == {"skipped": "champion slice has 99 rows"}


def test_only_finite_real_numbers_count_as_evidence():
    for bad in (math.nan, math.inf, True, "0.9", None):
        out = gate.decide({"auc": bad, "cost_weighted_error": 0.25}, None, {"min_auc": 0.5})
        assert out["decision"] == "fail", bad
        assert out["reasons"] == [f"AUC: no value ({bad!r}), cannot be checked against 0.5"]
        assert out["checks"]["value.auc"] == {"value": bad, "threshold": 0.5, "passed": False}
    assert gate.decide({"auc": 1}, None, {"min_auc": 0.5})["decision"] == "pass"  # an int is a number


def test_change_checks_when_the_champion_has_no_metric_or_the_candidate_none():
    thresholds = {"max_auc_drop": 0.125, "max_cost_weighted_error_increase": 0.25}
    no_champion_auc = gate.decide({"auc": 0.5, "cost_weighted_error": 0.25}, {"cost_weighted_error": 0.25},
                                  thresholds)
    assert no_champion_auc["decision"] == "pass"
    assert no_champion_auc["checks"]["change.auc"] == {"skipped": "champion has no auc", "passed": None}
    no_candidate_auc = gate.decide({"auc": None, "cost_weighted_error": 0.25},
                                   {"auc": 0.75, "cost_weighted_error": 0.25}, thresholds)
    assert _failed(no_candidate_auc) == {"change.auc"}
    assert no_candidate_auc["checks"]["change.auc"]["champion"] == 0.75
    assert no_candidate_auc["checks"]["change.auc"]["candidate"] is None
    # no threshold: the champion's missing metric is not a reason to skip, the check is simply off
    off = gate.decide({"auc": 0.5}, {}, {})
    assert off["decision"] == "pass" and off["checks"]["change.auc"]["skipped"] == "no threshold"


def test_slices_without_a_comparable_champion_slice():
    candidate = {"auc": 0.75, "slices": {"road_type": {"arterial": {"auc": 0.5, "n": 500},
                                                        "highway": {"auc": None, "n": 500}}}}
    champion = {"auc": 0.75, "slices": {"road_type": {"arterial": {"auc": None, "n": 500},
                                                       "highway": {"auc": 0.75, "n": 500}}}}
    out = gate.decide(candidate, champion, {"max_slice_auc_drop": 0.0625, "min_slice_rows": 100})
    assert out["checks"]["slice.road_type=arterial.auc_drop"] == {"skipped": "champion slice has no AUC"}
    # a candidate slice without AUC cannot show it did not drop
    assert _failed(out) == {"slice.road_type=highway.auc_drop"}
    assert out["reasons"] == ["road_type=highway AUC drop vs champion: no value (None), cannot be checked "
                              "against 0.0625"]


# ---------------------------------------------------------------- infra budgets (pure)


MEASURED = {"single_latency_ms": {"p99": 20.0}, "batch_latency_ms": {"p99": 80.0}, "peak_memory_mb": 300.0,
            "model_size_mb": 2.5, "predictions": 10, "expected_predictions": 10, "non_finite": 0,
            "out_of_range": 0}
AT_BUDGET = {"max_p99_latency_ms": 20.0, "max_batch_p99_latency_ms": 80.0, "max_peak_memory_mb": 300.0,
             "max_model_size_mb": 2.5, "batch_size": 8}


def test_measurements_exactly_at_their_budgets_pass():
    assert gate.check_budgets(MEASURED, AT_BUDGET) == []
    assert gate.check_budgets(MEASURED, {}) == []  # no budgets: nothing to exceed


@pytest.mark.parametrize("key, path, reason", [
    ("max_p99_latency_ms", ("single_latency_ms", "p99"), "infra: p99 latency (1 row) 20.000 ms > budget"),
    ("max_batch_p99_latency_ms", ("batch_latency_ms", "p99"), "infra: p99 latency (8 rows) 80.000 ms > budget"),
    ("max_peak_memory_mb", ("peak_memory_mb",), "infra: peak memory of the serving process 300.000 MB > budget"),
    ("max_model_size_mb", ("model_size_mb",), "infra: model size on disk 2.500 MB > budget"),
])
def test_a_measurement_just_over_its_budget_fails(key, path, reason):
    measured = {k: dict(v) if isinstance(v, dict) else v for k, v in MEASURED.items()}
    target = measured
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = math.nextafter(target[path[-1]], UP)
    reasons = gate.check_budgets(measured, AT_BUDGET)
    assert len(reasons) == 1 and reasons[0].startswith(reason), reasons
    assert reasons[0].endswith(f"{AT_BUDGET[key]} {'ms' if 'latency' in key else 'MB'}")


def test_wrong_count_non_finite_and_out_of_range_predictions_each_fail():
    assert gate.check_budgets({**MEASURED, "predictions": 9}, AT_BUDGET) == [
        "infra: 9 predictions for 10 requested rows"]
    assert gate.check_budgets({**MEASURED, "non_finite": 1}, AT_BUDGET) == [
        "infra: 1 predictions are NaN or infinite"]
    assert gate.check_budgets({**MEASURED, "out_of_range": 1}, AT_BUDGET) == [
        "infra: 1 predictions are outside [0, 1]"]


# ---------------------------------------------------------------- the record (no serving needed)


def test_the_record_judges_against_the_champion_and_keeps_every_reason(tmp_path):
    champion = {"auc": 0.875, "cost_weighted_error": 0.25}
    candidate = {"auc": 0.625, "cost_weighted_error": 0.25}
    thresholds = {"min_auc": 0.75, "max_auc_drop": 0.125, "infra": {}}
    # metric reasons (floor and drop vs champion) and the infra reason (no SavedModel) all stay
    record = gate.evaluate_gate(candidate, champion, thresholds, model_dir=str(tmp_path),
                                canary_rows={"x": [1]}, schema_path="schema.yaml",
                                candidate={"version": "v0002"}, champion={"version": "v0001"})
    assert record["reasons"] == ["AUC 0.6250 < min 0.75", "AUC drop vs champion 0.2500 > max 0.125",
                                 f"infra: no SavedModel at {tmp_path} (saved_model.pb missing)"]
    assert record["champion"] == {"version": "v0001", "metrics": champion}
    assert gate.summary(record) == {"decision": "fail", "reasons": record["reasons"], "version": "v0002",
                                    "champion_version": "v0001"}


def test_the_record_without_infra_budgets_or_model_dir():
    record = gate.evaluate_gate({"auc": 0.75}, None, {"min_auc": 0.75})
    assert record["decision"] == "pass"
    assert record["checks"]["infra"] == {"skipped": "no infra budgets configured"}
    assert record["candidate"] == {"metrics": {"auc": 0.75}}  # no model_dir key when none was given
    assert record["champion"] is None
    missing = gate.evaluate_gate({"auc": 0.75}, None, {"infra": {}}, model_dir="m", schema_path="s")
    assert missing["checks"]["infra"] == {"passed": False}
    assert missing["reasons"] == ["infra: model_dir, canary_rows and schema_path are required for infra validation"]
