"""ml.validate: the GX suite generated from the schema, quarantine, whole-file rejection, CLI."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from ml import validate as V
from ml.schema_check import DataError
from ml.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "include/schemas/traffic.yaml"
TINY = Path(__file__).parent / "data/tiny_schema.yaml"
LIMITS = {"max_bad_row_fraction": 0.05, "max_oov_rate": 0.2}


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def _write(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


@pytest.fixture(scope="module")
def landed_days(tmp_path_factory):
    out = tmp_path_factory.mktemp("bucket")
    truth = simulate(out, "2024-03-04", 2, 5, sensors=60, forecast_days=0,
                     scenarios={"2024-03-05": "logging_format_change"})
    return out, truth


def _day(out, day):
    return out / "landing" / f"dt={day}" / "part-00000.csv"


def _check_invariant(summary):
    for report in summary["files"]:
        assert report["rows_in"] == report["rows_accepted"] + report["rows_quarantined"]
        quarantined = sum(len(_rows(V.to_path(u))) - 1 for u in [report.get("quarantine_uri")] if u)
        assert quarantined == report["rows_quarantined"]
        if report.get("accepted_uri"):
            assert len(_rows(V.to_path(report["accepted_uri"]))) - 1 == report["rows_accepted"]
    assert summary["rows_in"] == summary["rows_accepted"] + summary["rows_quarantined"]


def test_normal_day_accepted_and_logging_format_change_rejected(landed_days, tmp_path):
    out, truth = landed_days
    good, changed = _day(out, "2024-03-04"), _day(out, "2024-03-05")
    before = {p: _sha(p) for p in (good, changed)}
    summary = V.validate_files([good, changed], SCHEMA, tmp_path / "q", LIMITS, accepted_uri=tmp_path / "a")
    _check_invariant(summary)
    ok, bad = summary["files"]
    assert ok["status"] == "accepted" and ok["rows_accepted"] == 1440 and ok["rows_quarantined"] == 0
    assert bad["status"] == "rejected" and bad["rows_quarantined"] == 1440
    # the renamed column is named, with the file, the row (header) and the rule
    assert "avg_speed_kmh" in bad["message"] and str(changed) in bad["message"]
    assert bad["field"] == "avg_speed_kmh" and bad["row"] == 1 and "avg_speed_mph" in bad["message"]
    assert not summary["ok"]
    with pytest.raises(V.FileRejected) as info:
        V.check(summary)
    assert isinstance(info.value, DataError) and "avg_speed_kmh" in str(info.value)
    assert {p: _sha(p) for p in (good, changed)} == before  # raw files untouched
    assert good.exists() and changed.exists()


def test_logging_format_change_without_rename_fails_on_its_other_symptoms(landed_days, tmp_path):
    """Same day with the column name fixed: NULLs (presence) and strings in numbers still reject it."""
    out, _ = landed_days
    rows = _rows(_day(out, "2024-03-05"))
    rows[0] = ["avg_speed_kmh" if c == "avg_speed_mph" else c for c in rows[0]]
    path = _write(tmp_path / "renamed_back.csv", rows)
    summary = V.validate_files(path, SCHEMA, tmp_path / "q", LIMITS)
    report = summary["files"][0]
    _check_invariant(summary)
    assert report["status"] == "rejected"
    assert report["field"] in ("forecast_temp_c", "vehicle_count")
    # with a lenient limit the row-level failures show the 'n/a' strings in vehicle_count
    lenient = V.validate_files(path, SCHEMA, tmp_path / "q2", {"max_bad_row_fraction": 1.0})
    assert "vehicle_count" in lenient["files"][0]["fields_failed"] or lenient["files"][0]["rule"] == "presence"


def test_row_level_failures_are_quarantined_with_reasons(landed_days, tmp_path):
    out, _ = landed_days
    rows = _rows(_day(out, "2024-03-04"))
    h = rows[0]
    rows[3][h.index("lanes")] = "xx"  # type
    rows[5][h.index("road_type")] = "boulevard"  # vocabulary
    rows[6][h.index("occupancy")] = "1.7"  # range
    rows[7][h.index("sensor_id")] = "bad"  # pattern
    rows[8][h.index("road_type")] = ""  # not null (presence 1.0)
    rows[9][h.index("congested")] = "2"  # label domain
    rows[10] = rows[10][:5]  # malformed (too few fields)
    path = _write(tmp_path / "bad_rows.csv", rows)
    digest = _sha(path)
    summary = V.validate_files([path], SCHEMA, tmp_path / "q", LIMITS, accepted_uri=tmp_path / "a")
    _check_invariant(summary)
    report = summary["files"][0]
    assert report["status"] == "accepted" and report["rows_quarantined"] == 7
    q = _rows(V.to_path(report["quarantine_uri"]))
    assert q[0][:5] == V.META_COLUMNS and q[0][5:] == h
    got = {(r[1], r[2], r[3]) for r in q[1:]}
    assert got == {("4", "lanes", "type_int"), ("6", "road_type", "vocabulary"), ("7", "occupancy", "range"),
                   ("8", "sensor_id", "pattern"), ("9", "road_type", "not_null"),
                   ("10", "congested", "vocabulary"), ("11", "", "malformed_row")}
    assert all(r[0] == str(path) and r[4] for r in q[1:])
    assert _sha(path) == digest


def test_too_many_bad_rows_reject_the_file_naming_file_row_field_rule(landed_days, tmp_path):
    out, _ = landed_days
    rows = _rows(_day(out, "2024-03-04"))
    i = rows[0].index("occupancy")
    for r in rows[1:101]:  # ~7% of 1440
        r[i] = "7.5"
    path = _write(tmp_path / "many_bad.csv", rows)
    summary = V.validate_files(path, SCHEMA, tmp_path / "q", LIMITS)
    _check_invariant(summary)
    report = summary["files"][0]
    assert report["status"] == "rejected" and report["rows_quarantined"] == 1440
    msg = report["message"]
    assert str(path) in msg and "row 2" in msg and "occupancy" in msg and "range" in msg


CASES = ["empty", "header_only", "truncated", "non_utf8", "garbage", "binary", "too_few_rows"]


def test_broken_files_get_a_clear_verdict_not_a_traceback(landed_days, tmp_path):
    out, _ = landed_days
    raw = _day(out, "2024-03-04").read_bytes()
    header = raw.split(b"\n", 1)[0] + b"\n"
    contents = {
        "empty": b"",
        "header_only": header,
        "truncated": raw[: len(raw) // 2],
        "non_utf8": raw[:2000] + b"\xff\xfe caf\xe9\n" + raw[2000:4000],
        "garbage": b"lorem ipsum; dolor\nsit amet\n\"unclosed, quote\n",
        "binary": bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)),
        "too_few_rows": b"".join(raw.split(b"\n")[i] + b"\n" for i in range(5)),
    }
    paths = []
    for case in CASES:
        paths.append(tmp_path / f"{case}.csv")
        paths[-1].write_bytes(contents[case])
    summary = V.validate_files(paths, SCHEMA, tmp_path / "q", LIMITS, accepted_uri=tmp_path / "a")
    _check_invariant(summary)
    for case, path, report in zip(CASES, paths, summary["files"], strict=True):
        assert report["file"] == str(path)
        if case == "truncated":  # the cut row is quarantined, the rest is fine
            assert report["status"] == "accepted" and report["rows_quarantined"] <= 1, report
        else:
            assert report["status"] == "rejected" and str(path) in report["message"], (case, report)
        assert path.read_bytes() == contents[case]
    messages = {case: r["message"] for case, r in zip(CASES, summary["files"], strict=True)}
    assert "UTF-8" in messages["non_utf8"] and "no rows" in messages["header_only"]
    assert "empty" in messages["empty"] and "row count" in messages["too_few_rows"]


def test_presence_below_schema_rejects_the_file(landed_days, tmp_path):
    out, _ = landed_days
    rows = _rows(_day(out, "2024-03-04"))
    i = rows[0].index("forecast_wind_kmh")
    for r in rows[1::4]:  # 25% NULL, schema wants 95% present
        r[i] = ""
    rows[0] = rows[0]
    path = _write(tmp_path / "nulls.csv", rows[:1] + rows[1:])
    report = V.validate_files(path, SCHEMA, tmp_path / "q", LIMITS)["files"][0]
    assert report["status"] == "rejected" and report["field"] == "forecast_wind_kmh" and report["rule"] == "presence"


def _tiny_rows(n, channel="web", coupon=""):
    rng = np.random.default_rng(1)
    rows = [["order_id", "basket_eur", "channel", "items", "coupon_code", "returned"]]
    for k in range(n):
        rows.append([f"O{k}", f"{rng.gamma(2, 30):.2f}", channel if k % 3 else "app", str(1 + k % 7), coupon,
                     str(int(k % 5 == 0))])
    return rows


def test_cli_on_another_schema_with_an_all_null_optional_column(tmp_path, capsys):
    good = _write(tmp_path / "good.csv", _tiny_rows(40))
    rows = _tiny_rows(40)
    rows[4][2] = "fax"
    rows[6][3] = "many"
    for r in rows[10:30]:
        r[1] = "-5"
    bad = _write(tmp_path / "bad.csv", rows)
    assert V.main(["--schema", str(TINY), "--data", str(good), "--quarantine", str(tmp_path / "q")]) == 0
    assert "PASS" in capsys.readouterr().out
    assert V.main(["--schema", str(TINY), "--data", str(bad), "--quarantine", str(tmp_path / "q")]) == 1
    text = capsys.readouterr().out
    assert "REJECTED" in text and "channel" in text and "vocabulary" in text and str(bad) in text
    missing = _write(tmp_path / "missing.csv", [r[:4] + r[5:] for r in _tiny_rows(10)])
    assert V.main(["--schema", str(TINY), "--data", str(missing)]) == 1
    assert "coupon_code" in capsys.readouterr().out


def test_suite_is_generated_from_the_schema():
    from ml.features import load_schema

    schema = load_schema(str(SCHEMA))
    raw, typed = V.build_suites(schema, LIMITS)
    kinds = {type(e).__name__ for e, _ in raw + typed}
    assert {"ExpectTableColumnsToMatchSet", "ExpectTableRowCountToBeBetween", "ExpectColumnValuesToNotBeNull",
            "ExpectColumnValuesToMatchRegex", "ExpectColumnValuesToBeInSet",
            "ExpectColumnValuesToBeBetween"} <= kinds
    ranged = {rule[0] for _, rule in typed if rule[1] == "range"}
    assert ranged == {f.name for f in schema.features if f.range}
    assert os.environ.get("GX_ANALYTICS_ENABLED") == "false"
