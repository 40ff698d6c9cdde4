"""Monitoring job: the bodies of the hourly `monitoring` DAG, plain functions with explicit arguments.

A *window* is a span of serving time, [start, end) of `prediction_log.served_at` (the DAG's hour).
For each window `evaluate_window` computes and stores in `monitoring_windows` (every figure,
breached or not), per model version and for all versions together ('all'):
- SLOs of the window: requests, error_rate (share not answered by a model: path other than
  head/tail, or no score), latency p50/p99;
- output drift of the window: the served scores vs the batch predictions' scores of the same keys
  (KS, mean shift);
- over the traffic of the last `lookback_hours` (labels land a day or more after serving, and one
  hour is too little to judge an AUC): quality from late labels (the landed label,
  `landing/dt=D/*.csv`, joined on the schema keys → AUC, cost-weighted error and residuals
  label - score: mean, mean absolute, Brier; overall and per slice), and input drift of the
  distinct served instances against the champion's training reference (`ml.drift.check_drift`;
  its per-feature scores go to `drift_scores`);
- the window's verdict for the champion (`window_bad`: 1 bad, 0 good, NULL no evidence): bad when
  a judged figure named in the rollback policy's `figures` breaches.
Breaches raise alerts (`ml.alerts`: recurring ones are recognised by signature, `is_new`).
The figures themselves are computed in `ml.monitoring_figures`.

`update_bandit` feeds the routing bandit (`ml.serving.bandit`) its rewards once per labelled date.

`decide_rollback` is the closed loop's policy (pure): the last N judged windows of the champion
all bad = a confirmed breach → roll back to `previous`, unless automatic rollback is off, a
rollback happened within the cooldown, automatic rollback is disarmed (it disarms itself after
firing until a person re-arms it: `rearm`), or `previous` is a version an automatic rollback
already removed (no flapping). Every decision other than "nothing confirmed" writes a
`rollback_audit` row.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid

import pyarrow as pa
import pyarrow.compute as pc

from ml import alerts, registry, warehouse
from ml import features as F
from ml.monitoring_figures import (
    ALL,
    figure,
    join_keys,
    join_labels,
    merged,
    output_drift_figures,
    quality_figures,
    read_labels,
    served_features,
    slo_figures,
    verdict,
)

log = logging.getLogger(__name__)

WINDOW_SCHEMA = pa.schema([
    ("window_start", pa.timestamp("us", tz="UTC")), ("window_end", pa.timestamp("us", tz="UTC")),
    ("data_start", pa.timestamp("us", tz="UTC")), ("run_id", pa.string()), ("computed_at", pa.timestamp("us", tz="UTC")), ("champion", pa.string()),
    ("model_version", pa.string()), ("figure", pa.string()), ("slice", pa.string()),
    ("value", pa.float64()), ("threshold", pa.float64()), ("breached", pa.bool_()),
])
AUDIT_SCHEMA = pa.schema([
    ("acted_at", pa.timestamp("us", tz="UTC")), ("run_id", pa.string()), ("action", pa.string()),
    ("from_version", pa.string()), ("to_version", pa.string()), ("actor", pa.string()),
    ("reason", pa.string()), ("windows", pa.string()),
])
AUTOMATIC = "monitoring"  # the audit actor of automatic actions


def _ts(value) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def resolve_window(*, explicit_end: str | None, run_time: dt.datetime, minutes: int) -> dict:
    """The window a run judges: the `minutes` before `explicit_end` (a param) or the run's time,
    the end floored to the window grid. {"start", "end" (ISO), "id"}."""
    end = _ts(explicit_end) if explicit_end else _ts(run_time)
    step = dt.timedelta(minutes=minutes)
    end = dt.datetime.min.replace(tzinfo=dt.UTC) + ((end - dt.datetime.min.replace(tzinfo=dt.UTC)) // step) * step
    start = end - step
    return {"start": start.isoformat(), "end": end.isoformat(), "id": f"{start:%Y%m%dT%H%M}-{minutes}m"}


# ------------------------------------------------------------------ one window


def input_drift_figures(served: pa.Table, *, models, champion: str | None, schema_path: str, drift_config: dict,
                        min_rows: int, wh, run_id: str, data_date) -> list[dict]:
    """check_drift of the served instances against the champion's training reference (scores in
    `drift_scores`, drifted features alerted by the drift module); input_rows, input_drifted_share
    and input_drift_breaches here. Skipped without a champion, a reference or `min_rows` instances."""
    from ml import drift

    schema = F.load_schema(schema_path)
    current = served_features(served, schema)
    if champion is None or current.num_rows < min_rows:
        return [figure(ALL, "input_rows", current.num_rows)]
    try:
        reference = drift.load_reference(models, "champion")
    except (drift.DriftError, registry.RegistryError) as exc:
        log.warning("no input drift check: %s", exc)
        return [figure(ALL, "input_rows", current.num_rows)]
    # Only features known ahead are served: the readings (event) and after-the-fact ones are not monitored.
    served_only = {"features": {f.name: {"monitor": False} for f in schema.features if f.known != "ahead"}}
    result = drift.check_drift(reference, current, schema_path, config=merged(served_only, drift_config),
                               warehouse=wh, run_id=run_id,
                               data_date=data_date, model_version=champion, source="monitoring.input_drift")
    return [figure(ALL, "input_rows", current.num_rows),
            figure(ALL, "input_drifted_share", result["drifted_share"], None, bool(result["drifted"])),
            figure(ALL, "input_drift_breaches", len(result["breaches"]), None, bool(result["breaches"]))]


def evaluate_window(*, start: str, end: str, run_id: str, registry_config: dict, warehouse_config: dict,
                    landing_uri: str, schema_path: str, evaluation: dict, drift_config: dict, lookback_hours: float,
                    slo: dict, quality: dict, output_drift: dict, input_drift: dict, rollback_on: list[str]) -> dict:
    """Every figure of the window [start, end) → `monitoring_windows` (the window's rows replaced),
    alerts for breaches; returns the verdict and the breaches.

    SLOs and output drift judge the window itself; quality (late labels arrive a day or more after
    serving, and an hour of traffic is too little to judge an AUC) and input drift judge the
    traffic served in the `lookback_hours` before `end` (`data_start` in the rows says so)."""
    start_ts, end_ts = _ts(start), _ts(end)
    since = min(start_ts, end_ts - dt.timedelta(hours=lookback_hours))
    models = registry.connect(registry_config)
    champion = models.aliases().get("champion")
    schema = F.load_schema(schema_path)
    slice_by = evaluation.get("slice_by") or (schema.slices[0] if schema.slices else None)
    if isinstance(slice_by, list):  # one slice column is monitored: the first
        slice_by = slice_by[0] if slice_by else None
    costs = {"cost_false_negative": evaluation["cost_false_negative"],
             "cost_false_positive": evaluation["cost_false_positive"]}
    with warehouse.connect(warehouse_config) as wh:
        wh.ensure_tables()
        served = wh.run_sql_file("monitoring_served", {"start": since, "end": end_ts})
        hour = served.filter(pc.greater_equal(served.column("served_at"), pa.scalar(start_ts, served.schema.field(
            "served_at").type)))
        figures = [dict(f, data_start=start_ts) for f in slo_figures(
            hour, min_requests=slo["min_requests"], max_error_rate=slo.get("max_error_rate"),
            max_p99_latency_ms=slo.get("max_p99_latency_ms"))]
        dates = sorted({d for d in hour.column("target_date").to_pylist() if d})
        if dates:
            first = dt.date.fromisoformat(dates[0]) - dt.timedelta(days=output_drift.get("reference_days", 0))
            batch = wh.run_sql_file("monitoring_batch_scores", {"first": first, "last": dt.date.fromisoformat(dates[-1])})
            figures += [dict(f, data_start=start_ts) for f in output_drift_figures(
                hour, batch, max_ks=output_drift.get("max_ks"), max_mean_shift=output_drift.get("max_mean_shift"),
                min_requests=slo["min_requests"])]
        labels = read_labels({d for d in served.column("target_date").to_pylist() if d}, landing_uri=landing_uri,
                             schema_path=schema_path, slice_by=slice_by)
        labelled = join_labels(served, labels, keys=join_keys(schema), label=schema.label)
        figures += [dict(f, data_start=since) for f in quality_figures(labelled, **costs, slice_by=slice_by, **quality)]
        figures += [dict(f, data_start=since) for f in input_drift_figures(
            served, models=models, champion=champion, schema_path=schema_path,
            drift_config=merged(drift_config, input_drift.get("drift") or {}), min_rows=input_drift.get("min_rows", 0),
            wh=wh, run_id=run_id, data_date=start_ts.date())]
        judged = dict(verdict(figures, champion=champion, rollback_on=rollback_on), data_start=since)
        now = dt.datetime.now(dt.UTC)
        rows = [{"window_start": start_ts, "window_end": end_ts, "data_start": f["data_start"], "run_id": run_id,
                 "computed_at": now, "champion": champion,
                 **{k: f[k] for k in ("model_version", "figure", "slice", "value", "threshold", "breached")}}
                for f in [*figures, judged]]
        wh.replace_partition("monitoring_windows", pa.Table.from_pylist(rows, schema=WINDOW_SCHEMA),
                             "window_start", start_ts)
        raise_alerts(wh, figures, judged, window=f"{start}/{end}")
    result = {"window": f"{start}/{end}", "champion": champion, "requests": hour.num_rows,
              "labelled": labelled.num_rows, "verdict": judged["value"], "because": judged["because"],
              "breaches": [f"{f['model_version']}:{f['figure']}[{f['slice']}]" for f in figures if f["breached"]]}
    log.info("monitoring window: %s", result)
    return result


def raise_alerts(wh, figures: list[dict], judged: dict, *, window: str) -> None:
    """One alert per (version, figure) that breached a threshold (input drift is alerted by the
    drift module itself), and one when the window is bad for the champion."""
    grouped: dict[tuple, list[dict]] = {}
    for f in figures:
        if f["breached"] and f["threshold"] is not None:
            grouped.setdefault((f["model_version"], f["figure"]), []).append(f)
    for (version, name), found in sorted(grouped.items()):
        detail = ", ".join(f"{f['slice']} {f['value']:.4g} (limit {f['threshold']:.4g})" for f in found[:6])
        alerts.raise_alert(wh, "warning", f"monitoring.{name}", f"{name} breached for {version}: {detail}",
                           {"window": window, "model_version": version,
                            "figures": [{k: f[k] for k in ("slice", "value", "threshold")} for f in found]})
    if judged["breached"]:
        alerts.raise_alert(wh, "error", "monitoring.window_bad",
                           f"window bad for champion {judged['model_version']}: {'; '.join(judged['because'])}",
                           {"window": window, "champion": judged["model_version"]})


# ------------------------------------------------------------------ bandit


def update_bandit(*, until: str, label_days: int, registry_config: dict, warehouse_config: dict, landing_uri: str,
                  schema_path: str, threshold: float, state_uri: str, challengers: list[str], floor: float,
                  guard_probability: float, guard_min_rewards: int) -> dict:
    """Rewards from late labels, once per labelled date: for each date of the last `label_days`
    before `until` whose landed partition is complete and not yet applied, every prediction logged
    for that date scores 1 if (score >= threshold) equals its label. The bandit at `state_uri`
    (created on first use, its arms synced with the champion and `challengers`) learns them, is
    stored, and its shares go to `bandit_shares`. A date already applied changes nothing."""
    from ml.serving.bandit import Bandit, rewards_from_labels

    champion = registry.connect(registry_config).aliases().get("champion")
    if champion is None:
        return {"applied": [], "shares": {}}
    bandit = Bandit.load(state_uri) or Bandit(champion, floor=floor, guard_probability=guard_probability,
                                              guard_min_rewards=guard_min_rewards)
    bandit.floor, bandit.guard_probability, bandit.guard_min_rewards = floor, guard_probability, guard_min_rewards
    bandit.sync(champion, challengers)
    stopped_before = {v for v, arm in bandit.arms.items() if arm["stopped"]}
    schema = F.load_schema(schema_path)
    last = _ts(until).date()
    dates = [(last - dt.timedelta(days=i)).isoformat() for i in range(label_days, -1, -1)]
    applied = []
    with warehouse.connect(warehouse_config) as wh:
        wh.ensure_tables()
        for date in dates:
            window_id = f"labels:{date}"
            if window_id in bandit.applied:
                continue
            labels = read_labels([date], landing_uri=landing_uri, schema_path=schema_path, slice_by=None)
            if labels.num_rows == 0:
                continue  # not landed yet
            served = wh.run_sql_file("monitoring_served_for_date", {"date": date})
            labelled = join_labels(served, labels, keys=join_keys(schema), label=schema.label)
            bandit.apply_window(window_id, rewards_from_labels(
                labelled.column("model_version").to_pylist(), labelled.column("score").to_pylist(),
                labelled.column("label").to_pylist(), threshold))
            applied.append(date)
        shares = bandit.shares()
        if applied:
            bandit.save(state_uri)
            wh.load_arrow("bandit_shares", bandit.share_rows(window_id=",".join(applied), at=dt.datetime.now(dt.UTC)))
            for version, arm in bandit.arms.items():
                if arm["stopped"] and version not in stopped_before:
                    alerts.raise_alert(wh, "warning", "bandit.guard", f"challenger {version} stopped: "
                                       f"{arm['stopped']['reason']}", {"dates": applied, **arm["stopped"]})
    return {"applied": applied, "shares": shares}


# ------------------------------------------------------------------ closed-loop rollback


def decide_rollback(*, verdicts: list[dict], audit: list[dict], champion: str | None, previous: str | None,
                    now: dt.datetime, consecutive_windows: int, cooldown_hours: float, enabled: bool) -> dict:
    """The rollback policy (pure). `verdicts`: the champion's latest judged windows, newest first
    ({"window_end", "breached"}); `audit`: `rollback_audit` rows, newest first.
    {"action": "none" | "rollback" | "suppressed", "reason", "to_version", "windows"}."""
    recent = verdicts[:consecutive_windows]
    windows = [str(v["window_end"]) for v in recent]
    if champion is None or len(recent) < consecutive_windows or not all(v["breached"] for v in recent):
        bad = next((i for i, v in enumerate(recent) if not v["breached"]), len(recent))
        return {"action": "none", "reason": f"no confirmed breach ({bad} of {consecutive_windows} latest judged "
                                            f"windows bad in a row)", "to_version": None, "windows": windows}

    def held(reason: str) -> dict:
        return {"action": "suppressed", "reason": reason, "to_version": None, "windows": windows}

    automatic = [a for a in audit if a["action"] == "rollback" and a["actor"] == AUTOMATIC]
    last_auto = _ts(automatic[0]["acted_at"]) if automatic else None
    rearmed = [a for a in audit if a["action"] == "rearmed"]
    last_rearm = _ts(rearmed[0]["acted_at"]) if rearmed else None
    confirmed = f"{consecutive_windows} consecutive bad windows of {champion}"
    if not enabled:
        return held(f"{confirmed}; automatic rollback is off in the profile")
    if last_auto is not None and now - last_auto < dt.timedelta(hours=cooldown_hours):
        return held(f"{confirmed}; cooldown: the last automatic rollback was at {last_auto.isoformat()} "
                    f"(< {cooldown_hours:g} h ago)")
    if last_auto is not None and (last_rearm is None or last_rearm < last_auto):
        return held(f"{confirmed}; automatic rollback is disarmed since the one at {last_auto.isoformat()}: "
                    "a person re-arms it")
    if previous is None or previous == champion:
        return held(f"{confirmed}; no previous champion to roll back to")
    if any(a["from_version"] == previous for a in automatic):
        return held(f"{confirmed}; the previous champion {previous} was itself rolled back automatically")
    return {"action": "rollback", "reason": f"{confirmed}: rolled back to {previous}", "to_version": previous,
            "windows": windows}


def _audit(wh, *, at, run_id: str, action: str, from_version, to_version, actor: str, reason: str,
           windows) -> dict:
    row = {"acted_at": _ts(at), "run_id": run_id, "action": action, "from_version": from_version,
           "to_version": to_version, "actor": actor, "reason": reason, "windows": json.dumps(windows or [])}
    wh.load_arrow("rollback_audit", pa.Table.from_pylist([row], schema=AUDIT_SCHEMA))
    return row


def check_rollback(*, window_end: str, run_id: str, registry_config: dict, warehouse_config: dict,
                   consecutive_windows: int, cooldown_hours: float, enabled: bool, now) -> dict:
    """Judge the champion's latest windows with `decide_rollback`; a held-back rollback is audited
    and alerted here, a rollback is left to `execute_rollback`. Returns the decision with the
    champion it judged (`from_version`)."""
    aliases = registry.connect(registry_config).aliases()
    champion = aliases.get("champion")
    with warehouse.connect(warehouse_config) as wh:
        wh.ensure_tables()
        verdicts = [] if champion is None else wh.run_sql_file("monitoring_verdicts", {
            "model_version": champion, "until": _ts(window_end), "limit": consecutive_windows}).to_pylist()
        audit = wh.run_sql_file("rollback_audit_recent", {"limit": 1000}).to_pylist()
        decision = decide_rollback(verdicts=verdicts, audit=audit, champion=champion, previous=aliases.get("previous"),
                                   now=_ts(now), consecutive_windows=consecutive_windows,
                                   cooldown_hours=cooldown_hours, enabled=enabled)
        if decision["action"] == "suppressed":
            _audit(wh, at=now, run_id=run_id, action="suppressed", from_version=champion, to_version=None,
                   actor=AUTOMATIC, reason=decision["reason"], windows=decision["windows"])
            alerts.raise_alert(wh, "error", "monitoring.rollback_held", decision["reason"],
                               {"run_id": run_id, "champion": champion})
    log.info("closed loop: %s", decision)
    return {**decision, "from_version": champion}


def execute_rollback(*, decision: dict, run_id: str, registry_config: dict, warehouse_config: dict, now) -> dict:
    """Move the champion from `decision["from_version"]` back to `decision["to_version"]` (explicit:
    a retried task never flips the aliases twice) and write the audit row; nothing when the
    champion is no longer the version judged."""
    from ml import promotion_job

    current = registry.connect(registry_config).aliases().get("champion")
    if current == decision["to_version"] and current != decision["from_version"]:  # a retry after the move
        with warehouse.connect(warehouse_config) as wh:
            wh.ensure_tables()
            done = [a for a in wh.run_sql_file("rollback_audit_recent", {"limit": 100}).to_pylist()
                    if a["run_id"] == run_id and a["action"] == "rollback"]
            if not done:
                _audit(wh, at=now, run_id=run_id, action="rollback", from_version=decision["from_version"],
                       to_version=current, actor=AUTOMATIC, reason=decision["reason"], windows=decision["windows"])
        return {"rolled_back": True, **registry.connect(registry_config).aliases()}
    if current != decision["from_version"]:
        with warehouse.connect(warehouse_config) as wh:
            wh.ensure_tables()
            _audit(wh, at=now, run_id=run_id, action="suppressed", from_version=decision["from_version"],
                   to_version=None, actor=AUTOMATIC, reason=f"champion moved to {current} since the breach was judged",
                   windows=decision["windows"])
        return {"rolled_back": False, "champion": current}
    aliases = promotion_job.rollback(version=decision["to_version"], reason=f"monitoring: {decision['reason']}",
                                     registry_config=registry_config, warehouse_config=warehouse_config)
    with warehouse.connect(warehouse_config) as wh:
        _audit(wh, at=now, run_id=run_id, action="rollback", from_version=decision["from_version"],
               to_version=aliases["champion"], actor=AUTOMATIC, reason=decision["reason"], windows=decision["windows"])
    return {"rolled_back": True, **aliases}


def rearm(*, actor: str, reason: str, warehouse_config: dict, run_id: str | None = None, at=None) -> dict:
    """A person re-arms automatic rollback (the cooldown still applies); `at` defaults to now."""
    if not actor:
        raise ValueError("re-arming needs the name of the person who does it")
    with warehouse.connect(warehouse_config) as wh:
        wh.ensure_tables()
        row = _audit(wh, at=at or dt.datetime.now(dt.UTC), run_id=run_id or f"manual-{uuid.uuid4().hex[:8]}", action="rearmed", from_version=None,
                     to_version=None, actor=actor, reason=reason, windows=[])
        alerts.raise_alert(wh, "info", "monitoring.rearmed", f"automatic rollback re-armed by {actor}: {reason}")
    return {k: str(v) for k, v in row.items()}


def main(argv=None) -> int:
    """python -m ml.monitoring_job rearm --by NAME --reason TEXT | audit [--limit N]"""
    import argparse

    from ml import config

    parser = argparse.ArgumentParser(prog="python -m ml.monitoring_job", description="closed-loop rollback")
    sub = parser.add_subparsers(dest="command", required=True)
    arm = sub.add_parser("rearm", help="re-arm automatic rollback (after it fired)")
    arm.add_argument("--by", required=True, help="who re-arms (kept in the audit row)")
    arm.add_argument("--reason", required=True)
    show = sub.add_parser("audit", help="the latest rollback audit rows")
    show.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    cfg = config.load()
    if args.command == "rearm":
        print(json.dumps(rearm(actor=args.by, reason=args.reason, warehouse_config=cfg["warehouse"]), indent=1))
    else:
        with warehouse.connect(cfg["warehouse"]) as wh:
            wh.ensure_tables()
            for row in wh.run_sql_file("rollback_audit_recent", {"limit": args.limit}).to_pylist():
                print(f"{row['acted_at']:%Y-%m-%d %H:%M} {row['action']:<10} {row['from_version'] or '-':>6} -> "
                      f"{row['to_version'] or '-':<6} by {row['actor']}: {row['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
