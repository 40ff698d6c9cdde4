"""Drift: reference statistics of the champion's training data vs each new batch.

Statistics (NumPy/SciPy/PyArrow, no pandas):
  numeric      count, nulls, five-number summary, mean, std, skewness, number of modes,
               fixed-bin histogram (reference min..max, plus under/overflow bins), 101 quantiles
  categorical  value counts (capped), top-k, cardinality
  label link   per-bin (numeric: reference deciles) / per-value positives, mutual information,
               and the single-feature AUC (leakage)
  per slice    the same distribution statistics per value of `slice_by` (e.g. road_type)

Comparison, decided on effect sizes (distances), never on p-values alone:
  numeric      ks (on the reference bins), wasserstein_std (W1 / reference std), js (Jensen-Shannon
               distance, base 2), psi, loglik_drop
  categorical  linf, psi, js, oov_rate, chi2 (+ p-value, stored for information), loglik_drop
  both         null_delta, label_mi_delta, label_rate_delta, single_feature_auc (leakage)
  table        drifted_share (share of monitored features with a breach)
`loglik_drop` = mean log-likelihood of the reference under itself minus that of the new data
under the reference histogram (nats/row): how unlikely the new distribution is given the original.

Thresholds come from the profile's `drift:` section (defaults per kind + per-feature overrides),
resolved once with `resolve_thresholds` and stored with the reference (registry attachment
`reference_stats`). Every score is written to the `drift_scores` table; breaches raise alerts.

    python -m ml.drift --schema S --reference R.csv|R.json --current C.csv [--report out.html]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml import features as F
from ml.storage import to_path

ATTACHMENT = "reference_stats"
P_GRID = np.linspace(0.0, 1.0, 101)
NUMERIC_METRICS = ("ks", "wasserstein_std", "js", "psi", "loglik_drop", "null_delta",
                   "label_mi_delta", "label_rate_delta", "single_feature_auc")
CATEGORICAL_METRICS = ("linf", "psi", "js", "oov_rate", "chi2", "chi2_pvalue", "loglik_drop",
                       "null_delta", "label_mi_delta", "label_rate_delta", "single_feature_auc")
# Used when the caller passes no `drift:` section (e.g. the CLI on a user's own data).
DEFAULT_CONFIG = {
    "bins": 40,
    "top_k": 10,
    "max_values": 10000,
    "slice_by": None,
    "min_rows": 50,
    "min_slice_rows": 200,
    "slice_factor": 1.5,
    "min_bin_rows": 30,
    "max_drifted_share": 0.3,
    "defaults": {
        "numeric": {"ks": 0.15, "wasserstein_std": 0.5, "js": 0.2, "null_delta": 0.1},
        "categorical": {"linf": 0.1, "psi": 0.25, "oov_rate": 0.05, "null_delta": 0.1},
        "label": {"linf": 0.08},
        "leakage_auc": 0.9,
    },
    "features": {},
}
SCORES_SCHEMA = pa.schema([
    ("checked_at", pa.timestamp("us", tz="UTC")),
    ("run_id", pa.string()),
    ("data_date", pa.date32()),
    ("model_version", pa.string()),
    ("feature", pa.string()),
    ("slice", pa.string()),
    ("metric", pa.string()),
    ("value", pa.float64()),
    ("threshold", pa.float64()),
    ("breached", pa.bool_()),
])


class DriftError(ValueError):
    pass


# ------------------------------------------------------------------------------- reading


def read_table(paths, schema: F.Schema) -> pa.Table:
    """One or more CSV files/folders → an Arrow table with the schema's types where columns exist.

    A value that does not parse as the schema's type becomes NULL (validation is where such rows
    are rejected; drift only measures)."""
    import pyarrow.csv as pacsv

    from ml.validate import expand

    files = expand(paths)
    if not files:
        raise DriftError(f"no CSV files in {paths}")
    types = F.arrow_types(schema)
    tables = []
    for path in files:
        try:
            table = pacsv.read_csv(str(path), convert_options=pacsv.ConvertOptions(
                column_types={k: pa.string() for k in types}, strings_can_be_null=True))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DriftError(f"{path}: cannot read as CSV: {exc}") from None
        columns = {}
        for name in table.column_names:
            column = table.column(name)
            target = types.get(name)
            if target is not None and target != pa.string():
                try:
                    column = pc.cast(column, target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    column = _coerce(column, target)
            columns[name] = column
        tables.append(pa.table(columns))
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _coerce(column, target):
    values = []
    for v in column.to_pylist():
        try:
            values.append(None if v is None else float(v))
        except ValueError:
            values.append(None)
    out = pa.array(values, pa.float64())
    if target == pa.int64():
        ok = pc.equal(out, pc.floor(out))
        out = pc.if_else(ok, out, None)
        return pc.cast(out, pa.int64())
    return out


# ---------------------------------------------------------------------------- statistics


def _numeric(column) -> np.ndarray:
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


def _categorical(column) -> tuple[np.ndarray, list[str]]:
    """(codes with -1 for null, dictionary values as strings)."""
    encoded = pc.cast(column, pa.string()).combine_chunks().dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, [str(v) for v in encoded.dictionary.to_pylist()]


def _mi(table: np.ndarray) -> float:
    """Mutual information (bits) of a contingency table (rows = bins, cols = label 0/1)."""
    n = table.sum()
    if n == 0:
        return 0.0
    p = table / n
    pr, pc_ = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / (pr * pc_)), 0.0)
    return float(terms.sum())


def _auc(score: np.ndarray, y: np.ndarray) -> float | None:
    """max(AUC, 1 - AUC) of a single score against a 0/1 label (rank formula, ties averaged)."""
    from scipy.stats import rankdata

    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return None
    ranks = rankdata(score)
    auc = (ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return float(max(auc, 1 - auc))


def _n_modes(hist: np.ndarray) -> int:
    if hist.sum() == 0:
        return 0
    h = np.convolve(np.pad(hist.astype(float), 1), [0.25, 0.5, 0.25], mode="valid")
    left = np.concatenate([[-1.0], h[:-1]])
    right = np.concatenate([h[1:], [-1.0]])
    peaks = (h > left) & (h >= right) & (h >= 0.1 * h.max())
    return int(peaks.sum())


def _numeric_stats(x: np.ndarray, y: np.ndarray | None, grid: dict | None, bins: int,
                   with_label: bool) -> dict:
    valid = ~np.isnan(x)
    v = x[valid]
    out = {"kind": "numeric", "count": int(v.size), "nulls": int((~valid).sum())}
    if grid is not None:
        edges = np.asarray(grid["edges"], dtype=float) if grid.get("edges") is not None else None
    elif v.size:
        lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
    else:
        edges = None
    if v.size:
        q = np.quantile(v, P_GRID)
        mean, std = float(v.mean()), float(v.std())
        skew = float(((v - mean) ** 3).mean() / std**3) if std > 0 else 0.0
        out.update(min=float(q[0]), q1=float(q[25]), median=float(q[50]), q3=float(q[75]), max=float(q[100]),
                   mean=mean, std=std, skewness=skew, quantiles=[float(a) for a in q])
    if edges is not None:
        idx = np.searchsorted(edges, v, side="right")  # 0 = underflow, len(edges) = overflow
        idx[v == edges[-1]] = len(edges) - 1  # the top edge belongs to the last bin
        hist = np.bincount(idx, minlength=len(edges) + 1)
        out["edges"] = [float(e) for e in edges]
        out["hist"] = [int(c) for c in hist]
        out["n_modes"] = _n_modes(hist[1:-1])
    if with_label and y is not None and v.size:
        yv = y[valid]
        keep = yv >= 0
        if grid is not None and grid.get("label_edges") is not None:
            ledges = np.asarray(grid["label_edges"], dtype=float)
        else:
            ledges = np.unique(np.quantile(v, np.linspace(0, 1, 11)))
        b = np.clip(np.searchsorted(ledges, v[keep], side="right") - 1, 0, max(len(ledges) - 2, 0))
        nb = max(len(ledges) - 1, 1)
        n_bin = np.bincount(b, minlength=nb)
        pos_bin = np.bincount(b, weights=yv[keep], minlength=nb)
        out["label_edges"] = [float(e) for e in ledges]
        out["label_n"] = [int(c) for c in n_bin]
        out["label_pos"] = [int(c) for c in pos_bin]
        out["label_mi"] = _mi(np.stack([n_bin - pos_bin, pos_bin], axis=1))
        out["auc"] = _auc(v[keep], yv[keep])
    return out


def _categorical_stats(codes: np.ndarray, names: list[str], y: np.ndarray | None, top_k: int,
                       max_values: int, with_label: bool) -> dict:
    valid = codes >= 0
    counts = np.bincount(codes[valid], minlength=len(names))
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    kept = order[:max_values]
    out = {"kind": "categorical", "count": int(valid.sum()), "nulls": int((~valid).sum()),
           "cardinality": int(len(order)),
           "values": {names[i]: int(counts[i]) for i in kept},
           "other": int(counts[order[max_values:]].sum()),
           "top_k": [[names[i], int(counts[i])] for i in order[:top_k]]}
    if with_label and y is not None:
        keep = valid & (y >= 0)
        pos = np.bincount(codes[keep], weights=y[keep], minlength=len(names))
        out["label_pos"] = {names[i]: int(pos[i]) for i in kept}
        n_bin = counts[kept]
        out["label_mi"] = _mi(np.stack([n_bin - pos[kept], pos[kept]], axis=1)) if len(kept) else 0.0
        if keep.any():
            rate = np.where(counts > 0, pos / np.maximum(counts, 1), 0.0)
            out["auc"] = _auc(rate[codes[keep]], y[keep])
    return out


def _label_array(table: pa.Table, schema: F.Schema) -> np.ndarray | None:
    if not schema.label or schema.label not in table.column_names:
        return None
    y = _numeric(table.column(schema.label))
    return np.where(np.isnan(y), -1, y).astype(np.int64)


def monitored(schema: F.Schema) -> list[F.Feature]:
    return [f for f in schema.features if f.kind in ("numeric", "categorical")]


def compute_stats(data, schema: F.Schema, config: dict | None = None, grid: dict | None = None) -> dict:
    """Statistics of `data` (an Arrow table or CSV paths). With `grid` (a reference), numeric
    histograms and label bins use the reference's bin edges, so the two are comparable."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    table = data if isinstance(data, pa.Table) else read_table(data, schema)
    y = _label_array(table, schema)
    bins, top_k, max_values = int(cfg["bins"]), int(cfg["top_k"]), int(cfg["max_values"])
    slice_by = cfg.get("slice_by")
    grid_features = (grid or {}).get("features", {})

    cached = {}
    for f in monitored(schema):
        if f.name not in table.column_names:
            continue
        col = table.column(f.name)
        cached[f.name] = _numeric(col) if f.is_numeric else _categorical(col)

    def features_stats(mask: np.ndarray | None, with_label: bool, grids: dict) -> dict:
        out = {}
        ym = None if y is None else (y if mask is None else y[mask])
        for f in monitored(schema):
            if f.name not in cached:
                out[f.name] = {"kind": f.kind, "missing": True}
                continue
            if f.is_numeric:
                x = cached[f.name] if mask is None else cached[f.name][mask]
                out[f.name] = _numeric_stats(x, ym, grids.get(f.name), bins, with_label)
            else:
                codes, names = cached[f.name]
                codes = codes if mask is None else codes[mask]
                out[f.name] = _categorical_stats(codes, names, ym, top_k, max_values, with_label)
        return out

    stats = {"schema": schema.name, "schema_digest": schema.digest, "rows": table.num_rows,
             "computed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "features": features_stats(None, True, grid_features)}
    if y is not None:
        stats["label"] = _categorical_stats(np.where(y >= 0, y, -1), [str(v) for v in range(int(y.max(initial=0)) + 1)],
                                            None, top_k, max_values, False)
    if slice_by and slice_by in cached and not schema.feature(slice_by).is_numeric:
        codes, names = cached[slice_by]
        stats["slices"] = {"by": slice_by, "values": {}}
        ref_slices = ((grid or {}).get("slices") or {}).get("values", {})
        for i, name in enumerate(names):
            mask = codes == i
            if not mask.any():
                continue
            sgrid = (ref_slices.get(name) or {}).get("features", {})
            stats["slices"]["values"][name] = {"rows": int(mask.sum()),
                                               "features": features_stats(mask, False, sgrid)}
    return stats


# ---------------------------------------------------------------------------- thresholds


def resolve_thresholds(schema: F.Schema, config: dict | None = None) -> dict:
    """The `drift:` config section → {"features": {name: {metric: threshold, "monitor": bool}}, ...}.

    Per-feature entries override the defaults of the feature's kind; a metric set to null is
    computed and stored but decides nothing; `monitor: false` leaves a feature out of alarms."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    defaults = {**DEFAULT_CONFIG["defaults"], **(cfg.get("defaults") or {})}
    overrides = cfg.get("features") or {}
    out = {}
    for f in monitored(schema):
        base = dict(defaults.get(f.kind) or {})
        base["monitor"] = True
        if f.transform != "none":  # leakage only matters for model inputs
            base["single_feature_auc"] = defaults.get("leakage_auc")
        base.update(overrides.get(f.name) or {})
        out[f.name] = base
    if schema.label:
        out[schema.label] = {"monitor": True, **(defaults.get("label") or {}), **(overrides.get(schema.label) or {})}
    keys = ("min_rows", "min_slice_rows", "slice_factor", "min_bin_rows", "max_drifted_share")
    return {"features": out, **{k: cfg[k] for k in keys}}


# ---------------------------------------------------------------------------- comparison


def _js(p: np.ndarray, q: np.ndarray) -> float:
    from scipy.spatial.distance import jensenshannon

    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    return float(jensenshannon(p, q, base=2))


def _psi(p: np.ndarray, q: np.ndarray, eps: float = 1e-4) -> float:
    p = np.maximum(p / max(p.sum(), 1), eps)
    q = np.maximum(q / max(q.sum(), 1), eps)
    return float(((q - p) * np.log(q / p)).sum())


def _loglik_drop(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Mean log-likelihood per row of the reference under itself minus that of the new data
    under the reference (Laplace-smoothed histogram): >= 0 up to noise, large = unlikely."""
    smoothed = (ref_counts + 0.5) / (ref_counts.sum() + 0.5 * len(ref_counts))
    p = ref_counts / max(ref_counts.sum(), 1)
    q = cur_counts / max(cur_counts.sum(), 1)
    return float((p * np.log(smoothed)).sum() - (q * np.log(smoothed)).sum())


def _label_rate_delta(ref_n, ref_pos, cur_n, cur_pos, min_rows: int) -> float:
    """Row-weighted mean |label rate(new) - label rate(ref)| over bins with enough rows on both sides."""
    ref_n, ref_pos = np.asarray(ref_n, float), np.asarray(ref_pos, float)
    cur_n, cur_pos = np.asarray(cur_n, float), np.asarray(cur_pos, float)
    ok = (ref_n >= min_rows) & (cur_n >= min_rows)
    if not ok.any():
        return 0.0
    diff = np.abs(cur_pos[ok] / cur_n[ok] - ref_pos[ok] / ref_n[ok])
    return float((diff * cur_n[ok]).sum() / cur_n[ok].sum())


def compare_feature(ref: dict, cur: dict, min_bin_rows: int = 30) -> dict:
    """Distances between one feature's reference and current statistics (plain floats)."""
    if ref.get("missing") or cur.get("missing"):
        return {"missing": 1.0}
    out = {}
    n_ref, n_cur = ref["count"] + ref["nulls"], cur["count"] + cur["nulls"]
    if n_ref and n_cur:
        out["null_delta"] = abs(cur["nulls"] / n_cur - ref["nulls"] / n_ref)
    if ref["kind"] == "numeric":
        if ref.get("hist") and cur.get("hist") and ref["count"] and cur["count"]:
            p, q = np.asarray(ref["hist"], float), np.asarray(cur["hist"], float)
            out["ks"] = float(np.abs(np.cumsum(p) / p.sum() - np.cumsum(q) / q.sum()).max())
            out["js"] = _js(p, q)
            out["psi"] = _psi(p, q)
            out["loglik_drop"] = _loglik_drop(p, q)
            qr, qc = np.asarray(ref["quantiles"]), np.asarray(cur["quantiles"])
            w = float(np.trapezoid(np.abs(qr - qc), P_GRID))
            scale = ref["std"] if ref["std"] > 0 else max(ref["q3"] - ref["q1"], 1.0)
            out["wasserstein"] = w
            out["wasserstein_std"] = w / scale
            out["mean_shift_std"] = abs(cur["mean"] - ref["mean"]) / scale
        if "label_n" in ref and "label_n" in cur:
            out["label_mi_delta"] = abs(cur["label_mi"] - ref["label_mi"])
            out["label_rate_delta"] = _label_rate_delta(ref["label_n"], ref["label_pos"], cur["label_n"],
                                                        cur["label_pos"], min_bin_rows)
    else:
        keys = list(dict.fromkeys([*ref["values"], *cur["values"]]))
        p = np.array([ref["values"].get(k, 0) for k in keys], float)
        q = np.array([cur["values"].get(k, 0) for k in keys], float)
        if p.sum() and q.sum():
            oov = sum(c for k, c in cur["values"].items() if k not in ref["values"]) + cur.get("other", 0)
            out["oov_rate"] = oov / q.sum()
            out["linf"] = float(np.abs(p / p.sum() - q / q.sum()).max())
            out["psi"] = _psi(p, q)
            out["js"] = _js(p, q)
            out["loglik_drop"] = _loglik_drop(p, q)
            from scipy.stats import chisquare

            expected = (p + 0.5) / (p + 0.5).sum() * q.sum()
            chi2 = chisquare(q, expected)
            out["chi2"] = float(chi2.statistic)
            out["chi2_pvalue"] = float(chi2.pvalue)
        if "label_pos" in ref and "label_pos" in cur:
            out["label_mi_delta"] = abs(cur["label_mi"] - ref["label_mi"])
            common = [k for k in ref["label_pos"] if k in cur["label_pos"]]
            out["label_rate_delta"] = _label_rate_delta(
                [ref["values"][k] for k in common], [ref["label_pos"][k] for k in common],
                [cur["values"][k] for k in common], [cur["label_pos"][k] for k in common], min_bin_rows)
    if cur.get("auc") is not None:
        out["single_feature_auc"] = cur["auc"]
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}


