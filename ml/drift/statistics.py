"""Per-feature statistics of one table (NumPy/PyArrow, no pandas).

  numeric      count, nulls, five-number summary, mean, std, skewness, number of modes, 101
               quantiles, counts in the reference's quantile bins, and the sorted values
               themselves (kept in memory, not in the JSON: KS and W1 are computed on them)
  categorical  value counts (the `max_values` most frequent; the rest summed as `other`), top-k,
               cardinality
  label link   positives per reference decile (numeric) or per value (categorical) and their
               mutual information; on the current side also the single-feature AUC (leakage)
  per slice    the distribution statistics per value of `slice_by` (the schema's slice column)

Nulls, and non-finite numbers, are counted as nulls and left out of every distribution.
Bins: interior edges e_1 < ... < e_k are the reference's quantiles at 1/bins, ..., (bins-1)/bins
(ties merged, so a column with many equal values has fewer bins); bin i is [e_i, e_i+1), the
outer bins reach -inf and +inf, so no value of the current data falls outside the binning.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml import features as F
from ml.drift.config import DriftError, monitored

P_GRID = np.linspace(0.0, 1.0, 101)
MODE_BINS = 40


@dataclass
class Profile:
    """What a check compares: the JSON-able statistics and, per (slice value or None, numeric
    feature), the sorted finite values with which KS and W1 are exact."""

    stats: dict
    values: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------- columns


def read_table(paths, schema: F.Schema) -> pa.Table:
    """CSV files/folders → one Arrow table typed by the schema; a value that does not parse as
    its type becomes NULL (validation rejects such rows; drift only measures)."""
    from ml.validate import expand

    files = [str(f) for f in expand(paths)]
    if not files:
        raise DriftError(f"no CSV files in {paths}")
    try:
        try:  # typed parsing is several times faster; it refuses a file with any bad value
            return F.read_csv_files(files, schema)
        except ValueError:
            return F.read_csv_files(files, schema, bad_values="null")
    except (ValueError, OSError, pa.ArrowInvalid) as exc:
        raise DriftError(f"cannot read {paths} as CSV: {exc}") from None


def numeric_array(column) -> np.ndarray:
    """float64 with NaN for nulls and non-finite values ("nan", "inf": NULL, as the lenient reader makes them)."""
    x = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    if not x.flags.writeable:
        x = x.copy()
    x[~np.isfinite(x)] = np.nan
    return x


def category_codes(column) -> tuple[np.ndarray, list[str]]:
    """(codes with -1 for null, category names as strings)."""
    encoded = pc.cast(column, pa.string()).combine_chunks().dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, [str(v) for v in encoded.dictionary.to_pylist()]


def label_array(table: pa.Table, schema: F.Schema) -> np.ndarray | None:
    """0/1 labels with -1 where the label is null; None if the table has no label column."""
    if not schema.label or schema.label not in table.column_names:
        return None
    y = numeric_array(table.column(schema.label))
    return np.where(np.isnan(y), -1, y).astype(np.int64)


def sort_finite(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(sorted non-NaN values, number of NaNs): NumPy sorts NaN last, so one sort does both."""
    s = np.sort(x)
    valid = int(np.argmax(np.isnan(s))) if s.size and np.isnan(s[-1]) else s.size
    return s[:valid], s.size - valid


def slice_rows(table: pa.Table, slice_by: str | None) -> dict[str, np.ndarray]:
    """Slice value → row indices (empty if the table has no such column)."""
    if not slice_by or slice_by not in table.column_names:
        return {}
    codes, names = category_codes(table.column(slice_by))
    return {name: np.flatnonzero(codes == i) for i, name in enumerate(names)}


def numeric_arrays(table: pa.Table, names: list[str]) -> dict[str, np.ndarray]:
    return {name: numeric_array(table.column(name)) for name in names if name in table.column_names}


def sorted_values(arrays: dict[str, np.ndarray], slices: dict[str, np.ndarray]) -> dict:
    """(None or slice value, name) → (sorted finite values, nulls) for each numeric column; the
    columns are sorted on parallel threads (NumPy releases the GIL while sorting)."""
    def one(name):
        x = arrays[name]
        return [((None, name), sort_finite(x))] + [((value, name), sort_finite(x[rows]))
                                                   for value, rows in slices.items()]

    return dict(item for items in parallel(one, list(arrays)) for item in items)


def parallel(fn, items: list) -> list:
    """`[fn(item) for item in items]` on one thread per core: the work per column is NumPy/Arrow
    kernels that release the GIL (sorts, searches, reductions), so columns overlap."""
    from concurrent.futures import ThreadPoolExecutor

    if len(items) < 2:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(fn, items))


