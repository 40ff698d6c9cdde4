"""The BigQuery warehouse (ml.warehouse.BigQueryWarehouse) against bqemulator, through the
provider's BigQueryHook and an Airflow connection: the same calls the gcp profile's tasks make."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

from ml import predict
from ml import warehouse as wh
from tests.gcp import emulators
from tests.ml.test_warehouse import DAY1, DAY2, NOW, SAMPLE_PARAMS, TRAFFIC, predictions


def _connect(gcp_conn_id: str, dataset: str | None = None, project: str = emulators.PROJECT) -> wh.BigQueryWarehouse:
    """Through the one place that picks the backend, with a gcp-profile-like section."""
    w = wh.connect({"kind": "bigquery", "dataset": dataset or f"prodml_{uuid.uuid4().hex[:10]}",
                    "project": project, "location": "EU", "gcp_conn_id": gcp_conn_id})
    jobs = []  # every job configuration the warehouse sends through the hook
    insert_job = w.hook.insert_job

    def recording_insert_job(configuration, **kwargs):
        jobs.append(configuration)
        return insert_job(configuration=configuration, **kwargs)

    w.hook.insert_job = recording_insert_job
    w.jobs = jobs
    return w


@pytest.fixture
def bq(bq_emulator, gcp_conn_id):
    """A warehouse on a fresh dataset, tables created."""
    with _connect(gcp_conn_id) as w:
        w.ensure_tables()
        predict.ensure_predictions_table(w, TRAFFIC)
        yield w


def _per_day(w) -> list[dict]:
    return w.query(
        f"SELECT target_date, COUNT(*) AS n, MIN(model_version) AS v, MAX(score) AS top "
        f"FROM {w.dataset}.predictions GROUP BY target_date ORDER BY target_date"
    ).to_pylist()


# Every table an include/sql/create_*.sql file declares (ensure_tables creates them all), and
# `predictions`, whose DDL is generated from the schema's keys (ml.predict.predictions_ddl).
DECLARED = {p.stem.removeprefix("create_") for p in wh.sql_files() if p.stem.startswith("create_")} | {"predictions"}


def _tables(w) -> set[str]:
    return {t.table_id for t in w.client.list_tables(f"{w.project}.{w.dataset}")}


def test_connect_builds_the_warehouse_on_the_providers_hook(bq, bq_emulator):
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

    assert isinstance(bq, wh.BigQueryWarehouse) and isinstance(bq.hook, BigQueryHook)
    assert bq.hook.gcp_conn_id == "google_cloud_default"
    assert bq.project == emulators.PROJECT
    assert bq.client._connection.API_BASE_URL == bq_emulator.url


def test_ensure_tables_twice_dataset_and_partitioned_tables(bq_emulator, gcp_conn_id):
    with _connect(gcp_conn_id) as w:
        w.ensure_tables()
        predict.ensure_predictions_table(w, TRAFFIC)
        w.load_arrow("predictions", predictions(DAY1, 2))
        w.ensure_tables()  # dataset and tables exist: nothing is recreated, no row lost
        predict.ensure_predictions_table(w, TRAFFIC)
        assert _tables(w) == DECLARED
        assert _per_day(w)[0]["n"] == 2
        assert w.client.get_dataset(f"{w.project}.{w.dataset}").location == "EU"
        table = w.client.get_table(f"{w.project}.{w.dataset}.predictions")
        assert (table.time_partitioning.field, table.time_partitioning.type_) == ("target_date", "DAY")
        assert w.client.get_table(f"{w.project}.{w.dataset}.drift_scores").time_partitioning.field == "data_date"
        # prediction_log is partitioned by DATE(served_at): the emulator records no partitioning for
        # an expression, so only its DDL (below) is checked.

        # The DDL sent to BigQuery declares the partitioning (what a real BigQuery would act on).
        ddl = {job["query"]["query"].split("CREATE TABLE IF NOT EXISTS ")[1].split(" ")[0]: job["query"]["query"]
               for job in w.jobs if "CREATE TABLE" in job["query"]["query"]}
        assert set(ddl) == {f"{w.dataset}.{t}" for t in DECLARED}
        assert ddl[f"{w.dataset}.predictions"].rstrip().endswith("PARTITION BY target_date")
        assert ddl[f"{w.dataset}.drift_scores"].rstrip().endswith("PARTITION BY data_date;")
        assert ddl[f"{w.dataset}.prediction_log"].rstrip().endswith("PARTITION BY DATE(served_at);")
        assert all(job["query"]["useLegacySql"] is False for job in w.jobs)


def test_replace_partition_twice_no_duplicates_and_the_second_write_wins(bq):
    bq.load_arrow("predictions", predictions(DAY1, 4))
    for _ in range(2):  # a rerun adds no rows
        bq.replace_partition("predictions", predictions(DAY2, 3, "v0002"), "target_date", DAY2)
    assert _per_day(bq) == [{"target_date": DAY1, "n": 4, "v": "v0001", "top": pytest.approx(0.3)},
                            {"target_date": DAY2, "n": 3, "v": "v0002", "top": pytest.approx(0.2)}]
    # A rerun with another model and fewer rows: its rows and values replace the partition's.
    rerun = predictions(DAY2, 2, "v0003").set_column(0, "score", pa.array([0.9, 0.8]))
    bq.replace_partition("predictions", rerun, "target_date", DAY2.isoformat())  # a string works too
    assert _per_day(bq) == [{"target_date": DAY1, "n": 4, "v": "v0001", "top": pytest.approx(0.3)},
                            {"target_date": DAY2, "n": 2, "v": "v0003", "top": pytest.approx(0.9)}]
    merges = [job["query"]["query"] for job in bq.jobs if job["query"]["query"].startswith("MERGE")]
    assert len(merges) == 3 and "WHEN NOT MATCHED BY SOURCE AND target.`target_date` = " \
        "CAST(@partition_value AS DATE) THEN DELETE" in merges[0]
    assert not [t for t in _tables(bq) if "staging" in t]  # staging tables are dropped


def test_replace_partition_refuses_bad_rows_and_leaves_the_partition(bq):
    bq.replace_partition("predictions", predictions(DAY2, 3), "target_date", DAY2)
    with pytest.raises(wh.WarehouseError, match="outside partition"):
        bq.replace_partition("predictions", predictions(DAY1, 2), "target_date", DAY2)
    bad = predictions(DAY2, 2).append_column("no_such_column", pa.array([1, 2]))
    with pytest.raises(wh.WarehouseError, match="no_such_column"):
        bq.replace_partition("predictions", bad, "target_date", DAY2)
    assert _per_day(bq) == [{"target_date": DAY2, "n": 3, "v": "v0001", "top": pytest.approx(0.2)}]


def test_load_arrow_append_truncate_and_query_parameters(bq):
    bq.load_arrow("predictions", predictions(DAY1, 5))
    bq.load_arrow("predictions", predictions(DAY2, 3, "v0002"))
    counts = bq.run_sql_file("prediction_counts", {"target_date": DAY2}).to_pylist()
    assert len(counts) == 1
    assert (counts[0]["n_rows"], counts[0]["n_keys"], counts[0]["model_version"]) == (3, 3, "v0002")
    assert counts[0]["last_predicted_at"] == NOW  # naive or not, TIMESTAMP is a UTC instant
    assert bq.run_sql_file("prediction_counts", {"target_date": "2024-01-01"})["n_rows"][0].as_py() == 5
    # (Array parameters in a WHERE over a table fail on bqemulator 1.4: scalars only here.)
    rows = bq.query(f"SELECT COUNT(*) AS n FROM {bq.dataset}.predictions WHERE hour < @h AND model_version = @v",
                    {"h": 2, "v": "v0001"})
    assert rows["n"][0].as_py() == 2  # day 1, hours 0 and 1
    bq.load_arrow("predictions", predictions(DAY2, 2), mode="truncate")
    assert bq.query(f"SELECT COUNT(*) AS n FROM {bq.dataset}.predictions")["n"][0].as_py() == 2
    with pytest.raises(Exception, match="(?i)not found|does not exist"):
        bq.load_arrow("undeclared", predictions(DAY1, 1))  # loads never create tables
    assert "undeclared" not in _tables(bq)


def test_every_sql_file_runs_on_bigquery(bq_emulator, gcp_conn_id):
    # The profile's own dataset name (bqemulator unpatched took "prodml.predictions" for ML.PREDICT),
    # in a project of its own: the session's emulator is shared with the end-to-end tests.
    with _connect(gcp_conn_id, dataset="prodml", project="sql-files-test") as w:
        assert w.project == "sql-files-test"
        w.ensure_tables()
        predict.ensure_predictions_table(w, TRAFFIC)
        files = wh.sql_files()
        for path in [f for f in files if f.stem.startswith("create_")]:
            assert w.run_sql_file(path.stem) is None  # DDL returns no rows
        w.replace_partition("predictions", predictions(DAY2, 3), "target_date", DAY2)
        for path in [f for f in files if not f.stem.startswith("create_")]:
            needed = wh.parameter_names(path.read_text())
            params = SAMPLE_PARAMS.get(path.stem, {})
            assert needed <= set(params), f"add sample params {sorted(needed)} for {path.name} to SAMPLE_PARAMS"
            assert isinstance(w.run_sql_file(path.stem, params), pa.Table), path.name
        assert w.run_sql_file("prediction_counts", SAMPLE_PARAMS["prediction_counts"])["n_rows"][0].as_py() == 3
