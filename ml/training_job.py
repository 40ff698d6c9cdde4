"""Training jobs' data steps: which landed data a run trains on, and what it records about a file set.

The bodies of `static_training`'s and `dynamic_training`'s tasks, as plain functions with explicit
arguments (URIs, numbers, the profile's `warehouse:` section). "Nothing to do" and "this file set
is rejected" are exceptions of this module; the DAG's task turns them into a skip or a failure.
"""

from __future__ import annotations

import datetime as dt
import json

from ml import alerts, file_sets, landing, registry, storage, warehouse
from ml.run_layout import RunLayout


class NothingToTrain(Exception):
    """No (new, complete) file set to process: the run has nothing to do (a skip, not a failure)."""


class FileSetRejected(Exception):
    """Validation rejected the file set; it is recorded as handled so it is not retried forever."""


def find_data(*, end_date: str, landing_uri: str, window_days: int) -> dict:
    """Complete partitions (with `_SUCCESS`) in the `window_days` before `end_date` (exclusive):
    {"dates": [...], "files": [...]}. No data in the window is an error (ValueError)."""
    found = landing.partitions_in_window(landing_uri, end_date, window_days)
    if not found:
        raise ValueError(f"no complete partition (with _SUCCESS) in the {window_days} days before {end_date} "
                         f"under {landing_uri}")
    return {"dates": sorted(found), "files": [f for files in found.values() for f in files]}


def _record(warehouse_config: dict, file_set: str, run_id: str | None, outcome: str) -> None:
    wh = warehouse.connect(warehouse_config)
    try:
        file_sets.record(wh, file_set, run_id, outcome)
    finally:
        wh.close()


def pick_file_set(*, wanted: str | None, landing_uri: str, registry_config: dict, warehouse_config: dict) -> dict:
    """The file set to process: `wanted` (a `dt=` date) if given, else the oldest complete set that
    the processed-sets record has not seen and no registered model was trained on.
    {"date": ..., "files": [...]}; raises NothingToTrain when there is none."""
    wh = warehouse.connect(warehouse_config)
    try:
        done = file_sets.processed(wh)
    finally:
        wh.close()
    if wanted:
        files = landing.complete_partitions(landing_uri).get(wanted)
        if not files:
            raise NothingToTrain(f"file set dt={wanted} is not complete (no _SUCCESS marker)")
        if wanted in done:
            raise NothingToTrain(f"file set dt={wanted} was already processed ({done[wanted]})")
        return {"date": wanted, "files": files}
    seen = file_sets.trained_until(registry.connect(registry_config).list_versions())
    found = file_sets.next_unprocessed(landing_uri, done, seen)
    if found is None:
        raise NothingToTrain("no new complete file set: nothing to do")
    return {"date": found[0], "files": found[1]}


def check_validation(*, summary: dict, file_set: str, run_id: str | None, warehouse_config: dict) -> dict:
    """`summary` (the validate task's) as is when the set passed; otherwise the set is recorded as
    `rejected` and FileSetRejected is raised (no training, champion untouched)."""
    if summary["ok"]:
        return summary
    _record(warehouse_config, file_set, run_id, "rejected")
    raise FileSetRejected(f"file set dt={file_set} rejected by validation, champion unchanged: "
                          + " | ".join(summary["rejected"]))


def training_window(*, date: str, landing_uri: str, validated_uri: str, window_days: int) -> dict:
    """Validated CSVs of the complete sets in the `window_days` up to and including `date`
    (rejected sets have no validated rows): {"dates": [dates with rows], "files": [...]}."""
    end = (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()
    dates = sorted(landing.partitions_in_window(landing_uri, end, window_days))
    files = [f for d in dates for f in storage.glob(storage.join(validated_uri, f"dt={d}__*.csv"))]
    return {"dates": [d for d in dates if any(f"dt={d}__" in f for f in files)], "files": files}


def record_outcome(*, file_set: str, promoted: bool, run_id: str | None, warehouse_config: dict) -> str:
    """Record the handled file set as `promoted` or `kept`; return the outcome."""
    outcome = "promoted" if promoted else "kept"
    _record(warehouse_config, file_set, run_id, outcome)
    return outcome


def alert_warm_start(*, candidate_uri: str, trained_by: str, run_id: str | None, warehouse_config: dict) -> dict | None:
    """The trainer's warm start as it recorded it (`warm_start` in training.json: full, mapped or
    fallback; None without one). A fallback (the candidate trained from scratch although a champion
    existed) becomes a warning alert row: the trainer itself has no warehouse (it runs on Vertex)."""
    report = RunLayout.of_candidate(candidate_uri).training_report
    warm = json.loads(storage.read_text(report)).get("warm_start") if storage.exists(report) else None
    if warm and warm.get("status") == "fallback":
        wh = warehouse.connect(warehouse_config)
        try:
            wh.ensure_tables()
            alerts.raise_alert(wh, "warning", f"{trained_by}.warm_start",
                               f"candidate trained from scratch: warm start from {warm['from']} failed: {warm['reason']}",
                               {**warm, "candidate": candidate_uri, "run_id": run_id})
        finally:
            wh.close()
    return warm
