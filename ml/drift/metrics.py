"""Drift metrics: one function per metric, registered by feature kind in `METRICS`.

A new metric is one decorated function here plus, if it should decide, one threshold in the
`drift:` config (`ml/drift/config.py` rejects threshold names that are not registered). Each
function takes a `Pair` (one feature's reference and current statistics, and for numeric
features their sorted values) and returns a float, or None where it is undefined (e.g. no values).

Every statistic is the textbook two-sample one (tests/ml/test_drift_statistics.py holds each to
SciPy within 1e-3):
  ks               sup |F_ref - F_cur|, the two-sample Kolmogorov–Smirnov statistic (scipy.stats.ks_2samp)
  wasserstein      W1 = integral |F_ref - F_cur| dx (scipy.stats.wasserstein_distance), on raw values
  wasserstein_std  W1 / reference std (1 if the reference is constant): scale-free, for thresholds
  js               Jensen–Shannon distance, base 2 (scipy.spatial.distance.jensenshannon), on the
                   reference's quantile bins (numeric) or the categories (categorical)
  psi              sum (q - p) ln(q / p) over the same bins; empty bins count as share 1e-4
  loglik_drop      mean log-likelihood per row of the reference under its own (Laplace-smoothed)
                   binned distribution minus that of the current data: how unlikely the new data is
  chi2, chi2_pvalue  Pearson's chi-squared test of homogeneity on the 2 x K table of reference and
                   current category counts (scipy.stats.chi2_contingency, correction=False;
                   categories absent from both are dropped): stored for information, a p-value
                   at these sizes rejects everything, decisions use effect sizes
  linf, oov_rate   max |share difference| over categories; share of current values unseen in the reference
  null_delta       |null share (current) - null share (reference)|
  label_mi_delta   |MI(feature bin; label) current - reference| in bits
  label_rate_delta row-weighted mean |positive rate difference| over bins full on both sides
  single_feature_auc  max(AUC, 1 - AUC) of the feature alone as a score for the label (leakage)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

PSI_EPSILON = 1e-4


@dataclass(frozen=True)
class Metric:
    fn: Callable
    breach: str = "above"  # "above": value > threshold breaches; "below": value < threshold


METRICS: dict[str, dict[str, Metric]] = {"numeric": {}, "categorical": {}}


def metric(*kinds: str, breach: str = "above"):
    """Register the decorated function under its name for each feature kind."""
    def register(fn):
        for kind in kinds:
            METRICS[kind][fn.__name__] = Metric(fn, breach)
        return fn
    return register


class Pair:
    """One feature (or feature within a slice) on both sides; shared work is computed once."""

    def __init__(self, ref: dict, cur: dict, ref_values: np.ndarray | None = None,
                 cur_values: np.ndarray | None = None, min_bin_rows: int = 30):
        self.ref, self.cur = ref, cur
        self.ref_values, self.cur_values = ref_values, cur_values
        self.min_bin_rows = min_bin_rows

    @property
    def both(self) -> bool:
        return bool(self.ref["count"] and self.cur["count"])

    @cached_property
    def cdf_gaps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(|F_ref - F_cur| at each point of the pooled sorted sample, the widths to the next
        point, a mask of the last point of each run of equal values) from one merge of the two
        sorted arrays: the same empirical CDFs SciPy evaluates, without sorting again."""
        a, b = self.ref_values, self.cur_values
        pos = np.searchsorted(a, b, side="right") + np.arange(b.size)  # where b's values land
        from_b = np.zeros(a.size + b.size, dtype=bool)
        from_b[pos] = True
        merged = np.empty(a.size + b.size)
        merged[pos] = b
        merged[~from_b] = a
        count_b = np.cumsum(from_b)
        count_a = np.arange(1, merged.size + 1) - count_b
        gaps = np.abs(count_a / a.size - count_b / b.size)
        last = np.empty(merged.size, dtype=bool)  # within a tie only the last point has both CDFs
        np.not_equal(merged[1:], merged[:-1], out=last[:-1])
        last[-1] = True
        return gaps, np.diff(merged), last

    @cached_property
    def w1(self) -> float:
        gaps, widths, _ = self.cdf_gaps
        return float(np.dot(gaps[:-1], widths))

    @cached_property
    def binned(self) -> tuple[np.ndarray, np.ndarray]:
        """(reference counts, current counts) on one binning: the quantile bins or the categories."""
        if self.ref["kind"] == "numeric":
            return np.asarray(self.ref["hist"], float), np.asarray(self.cur["hist"], float)
        keys = list(dict.fromkeys([*self.ref["values"], *self.cur["values"]]))
        return (np.array([self.ref["values"].get(k, 0) for k in keys], float),
                np.array([self.cur["values"].get(k, 0) for k in keys], float))


def compare_feature(pair: Pair) -> dict:
    """Every registered metric of the feature's kind that is defined here: {name: float}."""
    if pair.ref.get("missing") or pair.cur.get("missing"):
        return {"missing": 1.0}
    out = {}
    for name, m in METRICS[pair.ref["kind"]].items():
        value = m.fn(pair)
        if value is not None and math.isfinite(value):
            out[name] = float(value)
    return out