def _decide(scores: dict, limits: dict, factor: float = 1.0) -> list[tuple[str, float, float | None, bool]]:
    rows = []
    for metric, value in scores.items():
        threshold = limits.get(metric)
        if metric == "missing":
            threshold = 0.5
        if threshold is not None and metric != "single_feature_auc":
            threshold = float(threshold) * factor
        breached = bool(threshold is not None and limits.get("monitor", True) and value > threshold)
        rows.append((metric, value, None if threshold is None else float(threshold), breached))
    return rows


def compare(reference: dict, current: dict, schema: F.Schema, thresholds: dict | None = None) -> dict:
    """All scores of `current` against `reference`; thresholds default to the reference's own.

    Returns {ok, scores: [{feature, slice, metric, value, threshold, breached}], drifted: [names],
    leakage: [names], breaches: [score rows], drifted_share}."""
    thresholds = thresholds or reference.get("thresholds") or resolve_thresholds(schema)
    ref_stats = reference.get("stats", reference)
    limits = thresholds["features"]
    min_bin = int(thresholds.get("min_bin_rows", 30))
    scores = []

    def add(feature, slice_, items):
        for metric, value, threshold, breached in items:
            scores.append({"feature": feature, "slice": slice_, "metric": metric, "value": value,
                           "threshold": threshold, "breached": breached})

    small = current["rows"] < int(thresholds.get("min_rows", 0))
    for name, ref in ref_stats["features"].items():
        cur = current["features"].get(name, {"kind": ref["kind"], "missing": True})
        add(name, "all", _decide(compare_feature(ref, cur, min_bin), {} if small else limits.get(name, {})))
    if schema.label and "label" in ref_stats and "label" in current:
        add(schema.label, "all", _decide(compare_feature(ref_stats["label"], current["label"]),
                                         {} if small else limits.get(schema.label, {})))
    ref_slices = (ref_stats.get("slices") or {}).get("values", {})
    cur_slices = (current.get("slices") or {}).get("values", {})
    factor = float(thresholds.get("slice_factor", 1.5))
    min_slice = int(thresholds.get("min_slice_rows", 200))
    for value, cur_slice in cur_slices.items():
        ref_slice = ref_slices.get(value)
        if ref_slice is None:
            continue
        label = f"{ref_stats['slices']['by']}={value}"
        enough = cur_slice["rows"] >= min_slice and ref_slice["rows"] >= min_slice
        for name, ref in ref_slice["features"].items():
            cur = cur_slice["features"].get(name, {"kind": ref["kind"], "missing": True})
            feature_limits = {k: v for k, v in limits.get(name, {}).items()
                              if k not in ("single_feature_auc", "oov_rate")} if enough else {}
            add(name, label, _decide(compare_feature(ref, cur, min_bin), feature_limits, factor))
    drifted = sorted({s["feature"] for s in scores if s["breached"] and s["metric"] != "single_feature_auc"})
    leakage = sorted({s["feature"] for s in scores if s["breached"] and s["metric"] == "single_feature_auc"})
    n_monitored = sum(1 for v in limits.values() if v.get("monitor", True)) or 1
    share = len(drifted) / n_monitored
    max_share = thresholds.get("max_drifted_share")
    add("_table", "all", [("drifted_share", share, max_share,
                           bool(max_share is not None and share > float(max_share)))])
    breaches = [s for s in scores if s["breached"]]
    return {"ok": not breaches, "scores": scores, "drifted": drifted, "leakage": leakage,
            "breaches": breaches, "drifted_share": share, "rows": current["rows"]}


