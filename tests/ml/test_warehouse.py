"""The warehouse seam: every SQL file runs on DuckDB; loads, partitions, params; BigQuery types."""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pytest

from ml import predict
from ml import warehouse as wh
from ml.config import PROJECT_ROOT
from ml.features import entity_key, load_schema
from ml.warehouse import DuckDBWarehouse, WarehouseError

TRAFFIC = load_schema(str(PROJECT_ROOT / "include/schemas/traffic.yaml"))

NOW_PARAM = dt.datetime(2024, 1, 2, 6, tzinfo=dt.UTC)
# Sample parameters for every query file that takes some. A new SQL file with parameters
# fails test_every_sql_file_runs_on_duckdb until it gets an entry here.
SAMPLE_PARAMS = {
    "prediction_counts": {"target_date": dt.date(2024, 1, 2)},
    "recent_alerts": {"limit": 10},
    "alert_signature_seen": {"signature": "abc"},
    "request_key_counts": {"since": NOW_PARAM, "until": NOW_PARAM},
    "monitoring_served": {"start": NOW_PARAM, "end": NOW_PARAM},
    "monitoring_served_for_date": {"date": "2024-01-02"},
    "monitoring_batch_scores": {"first": dt.date(2024, 1, 1), "last": dt.date(2024, 1, 2)},
    "monitoring_verdicts": {"model_version": "v0001", "until": NOW_PARAM, "limit": 3},
    "rollback_audit_recent": {"limit": 10},
    "serving_head": {"first_date": dt.date(2024, 1, 1), "last_date": dt.date(2024, 1, 2), "model_version": "v0001"},
}

DAY1, DAY2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
NOW = dt.datetime(2024, 1, 1, 6, tzinfo=dt.UTC)


@pytest.fixture
def warehouse(tmp_path):
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb", "prodml") as w:
        w.ensure_tables()
        predict.ensure_predictions_table(w, TRAFFIC)  # generated from the schema (its keys)
        yield w


def predictions(day: dt.date, n: int, version: str = "v0001") -> pa.Table:
    # Columns deliberately not in table order: the insert matches by name.
    return pa.table({
        "score": [0.1 * i for i in range(n)],
        "sensor_id": [f"s{i}" for i in range(n)],
        "target_date": [day] * n,
        "hour": list(range(n)),
        "entity_key": [entity_key((f"s{i}", i)) for i in range(n)],
        "predicted_congested": [i % 2 for i in range(n)],
        "model_version": [version] * n,
        "run_id": ["run-1"] * n,
        "predicted_at": [NOW] * n,
    })


def test_every_sql_file_runs_on_duckdb(warehouse):
    files = wh.sql_files()
    assert {"create_alerts", "create_prediction_log", "recent_alerts"} <= {f.stem for f in files}
    creates = [f for f in files if f.stem.startswith("create_")]
    queries = [f for f in files if not f.stem.startswith("create_")]
    for path in creates:  # idempotent: ensure_tables already ran them once
        assert warehouse.run_sql_file(path.stem) is None
    warehouse.load_arrow("predictions", predictions(DAY2, 3))
    for path in queries:
        needed = wh.parameter_names(path.read_text())
        params = SAMPLE_PARAMS.get(path.stem, {})
        assert needed <= set(params), f"add sample params {sorted(needed)} for {path.name} to SAMPLE_PARAMS"
        assert isinstance(warehouse.run_sql_file(path.stem, params), pa.Table), path.name


def test_sql_files_are_bigquery_dialect_with_dataset_template():
    for path in wh.sql_files():
        text = path.read_text()
        outside_strings = re.sub(r"'[^']*'", "''", text)  # a JSON path like '$.run_id' is fine
        assert not re.search(r"\$\w", outside_strings), f"{path.name}: use BigQuery @params, not DuckDB $params"
        if "FROM" in text.upper() or "TABLE" in text.upper():
            assert "{dataset}." in text, f"{path.name}: reference tables as {{dataset}}.table"


def test_load_arrow_bulk_insert_and_query_params(warehouse):
    warehouse.load_arrow("predictions", predictions(DAY1, 5))
    warehouse.load_arrow("predictions", predictions(DAY2, 3, "v0002"))
    counts = warehouse.run_sql_file("prediction_counts", {"target_date": DAY2}).to_pylist()
    assert len(counts) == 1
    assert counts[0]["n_rows"] == 3 and counts[0]["n_keys"] == 3 and counts[0]["model_version"] == "v0002"
    assert counts[0]["last_predicted_at"] == NOW
    # A 'YYYY-MM-DD' string works as well as a date.
    assert warehouse.run_sql_file("prediction_counts", {"target_date": "2024-01-01"})["n_rows"][0].as_py() == 5
    # Ad-hoc BigQuery-dialect queries, parameters only bound where referenced.
    rows = warehouse.query("SELECT COUNT(*) AS n FROM prodml.predictions WHERE hour < @h", {"h": 2, "unused": 1})
    assert rows["n"][0].as_py() == 4
    with pytest.raises(WarehouseError, match="missing query parameters"):
        warehouse.query("SELECT @x AS x")


