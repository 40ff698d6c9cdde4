"""Validation's row-count bounds, through the public API only (`ml.validate.validate_files`).

A file set with exactly the schema's minimum or maximum number of rows is accepted; one row fewer
or one row more rejects the whole file, with a row-count rule, and quarantines every row.
"""

from __future__ import annotations

import pytest

from ml import validate

MIN_ROWS, MAX_ROWS = 2, 5

SCHEMA = f"""\
name: shop_bounds
version: 1
keys: [order_id]
label:
  name: returned
  type: int
  values: [0, 1]
row_count: [{MIN_ROWS}, {MAX_ROWS}]
features:
  - {{name: order_id, type: string, kind: key, known: ahead, presence: 1.0, pattern: "^O[0-9]+$"}}
  - {{name: basket_eur, type: float, kind: numeric, known: ahead, presence: 1.0, range: [0, 10000]}}
  - {{name: channel, type: string, kind: categorical, known: ahead, presence: 1.0, vocabulary: [web, app, store]}}
"""


@pytest.fixture
def schema_path(tmp_path):
    path = tmp_path / "shop_bounds.yaml"
    path.write_text(SCHEMA)
    return path


def _file(tmp_path, rows: int):
    path = tmp_path / "landing" / f"orders-{rows}.csv"
    path.parent.mkdir(exist_ok=True)
    lines = ["order_id,basket_eur,channel,returned"]
    lines += [f"O{i},{10 + i}.5,{('web', 'app', 'store')[i % 3]},{i % 2}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("rows", [MIN_ROWS, MAX_ROWS])
def test_exactly_at_a_row_count_bound_is_accepted(tmp_path, schema_path, rows):
    summary = validate.validate_files([str(_file(tmp_path, rows))], str(schema_path), str(tmp_path / "q"))
    assert summary["ok"] is True
    [report] = summary["files"]
    assert report["status"] == "accepted", report
    assert (report["rows_in"], report["rows_accepted"], report["rows_quarantined"]) == (rows, rows, 0)


@pytest.mark.parametrize("rows", [MIN_ROWS - 1, MAX_ROWS + 1])
def test_one_row_past_a_row_count_bound_rejects_the_file(tmp_path, schema_path, rows):
    summary = validate.validate_files([str(_file(tmp_path, rows))], str(schema_path), str(tmp_path / "q"))
    assert summary["ok"] is False
    [report] = summary["files"]
    assert report["status"] == "rejected"
    assert "row count" in f"{report['rule']} {report['message']}".lower().replace("_", " "), report
    assert (report["rows_in"], report["rows_accepted"], report["rows_quarantined"]) == (rows, 0, rows)
