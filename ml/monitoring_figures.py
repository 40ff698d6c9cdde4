"""Monitoring figures: what the `monitoring` DAG measures in a window of served traffic (pure
functions over Arrow tables; `ml.monitoring_job` reads the inputs and stores the rows).

Each figure is a dict {model_version, figure, slice, value, threshold, breached}; `threshold` is
None when the figure is not judged (no limit set, or too little data to judge), so a thin window
never counts as evidence either way.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml import evaluate, landing
from ml import features as F

log = logging.getLogger(__name__)

MODEL_PATHS = ("head", "tail")  # answers computed by a model; anything else (fallback) is an error
ALL = "all"


def figure(version, name, value, threshold=None, breached=False, slice_=ALL) -> dict:
    return {"model_version": version, "figure": name, "slice": slice_,
            "value": None if value is None else float(value), "threshold": threshold, "breached": bool(breached)}


def _judge(version, name, value, limit, *, below: bool, judged: bool = True, slice_=ALL) -> dict:
    """A figure checked against `limit` (breach: value below it if `below`, else above); not
    judged (threshold NULL) when there is no value, no limit or too little data."""
    if value is None or limit is None or not judged:
        return figure(version, name, value, None, False, slice_)
    return figure(version, name, value, float(limit), value < limit if below else value > limit, slice_)


def _groups(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """('all', every row) and (version, its rows) for each model version in `table`."""
    versions = sorted(v for v in set(table.column("model_version").to_pylist()) if v is not None)
    return [(ALL, table)] + [(v, table.filter(pc.equal(table.column("model_version"), v))) for v in versions]


# ------------------------------------------------------------------ figures


def slo_figures(served: pa.Table, *, max_error_rate: float | None, max_p99_latency_ms: float | None,
                min_requests: int) -> list[dict]:
    """requests, error_rate, latency_p50_ms, latency_p99_ms per version and for all."""
    out = []
    for version, rows in _groups(served):
        n = rows.num_rows
        out.append(figure(version, "requests", n))
        if n == 0:
            continue
        paths, scores = rows.column("path").to_pylist(), rows.column("score").to_pylist()
        errors = sum(1 for p, s in zip(paths, scores, strict=True) if p not in MODEL_PATHS or s is None)
        latency = np.asarray([x for x in rows.column("latency_ms").to_pylist() if x is not None], dtype=np.float64)
        enough = n >= min_requests
        out.append(_judge(version, "error_rate", errors / n, max_error_rate, below=False, judged=enough))
        if latency.size:
            out.append(figure(version, "latency_p50_ms", np.percentile(latency, 50)))
            out.append(_judge(version, "latency_p99_ms", np.percentile(latency, 99), max_p99_latency_ms,
                              below=False, judged=enough))
    return out


def read_labels(dates, *, landing_uri: str, schema_path: str, slice_by: str | None) -> pa.Table:
    """The late labels of `dates` that have landed completely: the schema keys, the label, the slice
    column, and the prediction log's join keys (`target_date`: the partition value; `entity_key`:
    ml.features.entity_key of the entity keys), one row per key (the first), label not null."""
    schema = F.load_schema(schema_path)
    wanted = [*schema.keys, schema.label, *([slice_by] if slice_by and slice_by not in schema.keys else [])]
    complete = landing.complete_partitions(landing_uri)
    tables = []
    for date in sorted(set(dates)):
        if date not in complete:
            continue
        table = F.read_csv_files(complete[date], schema, bad_values="null")
        if not set(wanted) <= set(table.column_names):
            log.warning("landed partition %s lacks %s: no labels from it", date, sorted(set(wanted) - set(table.column_names)))
            continue
        tables.append(table.select(wanted).filter(pc.is_valid(table.column(schema.label))))
    types = F.arrow_types(schema)
    table = (pa.concat_tables(tables) if tables else
             pa.table({name: pa.array([], types[name]) for name in wanted}))
    seen, keep = set(), []
    for key in zip(*(table.column(k).to_pylist() for k in schema.keys), strict=True):
        keep.append(key not in seen)
        seen.add(key)
    table = table.filter(pa.array(keep, pa.bool_()))
    partition = (table.column(schema.partition_column).cast(pa.string()) if schema.partition_column
                 else pa.nulls(table.num_rows, pa.string()))
    columns = [table.column(k).to_pylist() for k in schema.entity_keys]
    keys = pa.array([F.entity_key(v) for v in zip(*columns, strict=True)], pa.string())
    rest = [c for c in wanted if c not in schema.keys]  # the label and the slice
    return table.select(rest).append_column("target_date", partition).append_column("entity_key", keys)


def join_keys(schema: F.Schema) -> list[str]:
    """How a served prediction (prediction_log) meets its landed label: the partition value and
    the entity key, or the entity key alone when the schema has no partition column."""
    return ["target_date", "entity_key"] if schema.partition_column else ["entity_key"]


def join_labels(served: pa.Table, labels: pa.Table, *, keys: list[str], label: str) -> pa.Table:
    """Served predictions with a score and a landed label (`read_labels`), joined on `keys`
    (`join_keys`): model_version, score, label, + the slice."""
    scored = served.filter(pc.is_valid(served.column("score")))
    extra = [c for c in labels.column_names if c not in ("target_date", "entity_key", label)]
    labels = labels.select([*keys, label, *extra])
    joined = scored.select([*keys, "model_version", "score"]).join(labels, keys=keys, join_type="inner",
                                                                    use_threads=False)
    return joined.select(["model_version", "score", label, *extra]).rename_columns(
        ["model_version", "score", "label", *extra])


def quality_figures(labelled: pa.Table, *, cost_false_negative: float, cost_false_positive: float,
                    slice_by: str | None, min_labelled: int, min_auc: float | None,
                    max_cost_weighted_error: float | None, min_slice_rows: int,
                    min_slice_auc: float | None) -> list[dict]:
    """labelled, auc, cost_weighted_error, residual_mean, residual_abs_mean, brier per version and
    for all; auc and cost_weighted_error per slice too (judged from `min_slice_rows`)."""
    out = []
    for version, rows in _groups(labelled):
        out.append(figure(version, "labelled", rows.num_rows))
        if rows.num_rows == 0:
            continue
        y = np.asarray(rows.column("label").to_pylist(), dtype=np.float64)
        s = np.asarray(rows.column("score").to_pylist(), dtype=np.float64)
        enough = rows.num_rows >= min_labelled
        residual = y - s
        out += [_judge(version, "auc", evaluate.auc(y, s), min_auc, below=True, judged=enough),
                _judge(version, "cost_weighted_error",
                       evaluate.cost_weighted_error(y, s, cost_false_negative, cost_false_positive),
                       max_cost_weighted_error, below=False, judged=enough),
                figure(version, "residual_mean", residual.mean()),
                figure(version, "residual_abs_mean", np.abs(residual).mean()),
                figure(version, "brier", (residual ** 2).mean())]
        if slice_by and slice_by in rows.column_names:
            slices = np.asarray(rows.column(slice_by).to_pylist(), dtype=object)
            for value in sorted({v for v in slices.tolist() if v is not None}, key=str):
                mask = slices == value
                name, ok = f"{slice_by}={value}", int(mask.sum()) >= min_slice_rows
                out += [figure(version, "labelled", int(mask.sum()), slice_=name),
                        _judge(version, "auc", evaluate.auc(y[mask], s[mask]), min_slice_auc, below=True,
                               judged=ok, slice_=name),
                        figure(version, "cost_weighted_error", evaluate.cost_weighted_error(
                            y[mask], s[mask], cost_false_negative, cost_false_positive), slice_=name)]
    return out


def output_drift_figures(served: pa.Table, batch: pa.Table, *, max_ks: float | None, max_mean_shift: float | None,
                         min_requests: int) -> list[dict]:
    """The served scores vs the batch scores of the same entity keys on the reference
    dates (request-weighted: a key served k times contributes its batch scores k times):
    output_ks (two-sample Kolmogorov-Smirnov) and output_mean_shift (|mean difference|)."""
    from ml.drift.metrics import ks_sorted

    by_key: dict[tuple, list[float]] = {}
    for key, score in zip(*(batch.column(c).to_pylist() for c in ("entity_key", "score")), strict=True):
        if score is not None:
            by_key.setdefault(key, []).append(score)
    out = []
    for version, rows in _groups(served.filter(pc.is_valid(served.column("score")))):
        served_scores, reference = [], []
        for key, score in zip(*(rows.column(c).to_pylist() for c in ("entity_key", "score")), strict=True):
            if key in by_key:
                served_scores.append(score)
                reference += by_key[key]
        if not served_scores:
            continue
        a, b = np.sort(np.asarray(served_scores)), np.sort(np.asarray(reference))
        enough = len(served_scores) >= min_requests
        out += [figure(version, "output_compared", len(served_scores)),
                _judge(version, "output_ks", ks_sorted(a, b), max_ks, below=False, judged=enough),
                _judge(version, "output_mean_shift", abs(a.mean() - b.mean()), max_mean_shift, below=False,
                       judged=enough)]
    return out


def served_features(served: pa.Table, schema: F.Schema) -> pa.Table:
    """The distinct logged instances (`features` JSON) as a schema-typed table: what was asked
    about, not how often (request-weighting would make peaked traffic look like drift); rows
    without an instance are skipped."""
    types = F.arrow_types(schema)
    rows = [json.loads(text) for text in dict.fromkeys(served.column("features").to_pylist()) if text]
    names = [n for n in types if any(n in r for r in rows)]
    return pa.table({n: pa.array([r.get(n) for r in rows], types[n]) for n in names})


def merged(base: dict, override: dict) -> dict:
    """`override` merged over `base`, dicts key by key."""
    out = dict(base or {})
    for key, value in (override or {}).items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def verdict(figures: list[dict], *, champion: str | None, rollback_on) -> dict:
    """The window's verdict for the champion: bad when one of its judged figures named in
    `rollback_on` breaches; no evidence (value None) when none of them was judged."""
    judged = [f for f in figures if f["model_version"] == champion and f["figure"] in rollback_on
              and f["threshold"] is not None]
    breaches = [f for f in judged if f["breached"]]
    value = None if champion is None or not judged else float(bool(breaches))
    return {**figure(champion or "", "window_bad", value, None if value is None else 0.0, bool(breaches)),
            "because": [f"{f['figure']}[{f['slice']}] = {f['value']:.4g} vs {f['threshold']:.4g}" for f in breaches]}
