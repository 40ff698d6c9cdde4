"""The landing area and file sets: a partition counts only once its `_SUCCESS` marker exists;
windows are [end - days, end); dynamic training takes the oldest complete set not handled yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml import file_sets, landing
from ml.warehouse import DuckDBWarehouse


def _land(root: Path, date: str, parts=("part-0000.csv",), success=True) -> list[str]:
    folder = root / f"dt={date}"
    folder.mkdir(parents=True)
    for name in parts:
        (folder / name).write_text("a,b\n1,2\n")
    if success:
        (folder / landing.SUCCESS).write_text("")
    return [str(folder / name) for name in sorted(parts)]


@pytest.fixture
def area(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    _land(root, "2024-03-01")
    _land(root, "2024-03-02", parts=("part-0001.csv", "part-0000.csv", "notes.txt"))
    _land(root, "2024-03-03", success=False)  # still being written
    _land(root, "2024-03-04")
    (root / "forecast").mkdir()  # not a partition
    return root


def test_a_partition_is_complete_only_with_its_success_marker(area):
    complete = landing.complete_partitions(str(area))
    assert list(complete) == ["2024-03-01", "2024-03-02", "2024-03-04"]  # no marker, no data
    # the csv files of the set, sorted; other files (the marker, notes) are not data
    assert complete["2024-03-02"] == [str(area / "dt=2024-03-02" / f"part-000{i}.csv") for i in (0, 1)]
    (area / "dt=2024-03-03" / landing.SUCCESS).write_text("")
    assert "2024-03-03" in landing.complete_partitions(area.as_uri())  # file:// URIs work too


def test_an_empty_or_missing_landing_area_has_no_partitions(tmp_path):
    assert landing.complete_partitions(str(tmp_path / "nowhere")) == {}
    assert landing.newest_partition(str(tmp_path / "nowhere")) is None
    _land(tmp_path, "2024-03-05", success=False)
    assert landing.newest_partition(str(tmp_path)) is None


def test_newest_partition_is_the_newest_complete_one(area):
    assert landing.newest_partition(str(area)) == "2024-03-04"
    _land(area, "2024-03-09", success=False)
    assert landing.newest_partition(str(area)) == "2024-03-04"


def test_window_is_end_minus_days_inclusive_to_end_exclusive(area):
    assert list(landing.partitions_in_window(str(area), "2024-03-04", 3)) == ["2024-03-01", "2024-03-02"]
    assert list(landing.partitions_in_window(str(area), "2024-03-05", 3)) == ["2024-03-02", "2024-03-04"]
    assert list(landing.partitions_in_window(str(area), "2024-03-05", 4)) == ["2024-03-01", "2024-03-02",
                                                                             "2024-03-04"]
    assert landing.partitions_in_window(str(area), "2024-03-01", 7) == {}  # end itself is excluded
    window = landing.partitions_in_window(str(area), "2024-03-02", 1)
    assert window == {"2024-03-01": [str(area / "dt=2024-03-01" / "part-0000.csv")]}


def test_next_unprocessed_takes_the_oldest_complete_set_not_handled(area):
    first = file_sets.next_unprocessed(str(area), {})
    assert first == ("2024-03-01", [str(area / "dt=2024-03-01" / "part-0000.csv")])
    done = {"2024-03-01": "promoted", "2024-03-02": "rejected"}
    assert file_sets.next_unprocessed(str(area), done)[0] == "2024-03-04"  # 03-03 has no marker
    # sets a registered model was already trained on are not news
    assert file_sets.next_unprocessed(str(area), {}, trained_until="2024-03-01")[0] == "2024-03-02"
    assert file_sets.next_unprocessed(str(area), {}, trained_until="2024-03-02")[0] == "2024-03-04"
    assert file_sets.next_unprocessed(str(area), {}, trained_until="2024-03-04") is None
    assert file_sets.next_unprocessed(str(area), {**done, "2024-03-04": "kept"}) is None


def test_trained_until_is_the_newest_training_end_over_versions():
    versions = [{"data_range": {"start": "2024-02-01", "end": "2024-02-14"}},
                {"data_range": {"start": "2024-02-15", "end": "2024-03-02"}},
                {"data_range": {}}, {"version": "v0004"},
                {"data_range": {"start": "2024-01-01", "end": "2024-01-31"}}]
    assert file_sets.trained_until(versions) == "2024-03-02"
    assert file_sets.trained_until([{"data_range": {}}, {}]) is None
    assert file_sets.trained_until([]) is None


@pytest.fixture
def warehouse(tmp_path):
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb", "prodml") as w:
        yield w


def test_record_is_one_row_per_set_and_a_rerun_replaces_it(warehouse):
    assert file_sets.processed(warehouse) == {}  # creates the table on first use
    file_sets.record(warehouse, "2024-03-01", "run-1", "rejected")
    file_sets.record(warehouse, "2024-03-02", None, "kept")
    file_sets.record(warehouse, "2024-03-01", "run-2", "promoted")  # the rerun's outcome wins
    assert file_sets.processed(warehouse) == {"2024-03-01": "promoted", "2024-03-02": "kept"}
    rows = warehouse.run_sql_file("processed_file_sets").to_pylist()
    assert [(r["file_set"], r["run_id"]) for r in rows] == [("2024-03-01", "run-2"), ("2024-03-02", "manual")]
    assert all(r["processed_at"].tzinfo is not None for r in rows)


def test_record_refuses_an_unknown_outcome(warehouse):
    with pytest.raises(ValueError, match="outcome must be one of"):
        file_sets.record(warehouse, "2024-03-01", "run-1", "done")
    assert file_sets.processed(warehouse) == {}
    for outcome in file_sets.OUTCOMES:
        file_sets.record(warehouse, outcome, "run-1", outcome)
    assert file_sets.processed(warehouse) == {o: o for o in file_sets.OUTCOMES}


def test_processed_at_is_the_utc_instant_even_on_a_machine_in_another_zone(warehouse, monkeypatch):
    import datetime as dt
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9: a local "now" would be 9 hours off
    time.tzset()
    try:
        before = dt.datetime.now(dt.UTC)
        file_sets.record(warehouse, "2024-03-01", "run-1", "kept")
        after = dt.datetime.now(dt.UTC)
    finally:
        monkeypatch.undo()
        time.tzset()
    [row] = warehouse.run_sql_file("processed_file_sets").to_pylist()
    assert before - dt.timedelta(seconds=1) <= row["processed_at"] <= after + dt.timedelta(seconds=1)
