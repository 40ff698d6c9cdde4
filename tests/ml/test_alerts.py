"""Alerts: a warehouse row, one JSON log line, and new-vs-recurring error detection."""

from __future__ import annotations

import json
import logging

import pytest

from ml import alerts
from ml.warehouse import DuckDBWarehouse


@pytest.fixture
def warehouse(tmp_path):
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb", "prodml") as w:
        w.ensure_tables()
        yield w


def _records(caplog):
    return [r for r in caplog.records if r.name == "prodml.alerts"]


def test_alert_row_log_line_and_new_error_detection(warehouse, caplog):
    caplog.set_level(logging.INFO, logger="prodml.alerts")
    first = alerts.raise_alert(warehouse, "error", "dynamic_training.validate",
                               "1203 rows failed in run 3f2a9b1c7d", {"dt": "2024-01-02", "rows": 1203})
    again = alerts.raise_alert(warehouse, "error", "dynamic_training.validate",
                               "17 rows failed in run 99aa00bb11", {"rows": 17})
    other = alerts.raise_alert(warehouse, "warning", "monitoring", "drift on weather_forecast")

    assert first["is_new"] is True and again["is_new"] is False and other["is_new"] is True
    assert first["signature"] == again["signature"] != other["signature"]

    rows = warehouse.run_sql_file("recent_alerts", {"limit": 10}).to_pylist()
    assert [r["alert_id"] for r in rows] == [other["alert_id"], again["alert_id"], first["alert_id"]]
    assert rows[2]["severity"] == "error" and rows[2]["message"].startswith("1203 rows")
    assert json.loads(rows[2]["context"]) == {"dt": "2024-01-02", "rows": 1203}

    records = _records(caplog)
    assert len(records) == 3  # one line per alert
    assert [r.levelno for r in records] == [logging.ERROR, logging.ERROR, logging.WARNING]
    line = json.loads(records[0].getMessage())
    assert {"severity", "source", "message", "signature", "is_new", "context"} <= set(line)
    assert line["context"] == {"dt": "2024-01-02", "rows": 1203} and line["is_new"] is True


def test_without_warehouse_only_logs(caplog):
    caplog.set_level(logging.INFO, logger="prodml.alerts")
    row = alerts.raise_alert(None, "critical", "monitoring", "kill switch engaged")
    assert row["is_new"] is None  # unknown: no alert history to compare with
    (record,) = _records(caplog)
    assert record.levelno == logging.CRITICAL
    assert json.loads(record.getMessage())["message"] == "kill switch engaged"


def test_bad_severity_rejected():
    with pytest.raises(ValueError, match="severity"):
        alerts.raise_alert(None, "fatal", "x", "y")


def test_normalise_removes_numbers_hex_and_uuids():
    a = "row 12 of 0x1f in 123e4567-e89b-12d3-a456-426614174000 took 1.5s (model v0003)"
    b = "row 9 of 0xff in 00000000-0000-0000-0000-000000000000 took 20s (model v0012)"
    assert alerts.normalise(a) == alerts.normalise(b) == "row <n> of <hex> in <uuid> took <n>s (model v<n>)"
    assert alerts.signature("s", a) == alerts.signature("s", b) != alerts.signature("t", a)
