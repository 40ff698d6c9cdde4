"""Every drift metric equals its textbook two-sample definition (SciPy / NumPy as the oracle) to
1e-3, on raw data with outliers, heavy tails, ties, constant and all-NULL columns, nulls mixed in;
and a sampled reference keeps KS within the stated DKW bound."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance
from sklearn.metrics import mutual_info_score, roc_auc_score

from ml import drift as D
from ml.drift.reference import dkw_bound

TOL = 1e-3
SCHEMA_TEXT = """
name: stats_test
version: 1
keys: [id]
label: {name: y, type: int, values: [0, 1]}
row_count: [1, 10000000]
features:
  - {name: id, type: string, kind: key, known: ahead, presence: 1.0}
  - {name: outliers, type: float, kind: numeric, known: ahead, presence: 0.0, transform: normalize}
  - {name: pareto, type: float, kind: numeric, known: ahead, presence: 0.0, transform: normalize}
  - {name: cauchy, type: float, kind: numeric, known: ahead, presence: 0.0, transform: normalize}
  - {name: ties, type: int, kind: numeric, known: ahead, presence: 0.0, transform: normalize}
  - {name: constant, type: float, kind: numeric, known: ahead, presence: 0.0, transform: normalize}
  - {name: empty, type: float, kind: numeric, known: ahead, presence: 0.0, transform: normalize}
  - {name: colour, type: string, kind: categorical, known: ahead, presence: 0.0, open_vocabulary: true, transform: lookup}