# ------------------------------------------------------------------ reference in the registry


def build_reference(data, schema_path, config: dict | None = None) -> dict:
    """{"stats", "thresholds", "config"} of the training data (a table or CSV paths)."""
    schema = F.load_schema(str(schema_path))
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    return {"stats": compute_stats(data, schema, cfg), "thresholds": resolve_thresholds(schema, cfg),
            "config": {k: cfg[k] for k in ("bins", "top_k", "max_values", "slice_by")},
            "schema_digest": schema.digest}


def store_reference(registry_root, version: str, data, schema_path, config: dict | None = None) -> dict:
    """Compute the reference of `data` and attach it to model `version` as `reference_stats`."""
    from ml import registry

    reference = build_reference(data, schema_path, config)
    path = registry.attach(registry_root, version, ATTACHMENT, reference)
    return {"version": version, "path": str(path), "rows": reference["stats"]["rows"]}


def load_reference(source, version_or_alias: str = "champion") -> dict:
    """A reference from a registry root (+ version/alias) or from a JSON file."""
    path = to_path(source)
    if path.is_file():
        return json.loads(path.read_text())
    from ml import registry

    return registry.read_attachment(path, version_or_alias, ATTACHMENT)


# ------------------------------------------------------------------------------- one check


def check_drift(reference: dict, current_data, schema_path, *, warehouse=None, thresholds: dict | None = None,
                run_id: str | None = None, data_date=None, model_version: str | None = None,
                source: str = "drift", report_path=None) -> dict:
    """Compare `current_data` (table or CSV paths) with `reference`; store every score in the
    `drift_scores` table (if a warehouse is given); raise one alert per drifted/leaky feature.

    Returns the comparison (see `compare`) plus run_id and report path; scores rows are plain."""
    schema = F.load_schema(str(schema_path))
    cfg = {**DEFAULT_CONFIG, **reference.get("config", {})}
    current = compute_stats(current_data, schema, cfg, grid=reference["stats"])
    result = compare(reference, current, schema, thresholds)
    run_id = run_id or uuid.uuid4().hex[:12]
    result["run_id"] = run_id
    if warehouse is not None:
        write_scores(warehouse, result["scores"], run_id=run_id, data_date=data_date,
                     model_version=model_version)
        from ml.alerts import raise_alert

        for name in result["drifted"] + result["leakage"]:
            rows = [s for s in result["breaches"] if s["feature"] == name]
            kind = "leakage" if any(s["metric"] == "single_feature_auc" for s in rows) else "drift"
            detail = ", ".join(f"{s['metric']}[{s['slice']}]" for s in rows[:6])
            raise_alert(warehouse, "error" if kind == "leakage" else "warning", source,
                        f"{kind} on feature {name}: {detail}",
                        {"run_id": run_id, "data_date": str(data_date) if data_date else None,
                         "model_version": model_version,
                         "scores": [{k: s[k] for k in ("slice", "metric", "value", "threshold")} for s in rows]})
    if report_path is not None:
        result["report"] = write_report(result, reference, current, report_path)
    return result