# ---------------------------------------------------------------------------- numeric


def quantiles(s: np.ndarray, probs) -> np.ndarray:
    """Quantiles of sorted values by linear interpolation (NumPy's default method), O(len(probs))."""
    h = (s.size - 1) * np.asarray(probs, dtype=float)
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, s.size - 1)
    return s[lo] + (h - lo) * (s[hi] - s[lo])


def quantile_edges(s: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges: the quantiles at 1/bins .. (bins-1)/bins, ties merged."""
    if s.size == 0 or bins < 2:
        return np.empty(0)
    return np.unique(quantiles(s, np.arange(1, bins) / bins))


def bin_counts(s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e_1), [e_1, e_2), ..., [e_k, +inf) of sorted values (len(edges) + 1 bins)."""
    inner = np.searchsorted(s, edges, side="left")
    return np.diff(np.concatenate([[0], inner, [s.size]]))


def _n_modes(s: np.ndarray) -> int:
    """Peaks of a smoothed equal-width histogram between the 1st and 99th percentile."""
    lo, hi = quantiles(s, [0.01, 0.99])
    if hi <= lo:
        return 1
    hist = bin_counts(s, np.linspace(lo, hi, MODE_BINS + 1))[1:-1].astype(float)
    h = np.convolve(np.pad(hist, 1), [0.25, 0.5, 0.25], mode="valid")
    left = np.concatenate([[-1.0], h[:-1]])
    right = np.concatenate([h[1:], [-1.0]])
    return int(((h > left) & (h >= right) & (h >= 0.1 * h.max())).sum())


def numeric_stats(s: np.ndarray, nulls: int, edges: np.ndarray) -> dict:
    """Summary of one numeric column from its sorted finite values, binned on `edges`."""
    out = {"kind": "numeric", "count": int(s.size), "nulls": int(nulls)}
    if s.size:
        q = quantiles(s, P_GRID)
        mean = float(s.mean())
        d = s - mean
        d2 = d * d
        m2, m3 = float(d2.sum()) / s.size, float(np.dot(d2, d)) / s.size  # central moments, one temp each
        std = m2 ** 0.5
        skew = m3 / m2 ** 1.5 if m2 > 0 else 0.0
        out.update(min=float(q[0]), q1=float(q[25]), median=float(q[50]), q3=float(q[75]), max=float(q[100]),
                   mean=mean, std=std, skewness=skew, n_modes=_n_modes(s), quantiles=q.tolist())
    out["edges"] = [float(e) for e in edges]
    out["hist"] = bin_counts(s, edges).tolist()
    return out


def mutual_information(n: np.ndarray, pos: np.ndarray) -> float:
    """Mutual information (bits) between bin and a 0/1 label, from rows and positives per bin."""
    table = np.stack([n - pos, pos], axis=1).astype(float)
    total = table.sum()
    if total == 0:
        return 0.0
    p = table / total
    rows, cols = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.where(p > 0, p * np.log2(p / (rows * cols)), 0.0).sum())


def single_feature_auc(score: np.ndarray, y: np.ndarray, sorted_score: np.ndarray | None = None) -> float | None:
    """max(AUC, 1 - AUC) of one feature as a score for the label: ~1 means it alone gives the label away."""
    from ml.evaluate import auc

    value = auc(y, score, sorted_scores=sorted_score)
    return None if value is None else max(value, 1.0 - value)


def numeric_label_stats(x: np.ndarray, y: np.ndarray, label_edges: np.ndarray, leakage: bool,
                        sorted_x: np.ndarray | None = None) -> dict:
    """`sorted_x`: the sorted finite values of `x` (reused for the AUC when no label is missing)."""
    keep = ~np.isnan(x) & (y >= 0)
    xv, yv = x[keep], y[keep]
    b = np.searchsorted(label_edges, xv, side="right")
    n = np.bincount(b, minlength=len(label_edges) + 1)
    pos = np.bincount(b, weights=yv, minlength=len(label_edges) + 1).astype(np.int64)
    out = {"label_edges": [float(e) for e in label_edges], "label_n": n.tolist(), "label_pos": pos.tolist(),
           "label_mi": mutual_information(n, pos)}
    if leakage:
        out["auc"] = single_feature_auc(xv, yv, sorted_x if sorted_x is not None and (y >= 0).all() else None)
    return out


# ------------------------------------------------------------------------- categorical