def test_load_arrow_truncate_and_bad_input(warehouse):
    warehouse.load_arrow("predictions", predictions(DAY1, 5))
    warehouse.load_arrow("predictions", predictions(DAY2, 2), mode="truncate")
    assert warehouse.query("SELECT COUNT(*) AS n FROM prodml.predictions")["n"][0].as_py() == 2
    with pytest.raises(ValueError, match="mode"):
        warehouse.load_arrow("predictions", predictions(DAY1, 1), mode="upsert")
    with pytest.raises(WarehouseError, match="invalid table"):
        warehouse.load_arrow("predictions; DROP TABLE x", predictions(DAY1, 1))
    with pytest.raises(Exception, match="(?i)does not exist|not found"):
        warehouse.load_arrow("undeclared", predictions(DAY1, 1))  # loads never create tables


def test_replace_partition_is_idempotent(warehouse):
    warehouse.load_arrow("predictions", predictions(DAY1, 4))
    for _ in range(2):
        warehouse.replace_partition("predictions", predictions(DAY2, 3, "v0002"), "target_date", DAY2)
    per_day = warehouse.query(
        "SELECT target_date, COUNT(*) AS n, MIN(model_version) AS v FROM prodml.predictions "
        "GROUP BY target_date ORDER BY target_date"
    ).to_pylist()
    assert per_day == [{"target_date": DAY1, "n": 4, "v": "v0001"}, {"target_date": DAY2, "n": 3, "v": "v0002"}]
    # A rerun with a new model replaces the partition, leaving the other one untouched.
    warehouse.replace_partition("predictions", predictions(DAY2, 2, "v0003"), "target_date", DAY2)
    assert warehouse.run_sql_file("prediction_counts", {"target_date": DAY2})["n_rows"][0].as_py() == 2
    assert warehouse.run_sql_file("prediction_counts", {"target_date": DAY1})["n_rows"][0].as_py() == 4


def test_replace_partition_is_one_transaction(warehouse):
    warehouse.load_arrow("predictions", predictions(DAY2, 3))
    bad = predictions(DAY2, 2).append_column("no_such_column", pa.array([1, 2]))
    with pytest.raises(Exception, match="no_such_column"):
        warehouse.replace_partition("predictions", bad, "target_date", DAY2)
    # The insert failed, so the delete was rolled back too.
    assert warehouse.run_sql_file("prediction_counts", {"target_date": DAY2})["n_rows"][0].as_py() == 3
    with pytest.raises(WarehouseError, match="outside partition"):
        warehouse.replace_partition("predictions", predictions(DAY1, 2), "target_date", DAY2)


def test_connect_and_unknown_kind(tmp_path):
    with wh.connect({"kind": "duckdb", "path": str(tmp_path / "w.duckdb"), "dataset": "prodml"}) as w:
        assert isinstance(w, DuckDBWarehouse)
    with pytest.raises(WarehouseError, match="unknown warehouse kind"):
        wh.connect({"kind": "sqlite"})
    with pytest.raises(WarehouseError, match="invalid dataset"):
        DuckDBWarehouse(tmp_path / "x.duckdb", "prod-ml")
    with pytest.raises(WarehouseError, match="no SQL file"):
        DuckDBWarehouse(tmp_path / "y.duckdb", "prodml").run_sql_file("nope")


def test_bigquery_query_parameters_use_library_types():
    from google.cloud import bigquery

    params = wh.query_parameters({
        "target_date": DAY1, "limit": 5, "ok": True, "score": 0.5, "name": "s1",
        "at": dt.datetime(2024, 1, 1, 6), "ids": ["a", "b"],
    })
    by_name = {p.name: p for p in params}
    assert {n: p.type_ for n, p in by_name.items() if isinstance(p, bigquery.ScalarQueryParameter)} == {
        "target_date": "DATE", "limit": "INT64", "ok": "BOOL", "score": "FLOAT64", "name": "STRING",
        "at": "TIMESTAMP",
    }
    assert by_name["at"].value.tzinfo is not None  # naive datetimes are UTC instants
    assert isinstance(by_name["ids"], bigquery.ArrayQueryParameter) and by_name["ids"].array_type == "STRING"
    config = bigquery.QueryJobConfig(query_parameters=params)
    assert config.query_parameters == params
    assert config.to_api_repr()["query"]["queryParameters"]


class _FakeJob:
    statement_type = "SELECT"

    def result(self):
        return type("Rows", (), {"schema": [], "to_arrow": None})()


class _FakeHook:
    """Stands in for the provider's BigQueryHook: records the jobs it is asked to insert."""

    project_id = "my-project"

    def __init__(self):
        self.calls = []

    def insert_job(self, configuration, project_id=None, location=None):
        self.calls.append((configuration, project_id, location))
        return _FakeJob()


