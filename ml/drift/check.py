"""One drift check: the current data's statistics against a reference, decided on effect sizes
with the thresholds of the caller's current config; every score stored, breaches alerted."""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa

from ml import features as F
from ml.drift.config import TABLE, blocking, resolve_policy, resolve_thresholds
from ml.drift.metrics import METRICS, Pair, compare_feature
from ml.drift.reference import reference_profile
from ml.drift.statistics import Profile, measure, parallel, read_table

MISSING_THRESHOLD = 0.5  # a monitored column absent from the current data always breaches
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


def compute_stats(data, schema: F.Schema, config: dict | None = None, reference: dict | None = None) -> dict:
    """Statistics of `data` (an Arrow table or CSV paths), binned like `reference` (its stats) if given."""
    from ml.drift.config import binning

    table = data if isinstance(data, pa.Table) else read_table(data, schema)
    return measure(table, schema, binning(schema, config), reference).stats


def _breached(metric: str, value: float, threshold: float | None) -> bool:
    if threshold is None:
        return False
    kind = METRICS["numeric"].get(metric) or METRICS["categorical"].get(metric)
    return value < threshold if kind is not None and kind.breach == "below" else value > threshold


# Too few rows (overall or in a slice): every score is stored, none decides, not even `missing`.
UNJUDGED = {"monitor": False}


def _decide(scores: dict, limits: dict, factor: float = 1.0) -> list[tuple[str, float, float | None, bool]]:
    rows = []
    for metric, value in scores.items():
        threshold = MISSING_THRESHOLD if metric == "missing" else limits.get(metric)
        if threshold is not None and metric not in ("single_feature_auc", "missing", "chi2_pvalue"):
            threshold = float(threshold) * factor
        threshold = None if threshold is None else float(threshold)
        rows.append((metric, value, threshold, bool(limits.get("monitor", True)) and _breached(metric, value, threshold)))
    return rows


def compare(reference: Profile, current: Profile, schema: F.Schema, thresholds: dict | None = None) -> dict:
    """All scores of `current` against `reference` (Profiles); thresholds default to the package's.

    Returns {ok, scores: [{feature, slice, metric, value, threshold, breached}], drifted: [names],
    leakage: [names], breaches: [score rows], drifted_share, rows}."""
    thresholds = thresholds or resolve_thresholds(schema)
    ref_stats, cur_stats = reference.stats, current.stats
    limits = thresholds["features"]
    min_bin = int(thresholds["min_bin_rows"])
    scores = []

    def add(feature, slice_, items):
        scores.extend({"feature": feature, "slice": slice_, "metric": metric, "value": value,
                       "threshold": threshold, "breached": breached} for metric, value, threshold, breached in items)

    def pair(name, ref, cur, key):
        return Pair(ref, cur, reference.values.get((key, name), (None,))[0],
                    current.values.get((key, name), (None,))[0], min_bin)

    small = cur_stats["rows"] < int(thresholds["min_rows"])
    jobs = []  # (feature, slice label, Pair, limits, factor): the metrics run in parallel below
    for name, ref in ref_stats["features"].items():
        cur = cur_stats["features"].get(name, {"kind": ref["kind"], "missing": True})
        jobs.append((name, "all", pair(name, ref, cur, None), UNJUDGED if small else limits.get(name, {}), 1.0))
    if schema.label and "label" in ref_stats and "label" in cur_stats:
        jobs.append((schema.label, "all", Pair(ref_stats["label"], cur_stats["label"]),
                     UNJUDGED if small else limits.get(schema.label, {}), 1.0))
    ref_slices = (ref_stats.get("slices") or {}).get("values", {})
    factor = float(thresholds["slice_factor"])
    for value, cur_slice in ((cur_stats.get("slices") or {}).get("values") or {}).items():
        ref_slice = ref_slices.get(value)
        if ref_slice is None:  # a new slice value: the feature's own oov_rate reports it
            continue
        enough = min(cur_slice["rows"], ref_slice["rows"]) >= int(thresholds["min_slice_rows"])
        for name, ref in ref_slice["features"].items():
            cur = cur_slice["features"].get(name, {"kind": ref["kind"], "missing": True})
            slice_limits = {k: v for k, v in limits.get(name, {}).items()
                            if k not in ("single_feature_auc", "oov_rate")} if enough else UNJUDGED
            jobs.append((name, f"{ref_stats['slices']['by']}={value}", pair(name, ref, cur, value), slice_limits,
                         factor))
    for (name, slice_, _, job_limits, job_factor), values in zip(
            jobs, parallel(lambda job: compare_feature(job[2]), jobs), strict=True):
        add(name, slice_, _decide(values, job_limits, job_factor))
    drifted = sorted({s["feature"] for s in scores if s["breached"] and s["metric"] != "single_feature_auc"})
    leakage = sorted({s["feature"] for s in scores if s["breached"] and s["metric"] == "single_feature_auc"})
    share = len(drifted) / (sum(1 for v in limits.values() if v.get("monitor", True)) or 1)
    max_share = thresholds.get("max_drifted_share")
    add(TABLE, "all", [("drifted_share", share, None if max_share is None else float(max_share),
                        bool(max_share is not None and share > float(max_share)))])
    breaches = [s for s in scores if s["breached"]]
    return {"ok": not breaches, "scores": scores, "drifted": drifted, "leakage": leakage,
            "breaches": breaches, "drifted_share": share, "rows": cur_stats["rows"]}


