"""Each drift metric function on small hand-made inputs, exactly (SciPy or the formula as the
oracle): equal and unequal sample sizes, ties, empty sides, bin edges of the label-rate rule. The
scenario tests in test_drift_statistics.py hold the same metrics to 1e-3 on large data, where a
changed constant or an off-by-one can hide."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from ml.drift import metrics as M

SAMPLES = [
    ([1.0, 2.0, 3.0], [1.5, 2.5, 9.0]),  # equal sizes
    ([0.0, 1.0, 1.0, 1.0, 4.0], [1.0, 2.0]),  # ties, unequal sizes
    ([5.0], [1.0, 2.0, 3.0, 4.0]),
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [2.0, 2.0, 2.0]),
    ([3.0, 3.0, 3.0], [3.0, 3.0]),  # identical values
    (list(np.random.default_rng(1).normal(0, 1, 37)), list(np.random.default_rng(2).normal(0.3, 2, 23))),
]


@pytest.mark.parametrize("a, b", SAMPLES)
def test_ks_and_w1_equal_scipy_exactly(a, b):
    a, b = np.sort(np.asarray(a)), np.sort(np.asarray(b))
    assert M.ks_sorted(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    assert M.ks_sorted(b, a) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    assert M.w1_sorted(a, b) == pytest.approx(wasserstein_distance(a, b), abs=1e-12)
    assert M.w1_sorted(b, a) == pytest.approx(wasserstein_distance(a, b), abs=1e-12)
    assert isinstance(M.ks_sorted(a, b), float) and isinstance(M.w1_sorted(a, b), float)


def test_last_of_runs_marks_the_last_index_of_each_run():
    assert M._last_of_runs(np.array([1, 1, 2, 3, 3, 3])).tolist() == [1, 2, 5]
    assert M._last_of_runs(np.array([7])).tolist() == [0]
    assert M._last_of_runs(np.array([1, 2])).tolist() == [0, 1]


def numeric(count, nulls=0, hist=(), mean=0.0, std=1.0, **extra):
    return {"kind": "numeric", "count": count, "nulls": nulls, "hist": list(hist), "mean": mean, "std": std, **extra}


def categorical(values, nulls=0, other=0, **extra):
    return {"kind": "categorical", "count": sum(values.values()) + other, "nulls": nulls, "values": values,
            "other": other, **extra}


def test_pair_defaults_and_sides():
    pair = M.Pair(numeric(3), numeric(0))
    assert pair.min_bin_rows == 30 and pair.ref_values is None and pair.cur_values is None
    assert pair.both is False and M.Pair(numeric(0), numeric(3)).both is False
    assert M.Pair(numeric(1), numeric(2)).both is True


def test_binned_numeric_is_the_histograms_and_categorical_the_union_of_categories():
    p, q = M.Pair(numeric(3, hist=[1, 2]), numeric(3, hist=[3, 0])).binned
    assert p.tolist() == [1.0, 2.0] and q.tolist() == [3.0, 0.0] and p.dtype == float
    p, q = M.Pair(categorical({"a": 2, "b": 1}), categorical({"c": 4, "a": 1})).binned
    assert p.tolist() == [2.0, 1.0, 0.0] and q.tolist() == [1.0, 0.0, 4.0]


def test_compare_feature_reports_missing_and_only_finite_defined_values():
    assert M.compare_feature(M.Pair(numeric(3), {"kind": "numeric", "missing": True})) == {"missing": 1.0}
    assert M.compare_feature(M.Pair({"kind": "numeric", "missing": True}, numeric(3))) == {"missing": 1.0}
    empty = M.compare_feature(M.Pair(numeric(0, nulls=4), numeric(0, nulls=1)))
    assert empty == {"null_delta": 0.0}  # every other metric is undefined without values
    cat = M.compare_feature(M.Pair(categorical({"a": 5, "b": 5}, auc=0.5), categorical({"a": 5, "b": 5}, auc=0.7)))
    assert cat == {"null_delta": 0.0, "js": 0.0, "psi": 0.0, "loglik_drop": 0.0, "single_feature_auc": 0.7,
                   "linf": 0.0, "oov_rate": 0.0, "chi2": 0.0, "chi2_pvalue": 1.0}
    assert all(type(v) is float for v in cat.values())


def test_null_delta():
    assert M.null_delta(M.Pair(numeric(3, nulls=1), numeric(1, nulls=3))) == pytest.approx(0.75 - 0.25)
    assert M.null_delta(M.Pair(numeric(0), numeric(1))) is None
    assert M.null_delta(M.Pair(numeric(1), numeric(0))) is None


def test_js_psi_and_loglik_drop_by_their_formulas():
    ref, cur = [8.0, 2.0, 0.0], [2.0, 6.0, 2.0]
    pair = M.Pair(numeric(10, hist=ref), numeric(10, hist=cur))
    assert M.js(pair) == pytest.approx(jensenshannon(ref, cur, base=2), abs=1e-12)
    p = np.maximum(np.array(ref) / 10, M.PSI_EPSILON)
    q = np.maximum(np.array(cur) / 10, M.PSI_EPSILON)
    assert M.PSI_EPSILON == 1e-4
    assert M.psi(pair) == pytest.approx(float(((q - p) * np.log(q / p)).sum()), abs=1e-12)
    smoothed = np.log((np.array(ref) + 0.5) / (10 + 0.5 * 3))
    assert M.loglik_drop(pair) == pytest.approx(
        float((np.array(ref) / 10 * smoothed).sum() - (np.array(cur) / 10 * smoothed).sum()), abs=1e-12)
    assert M.js(M.Pair(numeric(4, hist=[4, 0]), numeric(4, hist=[0, 4]))) == pytest.approx(1.0)
    none = M.Pair(numeric(0, hist=[0, 0]), numeric(4, hist=[4, 0]))
    assert M.js(none) is None and M.psi(none) is None and M.loglik_drop(none) is None


def test_label_metrics_need_the_label_statistics_on_both_sides():
    both = M.Pair(numeric(5, label_mi=0.25), numeric(5, label_mi=0.1))
    assert M.label_mi_delta(both) == pytest.approx(0.15)
    assert M.label_mi_delta(M.Pair(numeric(5, label_mi=0.2), numeric(5))) is None
    assert M.label_mi_delta(M.Pair(numeric(5), numeric(5, label_mi=0.2))) is None
    assert M.label_mi_delta(M.Pair(numeric(0, label_mi=0.2), numeric(5, label_mi=0.1))) is None
    assert M.label_rate_delta(M.Pair(numeric(5, label_n=[30], label_pos=[3]), numeric(5))) is None
    assert M.label_rate_delta(M.Pair(numeric(5), numeric(5, label_n=[30], label_pos=[3]))) is None
    assert M.single_feature_auc(both) is None
    assert M.single_feature_auc(M.Pair(numeric(5), numeric(5, auc=0.8))) == 0.8


def test_label_rate_delta_weights_bins_full_on_both_sides_by_current_rows():
    ref = numeric(100, label_n=[30, 29, 40], label_pos=[3, 29, 20])
    cur = numeric(100, label_n=[60, 50, 30], label_pos=[30, 0, 15])
    # bin 1 has 29 < 30 reference rows: left out; bins 0 and 2 weigh 60 and 30 current rows
    expected = (abs(30 / 60 - 3 / 30) * 60 + abs(15 / 30 - 20 / 40) * 30) / 90
    assert M.label_rate_delta(M.Pair(ref, cur)) == pytest.approx(expected, abs=1e-12)
    assert M.label_rate_delta(M.Pair(ref, cur, min_bin_rows=31)) == pytest.approx(0.0)  # only bin 2 is full
    assert M.label_rate_delta(M.Pair(ref, cur, min_bin_rows=61)) == 0.0  # none full: no evidence
    cref = categorical({"a": 40, "b": 40, "z": 5}, label_pos={"a": 4, "b": 20, "z": 5})
    ccur = categorical({"a": 50, "b": 30, "new": 40}, label_pos={"a": 25, "b": 15, "new": 1})
    expected = (abs(25 / 50 - 4 / 40) * 50 + abs(15 / 30 - 20 / 40) * 30) / 80
    assert M.label_rate_delta(M.Pair(cref, ccur)) == pytest.approx(expected, abs=1e-12)


def test_numeric_shift_metrics_scale_by_the_reference_std_or_one():
    a, b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])
    pair = M.Pair(numeric(3, mean=1.0, std=2.0), numeric(3, mean=2.0), a, b)
    assert M.ks(pair) == pytest.approx(1 / 3) and M.wasserstein(pair) == pytest.approx(1.0)
    assert M.wasserstein_std(pair) == pytest.approx(0.5) and M.mean_shift_std(pair) == pytest.approx(0.5)
    flat = M.Pair(numeric(3, mean=1.0, std=0.0), numeric(3, mean=3.0), a, b)
    assert M.wasserstein_std(flat) == pytest.approx(1.0) and M.mean_shift_std(flat) == pytest.approx(2.0)
    no_std = {k: v for k, v in numeric(3, mean=1.0).items() if k != "std"}
    assert M.mean_shift_std(M.Pair(no_std, numeric(3, mean=0.5), a, b)) == pytest.approx(0.5)
    assert M._scale({"std": 0.25}) == 0.25 and M._scale({"std": -1.0}) == 1.0
    empty = M.Pair(numeric(0, mean=1.0), numeric(3, mean=2.0), np.array([]), b)
    assert M.ks(empty) is None and M.wasserstein(empty) is None
    assert M.wasserstein_std(empty) is None and M.mean_shift_std(empty) is None


def test_categorical_metrics_by_their_formulas():
    ref, cur = {"a": 6, "b": 3, "c": 1}, {"a": 2, "b": 3, "d": 4}
    pair = M.Pair(categorical(ref), categorical(cur, other=1))
    # shares over the listed categories (the current side's `other` values are not a category)
    assert M.linf(pair) == pytest.approx(max(abs(0.6 - 2 / 9), abs(0.3 - 3 / 9), abs(0.1 - 0.0), abs(0.0 - 4 / 9)))
    assert M.oov_rate(pair) == pytest.approx((4 + 1) / 10)
    table = np.array([[6, 3, 1, 0], [2, 3, 0, 4]])
    statistic, pvalue, dof, _ = chi2_contingency(table, correction=False)
    assert M._chi2(pair) == (pytest.approx(statistic, abs=1e-9), dof)
    assert M.chi2(pair) == pytest.approx(statistic, abs=1e-9)
    assert M.chi2_pvalue(pair) == pytest.approx(pvalue, rel=1e-9)
    one = M.Pair(categorical({"a": 3}), categorical({"a": 5}))
    assert M.chi2_pvalue(one) == 1.0 and M.chi2(one) == 0.0  # one category: no degree of freedom
    empty = M.Pair(categorical({}), categorical({"a": 1}))
    assert [f(empty) for f in (M.linf, M.oov_rate, M.chi2, M.chi2_pvalue)] == [None] * 4


def test_the_registry_knows_each_metric_its_kinds_and_its_breach_side():
    both = {"null_delta", "js", "psi", "loglik_drop", "label_mi_delta", "label_rate_delta", "single_feature_auc"}
    assert set(M.METRICS["numeric"]) == both | {"ks", "wasserstein", "wasserstein_std", "mean_shift_std"}
    assert set(M.METRICS["categorical"]) == both | {"linf", "oov_rate", "chi2", "chi2_pvalue"}
    assert {n for kind in M.METRICS.values() for n, m in kind.items() if m.breach == "below"} == {"chi2_pvalue"}
    assert {m.breach for kind in M.METRICS.values() for m in kind.values()} == {"above", "below"}
    assert M.METRICS["numeric"]["ks"].fn is M.ks
    assert math.isclose(M.METRICS["categorical"]["linf"].fn(M.Pair(categorical({"a": 1}), categorical({"b": 1}))), 1.0)
