"""The warehouse seam's small decisions, one by one: SQL file lookup, table declaration, the
DuckDB session, statement handling, write modes, partition checks and the profile switch (the
mutants `make mutate` found that the scenario tests in test_warehouse.py let through)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from ml import warehouse as wh
from ml.warehouse import DuckDBWarehouse, WarehouseError


@pytest.fixture
def sql_dir(tmp_path):
    folder = tmp_path / "sql"
    folder.mkdir()
    (folder / "create_b.sql").write_text("CREATE TABLE IF NOT EXISTS {dataset}.b (x INT64, y STRING);")
    (folder / "create_a.sql").write_text("CREATE TABLE IF NOT EXISTS {dataset}.a (d DATE, n INT64);")
    (folder / "not_a_table.sql").write_text("CREATE TABLE {dataset}.should_not_exist (x INT64);")
    (folder / "rows_of_b.sql").write_text("SELECT x, y FROM {dataset}.b WHERE x >= @least ORDER BY x;")
    (folder / "notes.txt").write_text("not SQL")
    return folder


@pytest.fixture
def duck(tmp_path, sql_dir):
    with DuckDBWarehouse(tmp_path / "nested" / "deeper" / "w.duckdb", "ds", sql_dir=sql_dir) as w:
        yield w


def tables(w) -> set[str]:
    return {row[0] for row in w.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def test_identifiers_are_letters_digits_and_underscores_only():
    assert wh._check_ident("_a1", "table") == "_a1"
    for bad in (None, "", "1a", "a-b", "a b", "a.b", "a;"):
        with pytest.raises(WarehouseError) as info:
            wh._check_ident(bad, "table")
        assert str(info.value) == f"invalid table name {bad!r}: use letters, digits and underscores"


def test_render_fills_only_the_dataset_and_leaves_other_braces():
    assert wh.render("SELECT '{\"a\": 1}' FROM {dataset}.t, {dataset}.u", "ds") == (
        "SELECT '{\"a\": 1}' FROM ds.t, ds.u")
    with pytest.raises(WarehouseError, match="invalid dataset name"):
        wh.render("SELECT 1", "d-s")


def test_parameter_names_over_every_statement():
    assert wh.parameter_names("SELECT @a FROM {dataset}.t WHERE b = @b; DELETE FROM {dataset}.t WHERE c = @c;") == {
        "a", "b", "c"}
    assert wh.parameter_names("SELECT 1;;") == set()


def test_sql_files_are_the_sorted_sql_files_of_the_folder(sql_dir):
    assert [p.name for p in wh.sql_files(sql_dir)] == ["create_a.sql", "create_b.sql", "not_a_table.sql",
                                                        "rows_of_b.sql"]
    assert "create_alerts" in {p.stem for p in wh.sql_files()}  # the project's folder by default


def test_read_sql_finds_a_file_with_or_without_its_suffix_and_lists_the_known_ones(duck, sql_dir):
    assert duck.read_sql("rows_of_b") == duck.read_sql("rows_of_b.sql") == (
        "SELECT x, y FROM ds.b WHERE x >= @least ORDER BY x;")
    with pytest.raises(WarehouseError) as info:
        duck.read_sql("nope")
    assert str(info.value) == (f"no SQL file {sql_dir / 'nope.sql'} "
                               "(known: create_a, create_b, not_a_table, rows_of_b)")


def test_ensure_tables_runs_the_create_files_only_and_twice_is_fine(duck):
    duck.ensure_tables()
    duck.ensure_tables()
    assert tables(duck) == {"a", "b"}
    duck.load_arrow("b", pa.table({"x": [1, 2, 3], "y": ["p", "q", "r"]}))
    assert duck.run_sql_file("rows_of_b", {"least": 2}).to_pylist() == [{"x": 2, "y": "q"}, {"x": 3, "y": "r"}]
    assert duck.run_sql_file("create_a") is None


def test_the_duckdb_session_is_utc_in_a_schema_named_after_the_dataset(duck, tmp_path):
    assert (tmp_path / "nested" / "deeper" / "w.duckdb").exists()  # parent folders created
    assert duck.query("SELECT current_setting('TimeZone') AS tz").to_pylist() == [{"tz": "UTC"}]
    assert ("ds",) in duck.con.execute("SELECT schema_name FROM information_schema.schemata").fetchall()
    with DuckDBWarehouse(":memory:", "mem") as memory:  # no file, no folder
        assert memory.query("SELECT 1 AS one").to_pylist() == [{"one": 1}]
    assert not (tmp_path / ":memory:").exists()


def test_query_returns_the_last_statements_rows_or_none_and_names_missing_parameters(duck):
    duck.ensure_tables()
    assert duck.query("INSERT INTO ds.b VALUES (1, 'p'); SELECT x FROM ds.b;").to_pylist() == [{"x": 1}]
    assert duck.query("SELECT x FROM ds.b; DELETE FROM ds.b WHERE x = @x;", {"x": 1}) is None
    assert duck.query("SELECT COUNT(*) AS n FROM ds.b").to_pylist() == [{"n": 0}]
    with pytest.raises(WarehouseError) as info:
        duck.query("SELECT @b AS b, @a AS a", {"c": 1})
    assert str(info.value) == "missing query parameters: ['a', 'b']"
    assert duck.query("SELECT @a AS a", {"a": 5}).to_pylist() == [{"a": 5}]
    assert duck.query("") is None and duck.query(";") is None  # no statement, no rows


def test_writes_leave_no_registered_view_behind(duck):
    duck.ensure_tables()
    duck.load_arrow("b", pa.table({"x": [1], "y": ["p"]}))
    duck.replace_partition("a", pa.table({"d": [dt.date(2024, 1, 1)], "n": [1]}), "d", dt.date(2024, 1, 1))
    assert tables(duck) == {"a", "b"}
    with pytest.raises(Exception, match="nope"):
        duck.load_arrow("b", pa.table({"nope": [1]}))
    assert tables(duck) == {"a", "b"}


def test_append_is_the_default_mode_and_truncate_replaces(duck):
    duck.ensure_tables()
    rows = pa.table({"x": [1, 2], "y": ["p", "q"]})
    duck.load_arrow("b", rows)
    duck.load_arrow("b", rows, "append")
    assert duck.query("SELECT COUNT(*) AS n FROM ds.b").to_pylist() == [{"n": 4}]
    duck.load_arrow("b", pa.table({"x": [9], "y": ["z"]}), mode="truncate")
    assert duck.query("SELECT x, y FROM ds.b").to_pylist() == [{"x": 9, "y": "z"}]
    with pytest.raises(ValueError) as info:
        duck.load_arrow("b", rows, mode="merge")
    assert str(info.value) == "mode must be one of ('append', 'truncate'), not 'merge'"


def test_replace_partition_touches_only_its_partition_and_checks_the_rows(duck):
    duck.ensure_tables()
    d1, d2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
    duck.load_arrow("a", pa.table({"d": [d1, d1, d2], "n": [1, 2, 3]}))
    duck.replace_partition("a", pa.table({"d": [d2, d2], "n": [7, 8]}), "d", d2)
    assert duck.query("SELECT d, n FROM ds.a ORDER BY n").to_pylist() == [
        {"d": d1, "n": 1}, {"d": d1, "n": 2}, {"d": d2, "n": 7}, {"d": d2, "n": 8}]
    duck.replace_partition("a", pa.table({"d": pa.array([], pa.date32()), "n": pa.array([], pa.int64())}), "d", d1)
    assert duck.query("SELECT n FROM ds.a ORDER BY n").to_pylist() == [{"n": 7}, {"n": 8}]  # emptied
    with pytest.raises(WarehouseError, match="invalid column name"):
        duck.replace_partition("a", pa.table({"d": [d2]}), "d; DROP TABLE ds.a", d2)
    with pytest.raises(WarehouseError) as info:
        duck.replace_partition("a", pa.table({"n": [1]}), "d", d2)
    assert str(info.value) == "partition column 'd' is not in the rows to load"
    days = [dt.date(2024, 2, i) for i in range(7, 0, -1)]
    with pytest.raises(WarehouseError) as info:
        duck.replace_partition("a", pa.table({"d": [d2, *days], "n": list(range(8))}), "d", d2)
    assert str(info.value) == ("rows outside partition d=2024-01-02: "
                               "['2024-02-01', '2024-02-02', '2024-02-03', '2024-02-04', '2024-02-05']")
    # a value given as text names the same partition as the date in the rows
    duck.replace_partition("a", pa.table({"d": [d2], "n": [9]}), "d", "2024-01-02")
    assert duck.query("SELECT n FROM ds.a ORDER BY n").to_pylist() == [{"n": 9}]


def test_the_base_class_runs_nothing_itself():
    base = wh.Warehouse()
    for call in (lambda: base.query("SELECT 1"), lambda: base.load_arrow("t", pa.table({})),
                 lambda: base.replace_partition("t", pa.table({}), "d", 1)):
        with pytest.raises(NotImplementedError):
            call()
    assert base.close() is None
    with base as same:
        assert same is base


def test_connect_duckdb_takes_the_sql_folder(tmp_path, sql_dir):
    with wh.connect({"kind": "duckdb", "path": str(tmp_path / "c.duckdb"), "dataset": "cds"}, sql_dir=sql_dir) as w:
        assert (w.path, w.dataset, w.sql_dir) == (str(tmp_path / "c.duckdb"), "cds", sql_dir)
        w.ensure_tables()
        assert tables(w) == {"a", "b"}
    with pytest.raises(WarehouseError) as info:
        wh.connect({"dataset": "x"})
    assert str(info.value) == "unknown warehouse kind None (expected duckdb or bigquery)"


def test_connect_bigquery_builds_the_providers_hook_from_the_section(monkeypatch, sql_dir):
    for conn_id, project in (("google_cloud_default", "conn-project"), ("other_conn", "other-project")):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", '{"conn_type": "google_cloud_platform", '
                           f'"extra": {{"is_anonymous": true, "project": "{project}"}}}}')
    w = wh.connect({"kind": "bigquery", "project": "p1", "dataset": "ds", "location": "EU"}, sql_dir=sql_dir)
    assert type(w.hook).__name__ == "BigQueryHook"
    assert (w.hook.gcp_conn_id, w.hook.location, w.hook.use_legacy_sql) == ("google_cloud_default", "EU", False)
    assert (w.project, w.dataset, w.location, w.sql_dir) == ("p1", "ds", "EU", sql_dir)
    other = wh.connect({"kind": "bigquery", "dataset": "ds2", "gcp_conn_id": "other_conn"})
    assert (other.hook.gcp_conn_id, other.project, other.dataset, other.location) == (
        "other_conn", "other-project", "ds2", None)
    assert other.sql_dir == wh.SQL_DIR