# ------------------------------------------------------------------------------ both kinds


@metric("numeric", "categorical")
def null_delta(pair: Pair) -> float | None:
    n_ref, n_cur = pair.ref["count"] + pair.ref["nulls"], pair.cur["count"] + pair.cur["nulls"]
    if not (n_ref and n_cur):
        return None
    return abs(pair.cur["nulls"] / n_cur - pair.ref["nulls"] / n_ref)


@metric("numeric", "categorical")
def js(pair: Pair) -> float | None:
    if not pair.both:
        return None
    p, q = pair.binned
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return math.sqrt(max((kl_p + kl_q) / 2, 0.0))


@metric("numeric", "categorical")
def psi(pair: Pair) -> float | None:
    if not pair.both:
        return None
    p, q = pair.binned
    p = np.maximum(p / p.sum(), PSI_EPSILON)
    q = np.maximum(q / q.sum(), PSI_EPSILON)
    return float(((q - p) * np.log(q / p)).sum())


@metric("numeric", "categorical")
def loglik_drop(pair: Pair) -> float | None:
    if not pair.both:
        return None
    p, q = pair.binned
    smoothed = np.log((p + 0.5) / (p.sum() + 0.5 * p.size))
    return float((p / p.sum() * smoothed).sum() - (q / q.sum() * smoothed).sum())


@metric("numeric", "categorical")
def label_mi_delta(pair: Pair) -> float | None:
    if not pair.both or "label_mi" not in pair.ref or "label_mi" not in pair.cur:
        return None
    return abs(pair.cur["label_mi"] - pair.ref["label_mi"])


@metric("numeric", "categorical")
def label_rate_delta(pair: Pair) -> float | None:
    ref, cur = pair.ref, pair.cur
    if not pair.both or "label_pos" not in ref or "label_pos" not in cur:
        return None
    if ref["kind"] == "numeric":
        n_ref, pos_ref, n_cur, pos_cur = ref["label_n"], ref["label_pos"], cur["label_n"], cur["label_pos"]
    else:
        common = [k for k in ref["label_pos"] if k in cur["label_pos"]]
        n_ref, pos_ref = [ref["values"][k] for k in common], [ref["label_pos"][k] for k in common]
        n_cur, pos_cur = [cur["values"][k] for k in common], [cur["label_pos"][k] for k in common]
    n_ref, pos_ref, n_cur, pos_cur = (np.asarray(v, float) for v in (n_ref, pos_ref, n_cur, pos_cur))
    ok = (n_ref >= pair.min_bin_rows) & (n_cur >= pair.min_bin_rows)
    if not ok.any():
        return 0.0
    diff = np.abs(pos_cur[ok] / n_cur[ok] - pos_ref[ok] / n_ref[ok])
    return float((diff * n_cur[ok]).sum() / n_cur[ok].sum())


@metric("numeric", "categorical")
def single_feature_auc(pair: Pair) -> float | None:
    return pair.cur.get("auc")


# --------------------------------------------------------------------------------- numeric


@metric("numeric")
def ks(pair: Pair) -> float | None:
    if not pair.both:
        return None
    gaps, _, last = pair.cdf_gaps
    return float(gaps[last].max())


@metric("numeric")
def wasserstein(pair: Pair) -> float | None:
    return pair.w1 if pair.both else None


@metric("numeric")
def wasserstein_std(pair: Pair) -> float | None:
    w = wasserstein(pair)
    return None if w is None else w / _scale(pair.ref)


@metric("numeric")
def mean_shift_std(pair: Pair) -> float | None:
    if not pair.both:
        return None
    return abs(pair.cur["mean"] - pair.ref["mean"]) / _scale(pair.ref)


def _scale(ref: dict) -> float:
    return ref["std"] if ref.get("std", 0) > 0 else 1.0


# ----------------------------------------------------------------------------- categorical


@metric("categorical")
def linf(pair: Pair) -> float | None:
    if not pair.both:
        return None
    p, q = pair.binned
    return float(np.abs(p / p.sum() - q / q.sum()).max())


@metric("categorical")
def oov_rate(pair: Pair) -> float | None:
    if not pair.both:
        return None
    unseen = sum(c for k, c in pair.cur["values"].items() if k not in pair.ref["values"])
    return (unseen + pair.cur.get("other", 0)) / pair.cur["count"]


def _chi2(pair: Pair) -> tuple[float, int]:
    p, q = pair.binned
    observed = np.stack([p, q])
    expected = observed.sum(axis=1, keepdims=True) * observed.sum(axis=0, keepdims=True) / observed.sum()
    return float(((observed - expected) ** 2 / expected).sum()), p.size - 1


@metric("categorical")
def chi2(pair: Pair) -> float | None:
    return _chi2(pair)[0] if pair.both else None


@metric("categorical", breach="below")
def chi2_pvalue(pair: Pair) -> float | None:
    if not pair.both:
        return None
    from scipy.stats import chi2 as chi2_distribution

    statistic, dof = _chi2(pair)
    return 1.0 if dof < 1 else float(chi2_distribution.sf(statistic, dof))
