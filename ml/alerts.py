"""Alerts: one row in the warehouse `alerts` table plus one structured JSON log line.

The log line is what Cloud Logging alert policies match on (gcp profile); the row is what the
monitoring DAG and humans query. A `signature` (hash of the source and the message with numbers,
hex ids and UUIDs normalised out) groups recurring errors, so `is_new` says whether this kind
of error has been seen before — "detect when new errors occur", not just that errors occur.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import uuid

import pyarrow as pa

logger = logging.getLogger("prodml.alerts")

LEVELS = {
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Order matters: UUIDs and hex ids contain digits, so they are replaced before plain numbers.
_NORMALISE = (
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    # hashes and run ids: 8+ hex chars with a letter and a digit (pure numbers fall to <n> below)
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)

ALERTS_SCHEMA = pa.schema([
    ("alert_id", pa.string()),
    ("raised_at", pa.timestamp("us", tz="UTC")),
    ("severity", pa.string()),
    ("source", pa.string()),
    ("message", pa.string()),
    ("signature", pa.string()),
    ("is_new", pa.bool_()),
    ("context", pa.string()),
])


def normalise(message: str) -> str:
    """The message with its variable parts (numbers, hex ids, UUIDs) replaced by placeholders."""
    for pattern, placeholder in _NORMALISE:
        message = pattern.sub(placeholder, message)
    return message.strip()


def signature(source: str, message: str) -> str:
    """Stable id of an error kind: same source and same message up to numbers and ids."""
    return hashlib.sha256(f"{source}\n{normalise(message)}".encode()).hexdigest()[:16]


def raise_alert(warehouse, severity: str, source: str, message: str, context: dict | None = None) -> dict:
    """Record an alert; return its row.

    `warehouse` is an `ml.warehouse.Warehouse` with the `alerts` table, or None where no
    warehouse is reachable: then the alert is only logged and `is_new` is None (unknown).
    The log line is emitted before the row is written, so a failing warehouse cannot swallow it.
    """
    if severity not in LEVELS:
        raise ValueError(f"severity must be one of {tuple(LEVELS)}, not {severity!r}")
    sig = signature(source, message)
    is_new = None
    if warehouse is not None:
        seen = warehouse.run_sql_file("alert_signature_seen", {"signature": sig})
        is_new = seen.column("n_seen")[0].as_py() == 0
    row = {
        "alert_id": uuid.uuid4().hex,
        "raised_at": dt.datetime.now(dt.UTC),
        "severity": severity,
        "source": source,
        "message": message,
        "signature": sig,
        "is_new": is_new,
        "context": json.dumps(context or {}, sort_keys=True, default=str),
    }
    line = {**row, "raised_at": row["raised_at"].isoformat(), "context": context or {}}
    logger.log(LEVELS[severity], json.dumps(line, sort_keys=True, default=str))
    if warehouse is not None:
        warehouse.load_arrow("alerts", pa.Table.from_pylist([row], schema=ALERTS_SCHEMA))
    return row
