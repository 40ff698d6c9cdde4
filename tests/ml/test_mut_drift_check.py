"""The drift decision's bookkeeping on hand-made statistics: which threshold each score gets (the
feature's, the missing-column rule, a slice's scaled one, none for small batches), which side of
a threshold breaches, what counts as drifted or leaky, and the drifted share. The metric values
themselves come from `ml.drift.metrics` (tested in test_mut_drift_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ml import features as F
from ml.drift import check as C
from ml.drift import metrics as M
from ml.drift.statistics import Profile

SCHEMA = F.Schema(name="t", label="y", features=(
    F.Feature("num", "float", "numeric", "ahead", transform="normalize"),
    F.Feature("cat", "string", "categorical", "ahead", transform="lookup")))


def test_breached_is_above_the_threshold_or_below_it_for_p_values():
    assert C._breached("ks", 0.3, 0.2) is True
    assert C._breached("ks", 0.2, 0.2) is False  # at the threshold: no breach
    assert C._breached("ks", 0.1, 0.2) is False
    assert C._breached("chi2_pvalue", 0.001, 0.01) is True
    assert C._breached("chi2_pvalue", 0.01, 0.01) is False
    assert C._breached("chi2_pvalue", 0.5, 0.01) is False
    assert C._breached("linf", 0.5, None) is False
    assert C._breached("drifted_share", 0.5, 0.3) is True  # not a registered metric: above breaches
    assert C._breached("missing", 0.5, 0.5) is False


def test_decide_gives_each_score_its_threshold_and_verdict():
    scores = {"ks": 0.3, "psi": 0.1, "js": 0.05, "single_feature_auc": 0.95, "chi2_pvalue": 0.001, "missing": 1.0}
    limits = {"ks": 0.2, "psi": "0.15", "single_feature_auc": 0.9, "chi2_pvalue": 0.01}
    assert C._decide(scores, limits) == [
        ("ks", 0.3, 0.2, True), ("psi", 0.1, 0.15, False), ("js", 0.05, None, False),
        ("single_feature_auc", 0.95, 0.9, True), ("chi2_pvalue", 0.001, 0.01, True), ("missing", 1.0, 0.5, True)]
    # a slice's factor scales the distances, not the leakage AUC, the p-value or the missing rule
    assert C._decide(scores, limits, 2.0) == [
        ("ks", 0.3, 0.4, False), ("psi", 0.1, 0.3, False), ("js", 0.05, None, False),
        ("single_feature_auc", 0.95, 0.9, True), ("chi2_pvalue", 0.001, 0.01, True), ("missing", 1.0, 0.5, True)]
    assert C._decide({"ks": 0.3}, {"ks": 0.2, "monitor": False}) == [("ks", 0.3, 0.2, False)]
    assert C._decide({"ks": 0.3}, {"ks": 0.2, "monitor": True}) == [("ks", 0.3, 0.2, True)]
    assert C._decide({"missing": 1.0}, C.UNJUDGED) == [("missing", 1.0, 0.5, False)]
    assert C.MISSING_THRESHOLD == 0.5 and C.UNJUDGED == {"monitor": False}
    assert all(type(t) is float for _, _, t, _ in C._decide(scores, limits, 2.0) if t is not None)


def numeric(values, hist):
    values = np.sort(np.asarray(values, float))
    return {"kind": "numeric", "count": values.size, "nulls": 0, "hist": list(hist), "mean": float(values.mean()),
            "std": float(values.std())}, values


def categorical(counts, auc=None):
    out = {"kind": "categorical", "count": sum(counts.values()), "nulls": 0, "values": dict(counts), "other": 0}
    if auc is not None:
        out["auc"] = auc
    return out


def profile(rows, num, cat, label=None, slices=None):
    stats = {"rows": rows, "features": {}}
    values = {}
    if num is not None:
        stats["features"]["num"], values[(None, "num")] = num[0], (num[1], 0)
    if cat is not None:
        stats["features"]["cat"] = cat
    if label is not None:
        stats["label"] = label
    if slices is not None:
        stats["slices"] = {"by": "cat", "values": {}}
        for value, (n, snum) in slices.items():
            stats["slices"]["values"][value] = {"rows": n, "features": {"num": snum[0]}}
            values[(value, "num")] = (snum[1], 0)
    return Profile(stats, values)


THRESHOLDS = {"min_rows": 10, "min_slice_rows": 5, "slice_factor": 2.0, "min_bin_rows": 30, "max_drifted_share": 0.5,
              "features": {"num": {"ks": 0.3, "mean_shift_std": 0.5},
                           "cat": {"linf": 0.1, "oov_rate": 0.05, "single_feature_auc": 0.9},
                           "y": {"linf": 0.2}}}


def rows(result, feature=None, slice_="all"):
    return {s["metric"]: (s["value"], s["threshold"], s["breached"]) for s in result["scores"]
            if (feature is None or s["feature"] == feature) and s["slice"] == slice_}


def expected(ref, cur, ref_values=None, cur_values=None):
    return M.compare_feature(M.Pair(ref, cur, ref_values, cur_values, 30))


def test_compare_scores_every_feature_the_label_and_the_table():
    ref_num, cur_num = numeric(range(20), [10, 10]), numeric(np.arange(20) + 10, [0, 20])
    ref = profile(20, ref_num, categorical({"a": 10, "b": 10}), label=categorical({0: 15, 1: 5}))
    cur = profile(20, cur_num, categorical({"a": 10, "b": 9, "c": 1}, auc=0.95), label=categorical({0: 10, 1: 10}))
    result = C.compare(ref, cur, SCHEMA, THRESHOLDS)
    num = rows(result, "num")
    assert {m: v for m, (v, _, _) in num.items()} == expected(ref_num[0], cur_num[0], ref_num[1], cur_num[1])
    assert num["ks"] == (0.5, 0.3, True) and num["mean_shift_std"][1:] == (0.5, True)
    assert num["js"][1:] == (None, False)
    cat = rows(result, "cat")
    assert cat["linf"] == (pytest.approx(0.05), 0.1, False)
    assert cat["oov_rate"] == (0.05, 0.05, False)  # at the threshold: no breach
    assert cat["single_feature_auc"] == (0.95, 0.9, True)
    label = rows(result, "y")
    assert label["linf"] == (0.25, 0.2, True)
    assert result["drifted"] == ["num", "y"] and result["leakage"] == ["cat"]
    assert result["drifted_share"] == pytest.approx(2 / 3)
    assert rows(result, "_table") == {"drifted_share": (pytest.approx(2 / 3), 0.5, True)}
    assert not result["ok"] and result["rows"] == 20
    assert result["breaches"] == [s for s in result["scores"] if s["breached"]]
    assert {s["metric"] for s in result["breaches"]} == {"ks", "mean_shift_std", "single_feature_auc", "linf",
                                                         "drifted_share"}
    assert set(result) == {"ok", "scores", "drifted", "leakage", "breaches", "drifted_share", "rows"}


def test_a_missing_column_breaches_and_a_label_on_one_side_only_is_not_compared():
    same = numeric(range(20), [10, 10])
    ref = profile(20, same, categorical({"a": 20}), label=categorical({0: 20}))
    cur = profile(20, same, None)
    result = C.compare(ref, cur, SCHEMA, THRESHOLDS)
    assert rows(result, "cat") == {"missing": (1.0, 0.5, True)}
    assert rows(result, "y") == {}
    assert result["drifted"] == ["cat"] and result["drifted_share"] == pytest.approx(1 / 3)
    assert rows(result, "_table") == {"drifted_share": (pytest.approx(1 / 3), 0.5, False)}
    assert rows(C.compare(profile(20, same, categorical({"a": 20})), profile(20, same, categorical({"a": 20}),
                                                                            label=categorical({0: 20})),
                          SCHEMA, THRESHOLDS), "y") == {}


def test_a_batch_under_min_rows_is_scored_but_decides_nothing():
    ref = profile(20, numeric(range(20), [10, 10]), categorical({"a": 20}), label=categorical({0: 20}))
    cur = profile(9, numeric(np.arange(9) + 50, [0, 9]), categorical({"z": 9}), label=categorical({1: 9}))
    result = C.compare(ref, cur, SCHEMA, THRESHOLDS)
    judged = [s for s in result["scores"] if s["feature"] != "_table"]
    assert judged and all(s["threshold"] is None and not s["breached"] for s in judged)
    assert result["ok"] and result["drifted"] == [] and result["rows"] == 9
    at_min = profile(10, numeric(np.arange(10) + 50, [0, 10]), categorical({"z": 10}))
    assert rows(C.compare(ref, at_min, SCHEMA, THRESHOLDS), "num")["ks"][1:] == (0.3, True)  # 10 rows: judged


def test_slices_get_the_scaled_thresholds_only_when_both_sides_are_big_enough():
    base = numeric(range(20), [10, 10])
    ref = profile(20, base, categorical({"a": 10, "b": 10}),
                  slices={"a": (6, numeric(range(6), [3, 3])), "b": (5, numeric(range(5), [3, 2])),
                          "gone": (9, numeric(range(9), [5, 4]))})
    cur = profile(20, base, categorical({"a": 10, "b": 10}),
                  slices={"a": (5, numeric(np.arange(5) + 10, [0, 5])), "b": (4, numeric(np.arange(4) + 9, [0, 4])),
                          "new": (7, numeric(range(7), [4, 3]))})
    result = C.compare(ref, cur, SCHEMA, THRESHOLDS)
    assert {s["slice"] for s in result["scores"]} == {"all", "cat=a", "cat=b"}  # a new value: oov_rate says it
    a = rows(result, "num", "cat=a")
    assert a["ks"][1:] == (0.6, True) and a["mean_shift_std"][1] == 1.0  # both limits x slice_factor
    b = rows(result, "num", "cat=b")
    assert all(t is None and not breached for _, t, breached in b.values())  # 4 current rows < 5
    assert result["drifted"] == ["num"]


def test_slices_leave_out_the_leakage_and_oov_limits():
    counts = {"a": 10, "b": 10}
    ref = Profile({"rows": 20, "features": {"cat": categorical(counts)},
                   "slices": {"by": "cat", "values": {"a": {"rows": 10, "features": {"cat": categorical({"a": 10})}}}}})
    cur = Profile({"rows": 20, "features": {"cat": categorical(counts)},
                   "slices": {"by": "cat", "values": {"a": {"rows": 10, "features": {
                       "cat": categorical({"a": 5, "x": 5}, auc=0.99)}}}}})
    schema = F.Schema(name="t", label="", features=(SCHEMA.features[1],))
    sliced = rows(C.compare(ref, cur, schema, THRESHOLDS), "cat", "cat=a")
    assert sliced["oov_rate"] == (0.5, None, False) and sliced["single_feature_auc"] == (0.99, None, False)
    assert sliced["linf"] == (0.5, 0.2, True)


def test_the_drifted_share_counts_monitored_features_and_may_have_no_limit():
    ref = profile(20, numeric(range(20), [10, 10]), categorical({"a": 20}))
    cur = profile(20, numeric(np.arange(20) + 30, [0, 20]), categorical({"a": 20}))
    thresholds = {**THRESHOLDS, "max_drifted_share": None,
                  "features": {**THRESHOLDS["features"], "cat": {"linf": 0.1, "monitor": False}}}
    result = C.compare(ref, cur, SCHEMA, thresholds)
    assert result["drifted_share"] == 0.5  # num of the two monitored: num and y
    assert rows(result, "_table") == {"drifted_share": (0.5, None, False)}
    at_limit = C.compare(ref, cur, SCHEMA, {**thresholds, "max_drifted_share": 0.5})
    assert rows(at_limit, "_table")["drifted_share"] == (0.5, 0.5, False)
    nothing = C.compare(ref, cur, SCHEMA, {**thresholds, "features": {"num": {"ks": 0.3, "monitor": False}}})
    assert nothing["drifted_share"] == 0.0 and nothing["drifted"] == []  # no monitored feature: no division by 0


def test_a_new_slice_value_first_a_slice_missing_a_feature_and_features_without_limits():
    base = numeric(range(20), [10, 10])
    ref = profile(20, base, None, label=categorical({0: 20}),
                  slices={"a": (6, numeric(range(6), [3, 3])), "b": (6, numeric(range(6), [3, 3]))})
    cur = profile(20, base, None, label=categorical({0: 20}),
                  slices={"new": (7, numeric(range(7), [4, 3])), "a": (6, numeric(range(6), [3, 3])),
                          "b": (6, numeric(range(6), [3, 3]))})
    del cur.stats["slices"]["values"]["b"]["features"]["num"]  # the column is absent in that slice
    schema = F.Schema(name="t", label="y", features=SCHEMA.features[:1])
    result = C.compare(ref, cur, schema, {**THRESHOLDS, "features": {}})  # no limits for num nor y
    assert {s["slice"] for s in result["scores"]} == {"all", "cat=a", "cat=b"}  # after the new value too
    assert rows(result, "num", "cat=b") == {"missing": (1.0, 0.5, True)}
    assert all(t is None for _, t, _ in rows(result, "num", "cat=a").values())
    assert all(t is None for _, t, _ in rows(result, "y").values())
    assert result["drifted"] == ["num"] and result["drifted_share"] == 1.0  # of no monitored limits: over 1


def test_without_thresholds_the_package_defaults_decide():
    schema = F.Schema(name="t", label="", features=SCHEMA.features[:1],
                      by_name={"num": SCHEMA.features[0]})
    ref = profile(100, numeric(range(100), [50, 50]), None)
    cur = profile(100, numeric(np.arange(100) + 50, [0, 100]), None)
    result = C.compare(ref, cur, schema)
    assert rows(result, "num")["ks"] == (0.5, 0.12, True)  # DEFAULT_CONFIG's numeric ks
