"""Validation on real public data (tests/ml/realdata.py): the whole file is decided row by row, and
only rows that are genuinely out of their domain are quarantined, each with its reason."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ml import validate as V
from tests.ml import realdata

pytestmark = pytest.mark.slow  # whole real data sets: the fast tier (and make mutate) skips them


def _quarantine(report) -> list[list[str]]:
    if not report.get("quarantine_uri"):
        return []
    with open(V.to_path(report["quarantine_uri"]), newline="") as handle:
        return list(csv.reader(handle))[1:]


def test_diamonds_quarantines_exactly_the_impossible_dimensions(tmp_path):
    df = realdata.frame("diamonds")
    path = realdata.write_csv(df, tmp_path / "diamonds.csv")
    summary = V.validate_files(path, realdata.schema_path("diamonds"), tmp_path / "q", accepted_uri=tmp_path / "a")
    report = summary["files"][0]
    # brute force with pandas: a dimension of 0 mm, or the known typos (y = 58.9 mm, z = 31.8 mm)
    dims = df[["x", "y", "z"]]
    impossible = ((dims < 0.1) | (dims > 20)).any(axis=1).to_numpy()
    assert 20 <= impossible.sum() <= 40
    assert report["status"] == "accepted" and report["rows_in"] == len(df) == 53_940
    assert report["rows_quarantined"] == impossible.sum()
    assert report["rows_accepted"] == len(df) - impossible.sum()
    rows = _quarantine(report)
    assert sorted(int(r[1]) for r in rows) == (np.flatnonzero(impossible) + 2).tolist()  # header = line 1
    for r in rows:
        assert r[2] in ("x", "y", "z") and r[3] == "range" and f"{r[2]}: range" in r[4]


def test_flights_all_336k_rows_decided_cancelled_flights_accepted(tmp_path):
    df = realdata.frame("flights")
    path = realdata.write_csv(df, tmp_path / "flights.csv")
    summary = V.validate_files(path, realdata.schema_path("flights"), tmp_path / "q", accepted_uri=tmp_path / "a")
    report = summary["files"][0]
    tail_ok = df["tailnum"].isna() | df["tailnum"].str.fullmatch(r"N[0-9A-Z]{1,5}").fillna(False).astype(bool)
    assert report["status"] == "accepted" and report["rows_in"] == 336_776
    assert report["rows_quarantined"] == int((~tail_ok).sum())
    assert {(r[2], r[3]) for r in _quarantine(report)} <= {("tailnum", "pattern")}
    # the NULL share the file-level presence rule saw is the data set's own
    assert abs(report["null_fraction"]["dep_time"] - df["dep_time"].isna().mean()) < 1e-6
    assert report["null_fraction"]["arr_delay"] > report["null_fraction"]["dep_time"] > 0.02
    with open(V.to_path(report["accepted_uri"]), newline="") as handle:
        assert sum(1 for _ in handle) - 1 == report["rows_accepted"]
