"""Every row is decided on its own, for any file size: counts, quarantine and accepted output agree
with a brute-force validator written here from the schema (plain Python, no GX, no Arrow)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ml import validate as V
from ml.features import FLOAT_RE, INT_RE, load_schema
from ml.simulate import simulate
from ml.validate import engine
from ml.validate.gx_report import EngineMismatch, GXSuite
from ml.validate.suite import compile_suites

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "include/schemas/traffic.yaml"
TINY = Path(__file__).parent / "data/tiny_schema.yaml"


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """One simulated day of 200 sensors: 4,800 rows."""
    out = tmp_path_factory.mktemp("day")
    simulate(out, "2024-03-04", 1, 5, sensors=200, forecast_days=0)
    path = out / "landing" / "dt=2024-03-04" / "part-00000.csv"
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 4801
    return rows


def _write(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _read(uri):
    with open(V.to_path(uri), newline="") as handle:
        return list(csv.reader(handle))


def brute_force(path, schema) -> dict:
    """line number → sorted [(field, rule)] of every failing row, straight from the schema."""
    expected = [(f.name, f.type, f) for f in schema.features] + ([(schema.label, "int", None)] if schema.label else [])
    failures = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader)]
        for record in reader:
            if not record:
                continue
            line = reader.line_num
            if len(record) != len(header):
                failures[line] = [("", "malformed_row")]
                continue
            row = dict(zip(header, (v.strip() for v in record), strict=True))
            bad = []
            for name, type_, feat in expected:
                value = row[name]
                presence = feat.presence if feat else 1.0
                if value == "":
                    if presence >= 1.0:
                        bad.append((name, "not_null"))
                    continue
                number = None
                if type_ != "string":
                    if re.search(INT_RE if type_ == "int" else FLOAT_RE, value):
                        number = float(value)
                    else:
                        bad.append((name, f"type_{type_}"))
                if feat and feat.pattern and not re.search(feat.pattern, value):
                    bad.append((name, "pattern"))
                domain = feat.vocabulary if feat else schema.label_values
                if domain and not (feat and feat.open_vocabulary):
                    if type_ == "string" and value not in domain:
                        bad.append((name, "vocabulary"))
                    elif type_ != "string" and number is not None and number not in {float(v) for v in domain}:
                        bad.append((name, "vocabulary"))
                if feat and feat.range and number is not None and not feat.range[0] <= number <= feat.range[1]:
                    bad.append((name, "range"))
            if bad:
                failures[line] = sorted(bad)
    return failures


def test_an_all_null_column_rejects_every_row_not_just_the_first_200(day, tmp_path):
    """Defect: GX's unexpected-index list named 200 rows; the other 4,600 NULL-hour rows were accepted."""
    rows = [list(r) for r in day]
    hour = rows[0].index("hour")
    for r in rows[1:]:
        r[hour] = ""
    path = _write(tmp_path / "no_hour.csv", rows)
    summary = V.validate_files(path, SCHEMA, tmp_path / "q", accepted_uri=tmp_path / "a")
    report = summary["files"][0]
    assert report["status"] == "rejected" and report["bad_rows"] == 4800
    assert report["rows_accepted"] == 0 and report["rows_quarantined"] == 4800
    assert report["field"] == "hour" and report["row"] == 2 and "not_null" in report["message"]
    assert len(_read(report["quarantine_uri"])) == 4801
    assert not list((tmp_path / "a").glob("*.csv"))  # nothing of a rejected file is accepted

    # the same failures under a lenient limit: every row quarantined with its reason, none accepted
    lenient = V.validate_files(path, SCHEMA, tmp_path / "q2", {"max_bad_row_fraction": 1.0},
                               accepted_uri=tmp_path / "a2")["files"][0]
    assert lenient["status"] == "accepted" and lenient["rows_quarantined"] == 4800
    assert lenient["rows_accepted"] == 0 and len(_read(lenient["accepted_uri"])) == 1
    assert {tuple(r[2:4]) for r in _read(lenient["quarantine_uri"])[1:]} == {("hour", "not_null")}