def check_drift(reference: dict, current_data, schema_path, *, config: dict | None = None, warehouse=None,
                run_id: str | None = None, data_date=None, model_version: str | None = None,
                source: str = "drift", report_path=None) -> dict:
    """Compare `current_data` (Arrow table or CSV paths) with `reference` (see `load_reference`)
    under the thresholds and policy of `config` (the caller's current `drift:` section, merged over
    the package defaults); store every score in `drift_scores` and raise one alert per drifted or
    leaky feature if a warehouse is given.

    Returns the comparison (see `compare`) plus run_id, `blocked` (breached features whose policy
    is `block`: the caller stops the run) and the report path."""
    schema = F.load_schema(str(schema_path))
    thresholds, policy = resolve_thresholds(schema, config), resolve_policy(schema, config)
    table = current_data if isinstance(current_data, pa.Table) else read_table(current_data, schema)
    current = measure(table, schema, reference["config"], reference["stats"], leakage=True)
    result = compare(reference_profile(reference), current, schema, thresholds)
    result["blocked"] = blocking(result["breaches"], policy)
    result["run_id"] = run_id = run_id or uuid.uuid4().hex[:12]
    if warehouse is not None:
        write_scores(warehouse, result["scores"], run_id=run_id, data_date=data_date, model_version=model_version)
        raise_alerts(warehouse, result, source=source, data_date=data_date, model_version=model_version)
    if report_path is not None:
        from ml.drift.report import write_report

        result["report"] = write_report(result, reference["stats"], current.stats, report_path)
    return result


def raise_alerts(warehouse, result: dict, *, source: str, data_date=None, model_version=None) -> None:
    """One alert per drifted (warning) or leaky (error) feature, naming the breached metrics."""
    from ml.alerts import raise_alert

    for name in result["drifted"] + result["leakage"]:
        rows = [s for s in result["breaches"] if s["feature"] == name]
        kind = "leakage" if any(s["metric"] == "single_feature_auc" for s in rows) else "drift"
        detail = ", ".join(f"{s['metric']}[{s['slice']}]" for s in rows[:6])
        raise_alert(warehouse, "error" if kind == "leakage" else "warning", source,
                    f"{kind} on feature {name}: {detail}",
                    {"run_id": result["run_id"], "data_date": str(data_date) if data_date else None,
                     "model_version": model_version, "blocked": name in result["blocked"],
                     "scores": [{k: s[k] for k in ("slice", "metric", "value", "threshold")} for s in rows]})


def write_scores(warehouse, scores: list[dict], *, run_id: str, data_date=None, model_version=None) -> int:
    if isinstance(data_date, str):
        data_date = dt.date.fromisoformat(data_date)
    now = dt.datetime.now(dt.UTC)
    rows = [{"checked_at": now, "run_id": run_id, "data_date": data_date, "model_version": model_version,
             **{k: s[k] for k in ("feature", "slice", "metric", "value", "threshold", "breached")}}
            for s in scores]
    warehouse.load_arrow("drift_scores", pa.Table.from_pylist(rows, schema=SCORES_SCHEMA))
    return len(rows)


def verdict(result: dict) -> str:
    """Human lines: one per breached feature, then the overall verdict."""
    lines = []
    by_feature: dict[str, list] = {}
    for s in result["breaches"]:
        by_feature.setdefault(s["feature"], []).append(s)
    blocked = set(result.get("blocked", []))
    for name, rows in by_feature.items():
        what = "; ".join(f"{s['metric']}[{s['slice']}] = {s['value']:.3g} vs {s['threshold']:.3g}" for s in rows[:5])
        more = f" (+{len(rows) - 5} more)" if len(rows) > 5 else ""
        tag = "LEAKAGE" if any(s["metric"] == "single_feature_auc" for s in rows) else "DRIFT"
        lines.append(f"{tag:<8} {name}{' [blocks training]' if name in blocked else ''}: {what}{more}")
    lines.append(("OK: no drift" if result["ok"] else f"FAIL: {len(result['drifted'])} drifted, "
                  f"{len(result['leakage'])} leaky feature(s)")
                 + f" ({result['rows']} rows, drifted share {result['drifted_share']:.1%})")
    return "\n".join(lines)
