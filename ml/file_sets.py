"""Which landed file sets dynamic training has handled: one warehouse row per set (idempotent)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from ml import landing

OUTCOMES = ("promoted", "kept", "rejected", "already_processed")


def processed(wh) -> dict[str, str]:
    """{file_set: outcome} of every handled set."""
    wh.ensure_tables()
    return {r["file_set"]: r["outcome"] for r in wh.run_sql_file("processed_file_sets").to_pylist()}


def record(wh, file_set: str, run_id: str | None, outcome: str) -> None:
    """Mark `file_set` handled (replacing an earlier record of the same set: reruns stay idempotent)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    row = pa.table({
        "file_set": [file_set], "processed_at": pa.array([dt.datetime.now(dt.UTC)], pa.timestamp("us", tz="UTC")),
        "run_id": [run_id or "manual"], "outcome": [outcome],
    })
    wh.ensure_tables()
    wh.replace_partition("processed_file_sets", row, "file_set", file_set)


def next_unprocessed(landing_uri: str, done: dict[str, str], trained_until: str | None = None
                     ) -> tuple[str, list[str]] | None:
    """The oldest complete (`_SUCCESS`) file set not handled yet and newer than `trained_until`
    (the newest date any registered model was trained on: those sets are not news), or None."""
    for date, files in sorted(landing.complete_partitions(landing_uri).items()):
        if date not in done and (trained_until is None or date > trained_until):
            return date, files
    return None


def trained_until(versions: list[dict]) -> str | None:
    """Newest training-data date over the registered versions (`ml.registry.list_versions`)."""
    ends = [v["data_range"]["end"] for v in versions if v.get("data_range", {}).get("end")]
    return max(ends) if ends else None