def categorical_stats(codes: np.ndarray, names: list[str], top_k: int, max_values: int) -> dict:
    counts_with_null = np.bincount(codes + 1, minlength=len(names) + 1)
    counts = counts_with_null[1:]
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    kept = order[:max_values]
    return {"kind": "categorical", "count": int(counts.sum()), "nulls": int(counts_with_null[0]),
            "cardinality": int(order.size), "values": {names[i]: int(counts[i]) for i in kept},
            "other": int(counts[order[max_values:]].sum()),
            "top_k": [[names[i], int(counts[i])] for i in order[:top_k]]}


def categorical_label_stats(codes: np.ndarray, names: list[str], y: np.ndarray, kept: dict,
                            leakage: bool) -> dict:
    keep = (codes >= 0) & (y >= 0)
    n = np.bincount(codes[keep], minlength=len(names))
    pos = np.bincount(codes[keep], weights=y[keep], minlength=len(names))
    index = {name: i for i, name in enumerate(names)}
    rows = [index[k] for k in kept]
    out = {"label_pos": {names[i]: int(pos[i]) for i in rows},
           "label_mi": mutual_information(n[rows], pos[rows]) if rows else 0.0}
    if leakage and keep.any():
        rate = np.where(n > 0, pos / np.maximum(n, 1), 0.0)  # a category's positive rate is its score
        out["auc"] = single_feature_auc(rate[codes[keep]], y[keep])
    return out


# ------------------------------------------------------------------------------ a table


def measure(table: pa.Table, schema: F.Schema, binning: dict, reference: dict | None = None,
            leakage: bool = False) -> Profile:
    """Statistics of `table`. `reference` (a reference's stats) supplies the bins, so the two are
    comparable; without it the table is the reference and its own quantiles make the bins.
    `leakage`: also the single-feature AUC of each feature (the current side of a check)."""
    ref_features = (reference or {}).get("features", {})
    slice_by = binning.get("slice_by")
    slices = slice_rows(table, slice_by)
    arrays = numeric_arrays(table, [f.name for f in monitored(schema) if f.is_numeric])
    values = sorted_values(arrays, slices)
    y = label_array(table, schema)
    top_k, max_values = int(binning["top_k"]), int(binning["max_values"])

    def one(f: F.Feature) -> tuple[dict, tuple | None]:
        if f.name not in table.column_names:
            return {"kind": f.kind, "missing": True}, None
        ref = ref_features.get(f.name) or {}
        if f.is_numeric:
            s, nulls = values[(None, f.name)]
            edges = np.asarray(ref["edges"]) if "edges" in ref else quantile_edges(s, int(binning["bins"]))
            out = numeric_stats(s, nulls, edges)
            if y is not None:  # label bins: the reference's deciles
                label_edges = np.asarray(ref["label_edges"]) if "label_edges" in ref else quantile_edges(s, 10)
                out.update(numeric_label_stats(arrays[f.name], y, label_edges, leakage, s))
            return out, None
        codes = category_codes(table.column(f.name))
        out = categorical_stats(*codes, top_k, max_values)
        if y is not None:
            out.update(categorical_label_stats(*codes, y, out["values"], leakage))
        return out, codes

    names = [f.name for f in monitored(schema)]
    done = dict(zip(names, parallel(one, monitored(schema)), strict=True))
    features = {name: stats for name, (stats, _) in done.items()}
    codes = {name: c for name, (_, c) in done.items() if c is not None}
    stats = {"schema": schema.name, "schema_digest": schema.digest, "rows": table.num_rows,
             "computed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "features": features}
    if y is not None:
        stats["label"] = categorical_stats(np.where(y >= 0, y, -1), [str(v) for v in range(int(y.max(initial=0)) + 1)],
                                           int(binning["top_k"]), int(binning["max_values"]))
    if slices:
        stats["slices"] = {"by": slice_by, "values": {
            value: {"rows": int(rows.size),
                    "features": _slice_features(schema, features, values, codes, value, rows, binning)}
            for value, rows in slices.items()}}
    return Profile(stats, values)


def _slice_features(schema, features, values, codes, value, rows, binning) -> dict:
    """Distribution statistics of one slice, on the same bins as the whole table."""
    out = {}
    for f in monitored(schema):
        whole = features[f.name]
        if whole.get("missing"):
            out[f.name] = whole
        elif f.is_numeric:
            out[f.name] = numeric_stats(*values[(value, f.name)], np.asarray(whole["edges"]))
        else:
            c, names = codes[f.name]
            out[f.name] = categorical_stats(c[rows], names, int(binning["top_k"]), int(binning["max_values"]))
    return out
