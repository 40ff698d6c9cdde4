"""The dynamic-training story, day by day, rebuilt from the system's own records.

Rows come from `processed_file_sets` (what happened to each landed set), the `alerts` table
(validation rejections, drift, gate failures, joined on run id), the registry history (alias
moves, rollbacks) and version metadata (AUC); the event column is the simulator's ground truth.
Nothing comes from the caller's memory of what it did.
"""

from __future__ import annotations

import json
from pathlib import Path

DECISIONS = {"promoted": "retrained, gate passed → promoted", "kept": "retrained, gate failed → champion kept",
             "rejected": "rejected by validation → quarantined, champion kept"}


def _kind(source: str) -> str:
    if source.endswith(".drift"):
        return "drift"
    if source.startswith("gate."):
        return "gate"
    if "validat" in source:
        return "validation"
    return source


def _champion_at(history: list[dict], moment: str) -> str | None:
    champion = None
    for move in history:
        if move["at"] <= moment:
            champion = move["to"]
    return champion


def build(models, wh, ground_truth_path: str | None = None) -> list[dict]:
    truth = {}
    if ground_truth_path and Path(ground_truth_path).exists():
        truth = {d["date"]: d for d in json.loads(Path(ground_truth_path).read_text())["days"]}
    wh.ensure_tables()
    sets = wh.run_sql_file("processed_file_sets").to_pylist()
    alerts = wh.run_sql_file("alerts_by_run").to_pylist()
    history = models.history()
    versions = {v["version"]: v for v in models.list_versions()}
    rows = []
    for s in sets:
        at = s["processed_at"].isoformat()
        run_alerts = [a for a in alerts if a["run_id"] == s["run_id"]]
        drifted = sorted({a["message"].split("feature ", 1)[1].split(":")[0] for a in run_alerts
                          if a["source"].endswith(".drift") and "feature " in a["message"]})
        champion = _champion_at(history, at)
        event = truth.get(s["file_set"], {}).get("scenario", "?")
        if any(v.get("run_id") == s["run_id"] and (v.get("training") or {}).get("shuffled_labels")
               for v in versions.values()):
            event += " + bad candidate"
        rows.append({
            "when": at, "day": s["file_set"], "event": event,
            "decision": DECISIONS.get(s["outcome"], s["outcome"]),
            "alerts": ", ".join(sorted({_kind(a["source"]) for a in run_alerts})) or "-",
            "drifted": ", ".join(drifted) or "-",
            "champion": champion or "-",
            "auc": versions.get(champion, {}).get("metrics", {}).get("auc"),
            "outcome": s["outcome"],
        })
    for move in history:
        if move["action"] == "rollback":
            rows.append({"when": move["at"], "day": "-", "event": "manual rollback",
                         "decision": f"champion {move['from']} → {move['to']}", "alerts": "registry",
                         "drifted": "-", "champion": move["to"],
                         "auc": versions.get(move["to"], {}).get("metrics", {}).get("auc"), "outcome": "rollback"})
    return sorted(rows, key=lambda r: r["when"])


def format_table(rows: list[dict]) -> str:
    header = f"{'day':<11} {'event':<30} {'decision':<52} {'alerts':<16} {'champion':<9} {'AUC':>6}"
    lines = [header, "-" * len(header)]
    for r in rows:
        auc = f"{r['auc']:.3f}" if r["auc"] is not None else "-"
        lines.append(f"{r['day']:<11} {r['event']:<30} {r['decision']:<52} {r['alerts']:<16} {r['champion']:<9} {auc:>6}")
        if r["drifted"] != "-":
            lines.append(f"{'':<11} {'':<30} drift on: {r['drifted']}")
    return "\n".join(lines)