def test_bigquery_runs_sql_files_untranspiled_through_the_hook():
    hook = _FakeHook()
    w = wh.BigQueryWarehouse(None, "prodml", "EU", hook=hook)
    assert w.run_sql_file("recent_alerts", {"limit": 3}) is None  # fake result has no schema
    configuration, project, location = hook.calls[0]
    query = configuration["query"]
    assert "FROM prodml.alerts" in query["query"] and "LIMIT @limit" in query["query"]
    assert (project, location, query["useLegacySql"]) == ("my-project", "EU", False)
    assert query["queryParameters"] == [
        {"name": "limit", "parameterType": {"type": "INT64"}, "parameterValue": {"value": "3"}}]


def test_bigquery_only_storage_clauses_are_dropped_for_duckdb(warehouse):
    ddl = wh.render(predict.predictions_ddl(TRAFFIC), "prodml")
    assert "PARTITION BY target_date" in ddl  # what BigQuery gets
    stmt = wh.sqlglot.parse_one(ddl.rstrip().rstrip(";") + " CLUSTER BY sensor_id OPTIONS (description='x')",
                                read="bigquery")
    duck = wh._without_bigquery_storage(stmt).sql(dialect="duckdb", comments=False)
    assert "PARTITION" not in duck and "CLUSTER" not in duck and "description" not in duck
    assert duck.startswith("CREATE TABLE IF NOT EXISTS prodml.predictions (target_date DATE")
    assert "PARTITION BY" in stmt.sql(dialect="bigquery")  # the parsed statement is left as it was
    temp = wh.sqlglot.parse_one("CREATE TEMP TABLE t (a INT64)", read="bigquery")
    assert "TEMP" in wh._without_bigquery_storage(temp).sql(dialect="duckdb").upper()


def test_a_second_writer_waits_for_the_duckdb_lock(tmp_path, monkeypatch):
    """Airflow tasks are separate processes; DuckDB allows one writer per file: the second waits.

    No sleeps for synchronisation: the holder keeps the lock until told (a line on its stdin), and
    the second writer is released only once it has been refused the lock at least once."""
    import subprocess
    import sys
    import threading

    import duckdb

    path = tmp_path / "wh.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
        "sys.stdin.readline(); c.close()"), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        # without waiting, the lock conflict is an error that names the lock
        with pytest.raises(duckdb.IOException, match="(?i)lock"):
            DuckDBWarehouse(path, "prodml", lock_timeout_s=0)

        refused = threading.Event()
        real_sleep = wh.time.sleep

        def sleep(seconds):  # the writer backs off only after a refused connect: signal it
            if threading.current_thread() is writer:
                refused.set()
            real_sleep(seconds)

        monkeypatch.setattr(wh.time, "sleep", sleep)
        result = {}

        def second_writer():
            try:
                with DuckDBWarehouse(path, "prodml", lock_timeout_s=60) as w:
                    w.ensure_tables()
                    predict.ensure_predictions_table(w, TRAFFIC)
                    w.load_arrow("predictions", predictions(DAY1, 2))
                result["ok"] = True
            except Exception as exc:  # reported below
                result["error"] = exc
            finally:
                refused.set()  # a writer that gave up or got in early must not leave the test waiting

        writer = threading.Thread(target=second_writer)
        writer.start()
        assert refused.wait(timeout=60)
        assert not result and writer.is_alive()  # refused the lock, and waiting for it, not failing
        holder.stdin.write("release\n")
        holder.stdin.flush()
        writer.join(timeout=120)
        assert result == {"ok": True}
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with DuckDBWarehouse(path, "prodml") as w:
        assert w.query("SELECT COUNT(*) AS n FROM prodml.predictions")["n"][0].as_py() == 2


def test_bigquery_parameter_types_for_the_remaining_values():
    import decimal

    from google.cloud import bigquery

    params = {p.name: p for p in wh.query_parameters({
        "amount": decimal.Decimal("1.5"), "blob": b"\x00", "nothing": None, "empty": [], "hours": [1, 2],
        "names": ["a"]})}
    assert (params["amount"].type_, params["blob"].type_, params["nothing"].type_) == ("NUMERIC", "BYTES", "STRING")
    assert params["nothing"].value is None
    assert isinstance(params["empty"], bigquery.ArrayQueryParameter)
    assert (params["empty"].array_type, params["hours"].array_type, params["names"].array_type) == (
        "STRING", "INT64", "STRING")
    assert params["hours"].values == [1, 2]
    with pytest.raises(WarehouseError, match=r"no BigQuery type for parameter value \{'a': 1\}"):
        wh.query_parameters({"bad": {"a": 1}})


def test_bigquery_loads_write_columns_in_table_order_and_refuse_unknown_ones():
    from google.cloud import bigquery

    schema = [bigquery.SchemaField(n, t) for n, t in (("target_date", "DATE"), ("sensor_id", "STRING"),
                                                      ("score", "FLOAT64"))]
    assert wh._in_table_order(["score", "target_date"], schema, "p.d.t") == ["target_date", "score"]
    assert wh._in_table_order(["sensor_id", "score", "target_date"], schema, "p.d.t") == [
        "target_date", "sensor_id", "score"]
    with pytest.raises(WarehouseError, match=r"columns not in p.d.t: \['extra', 'more'\]"):
        wh._in_table_order(["score", "more", "extra"], schema, "p.d.t")