def write_scores(warehouse, scores: list[dict], *, run_id: str, data_date=None, model_version=None) -> int:
    if isinstance(data_date, str):
        data_date = dt.date.fromisoformat(data_date)
    now = dt.datetime.now(dt.UTC)
    rows = [{"checked_at": now, "run_id": run_id, "data_date": data_date, "model_version": model_version,
             **{k: s[k] for k in ("feature", "slice", "metric", "value", "threshold", "breached")}}
            for s in scores]
    warehouse.load_arrow("drift_scores", pa.Table.from_pylist(rows, schema=SCORES_SCHEMA))
    return len(rows)


# ---------------------------------------------------------------------------------- report


def _plot(name: str, ref: dict, cur: dict) -> str:
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    try:
        if ref.get("kind") == "numeric" and ref.get("hist") and cur.get("hist"):
            edges = np.asarray(ref["edges"])
            width = edges[1] - edges[0]
            centres = np.concatenate([[edges[0] - width / 2], (edges[:-1] + edges[1:]) / 2, [edges[-1] + width / 2]])
            p = np.asarray(ref["hist"], float)
            q = np.asarray(cur["hist"], float)
            ax.step(centres, p / p.sum(), where="mid", label="reference")
            ax.step(centres, q / q.sum(), where="mid", label="current")
            ax.set_xlabel(f"{name} (outer bins: below/above the reference range)")
        elif ref.get("values") is not None and cur.get("values") is not None:
            keys = [k for k, _ in ref.get("top_k", [])][:12]
            keys += [k for k, _ in sorted(cur["values"].items(), key=lambda kv: -kv[1]) if k not in keys][:4]
            p = np.array([ref["values"].get(k, 0) for k in keys], float)
            q = np.array([cur["values"].get(k, 0) for k in keys], float)
            x = np.arange(len(keys))
            ax.bar(x - 0.2, p / max(ref["count"], 1), 0.4, label="reference")
            ax.bar(x + 0.2, q / max(cur["count"], 1), 0.4, label="current")
            ax.set_xticks(x, keys, rotation=45, fontsize=7)
        ax.set_title(name)
        ax.legend(fontsize=7)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
    finally:
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def write_report(scores: dict, reference: dict, current: dict, path) -> str:
    """An HTML page: reference-vs-current plots of the flagged features + the score table."""
    import html

    ref_stats = reference.get("stats", reference)
    path = to_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flagged = list(dict.fromkeys(scores["drifted"] + scores["leakage"]))
    parts = [f"<html><head><meta charset='utf-8'><title>drift report {html.escape(str(scores.get('run_id', '')))}"
             "</title><style>body{font-family:sans-serif}td,th{padding:2px 8px}"
             ".b{background:#fdd}</style></head><body>",
             f"<h1>Drift report</h1><p>run {html.escape(str(scores.get('run_id', '')))}, {scores['rows']} rows; "
             f"verdict: <b>{'OK' if scores['ok'] else 'DRIFT'}</b>; drifted: {html.escape(', '.join(flagged) or 'none')}"
             f"; drifted share {scores['drifted_share']:.1%}</p>"]
    for name in flagged:
        ref = ref_stats["features"].get(name) or (ref_stats.get("label") if name not in ref_stats["features"] else None)
        cur = current["features"].get(name) or current.get("label")
        if ref and cur and not ref.get("missing") and not cur.get("missing"):
            parts.append(f"<h3>{html.escape(name)}</h3><img src='data:image/png;base64,{_plot(name, ref, cur)}'>")
    parts.append("<h2>Scores</h2><table><tr><th>feature</th><th>slice</th><th>metric</th><th>value</th>"
                 "<th>threshold</th><th>breached</th></tr>")
    for s in sorted(scores["scores"], key=lambda s: (not s["breached"], s["feature"], s["slice"])):
        threshold = "" if s["threshold"] is None else f"{s['threshold']:.4g}"
        parts.append(f"<tr class='{'b' if s['breached'] else ''}'><td>{html.escape(s['feature'])}</td>"
                     f"<td>{html.escape(s['slice'])}</td><td>{s['metric']}</td><td>{s['value']:.4g}</td>"
                     f"<td>{threshold}</td><td>{'YES' if s['breached'] else ''}</td></tr>")
    parts.append("</table></body></html>")
    path.write_text("\n".join(parts))
    return str(path)