"""
NUMERIC = ("outliers", "pareto", "cauchy", "ties", "constant", "empty")


def _with_nulls(rng, x, share):
    x = np.asarray(x, dtype=float)
    return [None if rng.random() < share else float(v) for v in x]


def _table(rng, n, shift):
    outliers = rng.normal(3 + shift, 1, n)
    outliers[rng.choice(n, 3, replace=False)] = 1710.0  # one far outlier squeezes min-max bins
    colours = rng.choice(np.array(["red", "green", "blue", "grey"], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1] if not shift
                         else [0.3, 0.3, 0.2, 0.2])
    if shift:
        colours[:50] = "purple"  # out of vocabulary
    y = (rng.random(n) < 1 / (1 + np.exp(-(outliers - 3)))).astype(int)
    return pa.table({
        "id": [f"r{i}" for i in range(n)],
        "outliers": _with_nulls(rng, outliers, 0.05),
        "pareto": _with_nulls(rng, rng.pareto(1.5 - shift / 2, n), 0.02),
        "cauchy": _with_nulls(rng, rng.standard_cauchy(n) + shift, 0.0),
        "ties": pa.array([None if rng.random() < 0.1 else int(v) for v in rng.poisson(2 + shift, n)], pa.int64()),
        "constant": [7.0] * n,
        "empty": pa.array([None] * n, pa.float64()),
        "colour": [None if rng.random() < 0.03 else str(c) for c in colours],
        "y": y,
    })


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    schema = tmp_path_factory.mktemp("s") / "schema.yaml"
    schema.write_text(SCHEMA_TEXT)
    rng = np.random.default_rng(11)
    ref, cur = _table(rng, 6000, 0.0), _table(rng, 4000, 0.4)
    reference = D.build_reference(ref, schema, {"bins": 12})
    result = D.check_drift(reference, cur, schema)
    scores = {(s["feature"], s["metric"]): s["value"] for s in result["scores"] if s["slice"] == "all"}
    return schema, ref, cur, reference, scores


def _valid(table, name):
    x = np.asarray(table.column(name).to_pylist(), dtype=object)
    keep = np.array([v is not None for v in x])
    return x[keep].astype(float)


@pytest.mark.parametrize("name", NUMERIC[:-1])
def test_ks_and_wasserstein_equal_scipy_on_raw_values(checked, name):
    _, ref, cur, _, scores = checked
    a, b = _valid(ref, name), _valid(cur, name)
    assert scores[(name, "ks")] == pytest.approx(ks_2samp(a, b).statistic, abs=TOL)
    w = wasserstein_distance(a, b)
    assert scores[(name, "wasserstein")] == pytest.approx(w, abs=TOL, rel=TOL)
    scale = a.std() if a.std() > 0 else 1.0
    assert scores[(name, "wasserstein_std")] == pytest.approx(w / scale, abs=TOL, rel=TOL)


def test_one_outlier_does_not_hide_a_shift_nor_fake_one(checked):
    _, _, _, _, scores = checked
    assert scores[("outliers", "ks")] > 0.1  # 0.4 sd shift: seen despite the 1710s
    assert scores[("constant", "ks")] == 0 and scores[("constant", "wasserstein")] == 0


def _bins(a, b, bins):
    edges = np.unique(np.quantile(a, np.arange(1, bins) / bins))
    full = np.concatenate([[-np.inf], edges, [np.inf]])
    return np.histogram(a, full)[0].astype(float), np.histogram(b, full)[0].astype(float), edges


def _psi(p, q, eps=1e-4):
    p, q = np.maximum(p / p.sum(), eps), np.maximum(q / q.sum(), eps)
    return float(((q - p) * np.log(q / p)).sum())


@pytest.mark.parametrize("name", NUMERIC[:-1])
def test_js_and_psi_on_reference_quantile_bins(checked, name):
    _, ref, cur, reference, scores = checked
    a, b = _valid(ref, name), _valid(cur, name)
    p, q, edges = _bins(a, b, 12)
    np.testing.assert_allclose(reference["stats"]["features"][name]["edges"], edges, rtol=1e-9)
    assert scores[(name, "js")] == pytest.approx(jensenshannon(p, q, base=2), abs=TOL)
    assert scores[(name, "psi")] == pytest.approx(_psi(p, q), abs=TOL)


def test_categorical_metrics(checked):
    _, ref, cur, _, scores = checked
    a = [v for v in ref.column("colour").to_pylist() if v is not None]
    b = [v for v in cur.column("colour").to_pylist() if v is not None]
    keys = sorted(set(a) | set(b))
    p = np.array([a.count(k) for k in keys], float)
    q = np.array([b.count(k) for k in keys], float)
    test = chi2_contingency(np.stack([p, q]), correction=False)
    assert scores[("colour", "chi2")] == pytest.approx(test.statistic, rel=TOL)
    assert scores[("colour", "chi2_pvalue")] == pytest.approx(test.pvalue, abs=TOL)
    assert scores[("colour", "js")] == pytest.approx(jensenshannon(p, q, base=2), abs=TOL)
    assert scores[("colour", "psi")] == pytest.approx(_psi(p, q), abs=TOL)
    assert scores[("colour", "linf")] == pytest.approx(np.abs(p / p.sum() - q / q.sum()).max(), abs=TOL)
    assert scores[("colour", "oov_rate")] == pytest.approx(b.count("purple") / len(b), abs=TOL)
    nulls = [t.column("colour").null_count / t.num_rows for t in (ref, cur)]
    assert scores[("colour", "null_delta")] == pytest.approx(abs(nulls[1] - nulls[0]), abs=TOL)


def test_all_null_column_has_only_null_delta(checked):
    _, _, _, _, scores = checked
    assert {m for f, m in scores if f == "empty"} == {"null_delta"}
    assert scores[("empty", "null_delta")] == 0


def test_label_relation_and_leakage_auc(checked):
    _, ref, cur, reference, scores = checked
    x = np.array([np.nan if v is None else v for v in cur.column("outliers").to_pylist()])
    y = np.asarray(cur.column("y"))
    keep = ~np.isnan(x)
    auc = roc_auc_score(y[keep], x[keep])
    assert scores[("outliers", "single_feature_auc")] == pytest.approx(max(auc, 1 - auc), abs=TOL)
    edges = np.asarray(reference["stats"]["features"]["outliers"]["label_edges"])

    def mi(table):
        v = np.array([np.nan if e is None else e for e in table.column("outliers").to_pylist()])
        k = ~np.isnan(v)
        return mutual_info_score(np.searchsorted(edges, v[k], side="right"), np.asarray(table.column("y"))[k]) / np.log(2)

    assert scores[("outliers", "label_mi_delta")] == pytest.approx(abs(mi(cur) - mi(ref)), abs=TOL)


def test_stored_reference_gives_the_same_scores(checked, tmp_path):
    schema, _, cur, reference, scores = checked
    path = D.save_reference(reference, tmp_path / "ref.json")
    again = D.check_drift(D.load_reference(path), cur, schema)
    assert {(s["feature"], s["metric"]): s["value"] for s in again["scores"] if s["slice"] == "all"} == scores


def test_sampled_reference_keeps_ks_within_the_dkw_bound(tmp_path):
    schema = tmp_path / "schema.yaml"
    schema.write_text(SCHEMA_TEXT)
    rng = np.random.default_rng(5)
    ref, cur = _table(rng, 40_000, 0.0), _table(rng, 3000, 0.2)
    cap = 4000
    reference = D.build_reference(ref, schema, {"reference_max_rows": cap, "sample_seed": 3})
    assert reference["values"].num_rows == cap and "sorted" not in reference
    assert reference["stats"]["features"]["outliers"]["count"] == len(_valid(ref, "outliers"))  # stats: every row
    scores = {(s["feature"], s["metric"]): s["value"] for s in D.check_drift(reference, cur, schema)["scores"]
              if s["slice"] == "all"}
    for name in ("outliers", "pareto", "cauchy", "ties"):
        bound = dkw_bound(cap - reference["values"].column(name).null_count)  # values, not rows
        exact = ks_2samp(_valid(ref, name), _valid(cur, name)).statistic
        assert abs(scores[(name, "ks")] - exact) <= bound, name