def test_strings_in_a_numeric_column_are_caught_in_every_row(day, tmp_path):
    """Defect: 30 % of `hour` replaced by 'abc': 200 quarantined, the rest accepted."""
    rows = [list(r) for r in day]
    hour = rows[0].index("hour")
    chosen = set(np.random.default_rng(0).choice(np.arange(1, 4801), size=1440, replace=False).tolist())
    for i in chosen:
        rows[i][hour] = "abc"
    path = _write(tmp_path / "abc.csv", rows)
    strict = V.validate_files(path, SCHEMA, tmp_path / "q")["files"][0]
    assert strict["status"] == "rejected" and strict["bad_rows"] == 1440 and strict["rows_quarantined"] == 4800
    lenient = V.validate_files(path, SCHEMA, tmp_path / "q2", {"max_bad_row_fraction": 1.0},
                               accepted_uri=tmp_path / "a")["files"][0]
    assert lenient["rows_quarantined"] == 1440 and lenient["rows_accepted"] == 3360
    lines = {int(r[1]) for r in _read(lenient["quarantine_uri"])[1:]}
    assert lines == {i + 1 for i in chosen}  # line numbers as in the file (header = 1)
    assert all(r[hour] != "abc" for r in _read(lenient["accepted_uri"])[1:])


def _corrupt(rows, rng):
    """~3 % of rows broken in every way the schema can catch, plus harmless CSV quirks."""
    header = rows[0]
    col = {name: header.index(name) for name in header}
    edits = [("lanes", "x1"), ("lanes", "2.5"), ("occupancy", "1.7"), ("occupancy", "-0.1"),
             ("road_type", "boulevard"), ("road_type", ""), ("sensor_id", "S12"), ("congested", "2"),
             ("hour", "24"), ("hour", "+7"), ("avg_speed_kmh", "fast"), ("forecast_temp_c", "1e3"),
             ("date", "2024/03/04"), ("vehicle_count", "NaN"), ("is_holiday", " 1 ")]
    for i in rng.choice(np.arange(1, len(rows)), size=len(rows) // 30, replace=False):
        kind = rng.integers(0, len(edits) + 2)
        if kind == len(edits):
            rows[i] = rows[i][:-2]  # malformed: too few fields
        elif kind == len(edits) + 1:
            rows[i] = rows[i] + ["extra"]  # malformed: too many
        else:
            name, value = edits[kind]
            rows[i][col[name]] = value
    return rows


@pytest.mark.slow  # 192k rows and a Python brute force: not in the fast tier that make mutate runs
def test_large_file_every_row_matches_a_brute_force_check(day, tmp_path):
    """192k rows (three Arrow blocks, far past any cap inside a library), corrupted at random:
    the quarantine holds exactly the failing rows, with their line numbers and rules; the accepted
    file holds exactly the others, value for value."""
    rng = np.random.default_rng(7)
    rows = [day[0]] + [list(r) for _ in range(40) for r in day[1:]]
    rows = _corrupt(rows, rng)
    path = tmp_path / "big.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(rows[0])
        for k, r in enumerate(rows[1:]):
            writer.writerow(r)
            if k % 50_000 == 7:
                handle.write("\n")  # a blank line shifts every later line number
    assert path.stat().st_size > 2 * engine.BLOCK_BYTES
    schema = load_schema(str(SCHEMA))
    truth = brute_force(path, schema)
    assert 4000 < len(truth) < 8000

    summary = V.validate_files(path, SCHEMA, tmp_path / "q", {"max_bad_row_fraction": 1.0},
                               accepted_uri=tmp_path / "a")
    report = summary["files"][0]
    assert report["rows_in"] == len(rows) - 1
    assert report["rows_quarantined"] == len(truth) and report["bad_rows"] == len(truth)
    quarantine = _read(report["quarantine_uri"])
    got = {int(r[1]): r for r in quarantine[1:]}
    assert set(got) == set(truth)
    for line, failures in truth.items():
        assert (got[line][2], got[line][3]) in failures  # the first failing rule names field and rule
        for field_, rule in failures:  # the reason lists every failing rule
            assert f"{field_}: {rule}" in got[line][4] or rule == "malformed_row"
    accepted = _read(report["accepted_uri"])
    good = [r for r in rows[1:] if len(r) == len(rows[0])]
    bad_lines = set(truth)
    # rebuild the accepted rows the brute force expects, in the schema's column order
    order = [rows[0].index(c) for c in schema.columns]
    expected_rows, line = [], 1
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for record in reader:
            if record and reader.line_num not in bad_lines:
                expected_rows.append([record[i] for i in order])
    assert accepted[0] == schema.columns
    assert accepted[1:] == expected_rows
    assert len(good) >= len(expected_rows)
    assert report["rows_accepted"] == len(expected_rows) == report["rows_in"] - len(truth)


def test_gx_counts_equal_the_engine_counts_and_a_difference_is_an_error(day, tmp_path):
    rows = _corrupt([list(r) for r in day], np.random.default_rng(3))
    path = _write(tmp_path / "sample.csv", rows)
    summary = V.validate_files(path, SCHEMA, tmp_path / "q", {"max_bad_row_fraction": 1.0, "gx_sample_rows": 5000},
                               report_uri=tmp_path / "r")
    report = json.loads(V.to_path(summary["files"][0]["gx_report_uri"]).read_text())
    assert report["agrees_with_engine"] and report["sample_rows"] == summary["files"][0]["rows_in"] - sum(
        1 for r in rows[1:] if len(r) != len(rows[0]))
    truth = brute_force(path, load_schema(str(SCHEMA)))
    per_rule = {}
    for failures in truth.values():
        for f in failures:
            per_rule[f] = per_rule.get(f, 0) + 1
    gx_counts = {(r["field"], r["rule"]): r["unexpected_count"] for r in report["results"]
                 if r["unexpected_count"] and r["rule"] not in ("presence", "oov_rate")}  # file-level shares
    assert gx_counts == {k: v for k, v in per_rule.items() if k[1] != "malformed_row"}

    # a compiled check that counted differently from GX stops validation with both numbers
    schema = load_schema(str(SCHEMA))
    raw, typed = V.build_suites(schema, V.DEFAULT_LIMITS)
    checks = compile_suites(raw, typed)
    header = rows[0]
    streamed = engine.stream(path, header, schema, checks, bad_budget=10**9, accepted_tmp=None,
                             spill_dir=tmp_path, sample_rows=1000)
    lanes_type = next(i for i, c in enumerate(checks) if c.field == "lanes" and c.rule == "type_int")
    streamed.sample.counts[lanes_type] = streamed.sample.counts.get(lanes_type, 0) + 1
    with pytest.raises(EngineMismatch, match="lanes/type_int"):
        GXSuite(schema, raw, typed).validate(str(path), streamed.sample)


def test_a_schema_without_a_label_validates_and_every_error_names_a_real_column(tmp_path):
    raw = yaml.safe_load(TINY.read_text())
    del raw["label"]
    schema_path = tmp_path / "unlabelled.yaml"
    schema_path.write_text(yaml.safe_dump(raw))
    assert load_schema(str(schema_path)).columns == [f["name"] for f in raw["features"]]
    good = [["order_id", "basket_eur", "channel", "items", "coupon_code"]] + [
        [f"O{k}", "12.5", "web", "3", ""] for k in range(20)]
    summary = V.validate_files(_write(tmp_path / "good.csv", good), schema_path, tmp_path / "q")
    assert summary["ok"] and summary["rows_accepted"] == 20
    missing = _write(tmp_path / "missing.csv", [r[:3] + r[4:] for r in good])
    report = V.validate_files(missing, schema_path, tmp_path / "q")["files"][0]
    assert report["status"] == "rejected" and report["field"] == "items"
    assert "missing: items" in report["message"] and "missing: ," not in report["message"]


def test_cli_json_prints_only_json_and_uses_exit_codes(day, tmp_path):
    good = _write(tmp_path / "good.csv", day)
    bad_rows = [list(r) for r in day]
    bad_rows[0][bad_rows[0].index("hour")] = "hour_of_day"
    bad = _write(tmp_path / "bad.csv", bad_rows)
    env_python = [sys.executable, "-m", "ml.validate", "--schema", str(SCHEMA), "--json",
                  "--quarantine", str(tmp_path / "q")]
    ok = subprocess.run(env_python + ["--data", str(good)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["rows_accepted"] == 4800 and "PASS" in ok.stderr
    rejected = subprocess.run(env_python + ["--data", str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert rejected.returncode == 1
    assert json.loads(rejected.stdout)["files"][0]["field"] == "hour"
    usage = subprocess.run(env_python + ["--data", str(good), "--schema", str(tmp_path / "nope.yaml")],
                           capture_output=True, text=True, cwd=ROOT)
    assert usage.returncode == 2 and usage.stdout == "" and "nope.yaml" in usage.stderr


def _shop(path, rows, header=("order_id", "basket_eur", "channel", "items", "coupon_code", "returned")):
    return _write(path, [list(header)] + rows)


def test_presence_is_a_share_of_all_rows_at_its_exact_boundary(tmp_path):
    """`items` must be present in >= 90 % of rows: 10 NULLs in 100 rows pass, 11 do not."""
    def rows(nulls):
        return [[f"O{k}", "10.5", "web", "" if k < nulls else "2", "", "0"] for k in range(100)]

    ok = V.validate_files(_shop(tmp_path / "ten.csv", rows(10)), TINY, tmp_path / "q")["files"][0]
    assert ok["status"] == "accepted" and ok["null_fraction"]["items"] == 0.1
    bad = V.validate_files(_shop(tmp_path / "eleven.csv", rows(11)), TINY, tmp_path / "q")["files"][0]
    assert bad["status"] == "rejected" and bad["rule"] == "presence" and bad["field"] == "items"
    assert "89.0%" in bad["message"] and bad["rows_quarantined"] == 100


def test_oov_rate_is_a_share_of_the_present_values(tmp_path):
    """An open vocabulary tolerates `max_oov_rate` unseen values among the values present (NULLs
    are the presence rule's business): 11 unseen of 50 present is 22 % > 20 %, though 11 % of rows."""
    raw = yaml.safe_load(TINY.read_text())
    for f in raw["features"]:
        if f["name"] == "channel":
            f.update(presence=0.5, open_vocabulary=True)
    schema_path = tmp_path / "open.yaml"
    schema_path.write_text(yaml.safe_dump(raw))

    def rows(unseen):
        return [[f"O{k}", "10.5", "" if k < 50 else ("fax" if k < 50 + unseen else "web"), "2", "", "0"]
                for k in range(100)]

    ok = V.validate_files(_shop(tmp_path / "ten.csv", rows(10)), schema_path, tmp_path / "q")["files"][0]
    assert ok["status"] == "accepted" and ok["oov_rate"]["channel"] == 0.2
    bad = V.validate_files(_shop(tmp_path / "eleven.csv", rows(11)), schema_path, tmp_path / "q")["files"][0]
    assert bad["status"] == "rejected" and bad["rule"] == "oov_rate" and bad["field"] == "channel"
    assert "22.0%" in bad["message"]


def test_duplicate_and_unexpected_columns_are_named(tmp_path):
    rows = [[f"O{k}", "10.5", "web", "2", "", "0", "x"] for k in range(10)]
    dup = _shop(tmp_path / "dup.csv", rows,
                header=("order_id", "basket_eur", "channel", "items", "coupon_code", "returned", "channel"))
    report = V.validate_files(dup, TINY, tmp_path / "q")["files"][0]
    assert report["status"] == "rejected" and report["row"] == 1 and report["rule"] == "expected columns"
    assert report["field"] == "channel" and "duplicate column: channel" in report["message"]
    extra = _shop(tmp_path / "extra.csv", rows,
                  header=("order_id", "basket_eur", "channel", "items", "coupon_code", "returned", "note"))
    report = V.validate_files(extra, TINY, tmp_path / "q")["files"][0]
    assert report["field"] == "note" and report["message"].endswith("(unexpected column: note)")