# ------------------------------------------------------------------------------------- CLI


def verdict(result: dict) -> str:
    lines = []
    by_feature: dict[str, list] = {}
    for s in result["breaches"]:
        by_feature.setdefault(s["feature"], []).append(s)
    for name, rows in by_feature.items():
        what = "; ".join(f"{s['metric']}[{s['slice']}] = {s['value']:.3g} > {s['threshold']:.3g}" for s in rows[:5])
        more = f" (+{len(rows) - 5} more)" if len(rows) > 5 else ""
        tag = "LEAKAGE" if any(s["metric"] == "single_feature_auc" for s in rows) else "DRIFT"
        lines.append(f"{tag:<8} {name}: {what}{more}")
    lines.append(("OK: no drift" if result["ok"] else f"FAIL: {len(result['drifted'])} drifted, "
                  f"{len(result['leakage'])} leaky feature(s)")
                 + f" ({result['rows']} rows, drifted share {result['drifted_share']:.1%})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.drift", description=__doc__.split("\n")[0])
    parser.add_argument("--schema", required=True)
    parser.add_argument("--reference", required=True,
                        help="CSV file/folder of reference data, or a stored reference-stats JSON file")
    parser.add_argument("--current", required=True, action="append", help="CSV file or folder")
    parser.add_argument("--config", default=None, help="YAML/JSON file with a drift section (thresholds)")
    parser.add_argument("--slice-by", default=None)
    parser.add_argument("--save-reference", default=None, help="write the reference stats JSON here")
    parser.add_argument("--report", default=None, help="write an HTML report here")
    args = parser.parse_args(argv)
    try:
        config = None
        if args.config:
            import yaml

            raw = yaml.safe_load(Path(args.config).read_text())
            config = raw.get("drift", raw)
        if args.slice_by:
            config = {**(config or {}), "slice_by": args.slice_by}
        if args.reference.endswith(".json"):
            reference = load_reference(args.reference)
        else:
            reference = build_reference(args.reference, args.schema, config)
        if args.save_reference:
            Path(args.save_reference).write_text(json.dumps(reference))
        thresholds = resolve_thresholds(F.load_schema(args.schema), config) if config else None
        result = check_drift(reference, args.current, args.schema, thresholds=thresholds,
                             report_path=args.report)
    except (DriftError, F.SchemaError, OSError, KeyError, ValueError) as exc:
        print(f"FAIL: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(verdict(result))
    if args.report:
        print(f"report: {result['report']}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
