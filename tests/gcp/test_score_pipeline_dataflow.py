"""The streaming scoring pipeline (ml.score_pipeline) as a Dataflow job, rendered and checked
without network: its argv from the gcp profile's Dataflow target (the same wheel, schema and
Dataflow options as the transform's jobs), read back by Beam's own options classes and the
pipeline's parser; and the BigQuery writes of the graph it builds from that argv."""

from __future__ import annotations

import pytest

import ml
from ml import score_pipeline
from ml.config import PROJECT_ROOT

BUCKET = "prodml-render-test"
PROJECT, REGION = "render-project", "europe-west4"
GS = f"gs://{BUCKET}"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/traffic-instances"
MODEL = f"{GS}/registry/versions/v0003/model"
SCHEMA = str(PROJECT_ROOT / "include" / "schemas" / "traffic.yaml")


@pytest.fixture
def dataflow(monkeypatch):
    """The gcp profile's Dataflow target (prodml_airflow.targets), as the transform's tasks get it."""
    from prodml_airflow.targets import Dataflow, transform_runner

    from ml.config import load

    for key, value in {"PRODML_BUCKET": BUCKET, "GCP_PROJECT": PROJECT, "GCP_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PRODML_BEAM_RUNNER", raising=False)
    target = transform_runner(load("gcp"))
    assert isinstance(target, Dataflow)
    return target


def streaming_argv(target) -> list[str]:
    return score_pipeline.dataflow_streaming_argv(
        subscription=SUBSCRIPTION, bigquery_dataset=f"{PROJECT}:prodml", model_dir=MODEL, model_version="v0003",
        schema_uri=target.schema_uri, threshold=0.1667, project=target.google.project, region=target.google.region,
        package_uri=target.package_uri, options=target.options, service_account="scorer@render-project.iam.gserviceaccount.com")


def test_dataflow_streaming_options(dataflow):
    from apache_beam.options.pipeline_options import (
        GoogleCloudOptions,
        PipelineOptions,
        SetupOptions,
        StandardOptions,
        WorkerOptions,
    )

    args, beam_args = score_pipeline.parse_args(streaming_argv(dataflow))
    # the pipeline's own arguments: Pub/Sub in, BigQuery out, the model and schema in the bucket
    assert args.subscription == SUBSCRIPTION and args.forecast_uri is None
    assert args.bigquery_dataset == f"{PROJECT}:prodml" and args.duckdb is None
    assert (args.model_dir, args.model_version, args.threshold) == (MODEL, "v0003", 0.1667)
    assert args.schema == f"{GS}/include/schemas/traffic.yaml"

    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    assert standard.runner == "DataflowRunner" and standard.streaming is True
    cloud = options.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region, cloud.job_name) == (PROJECT, REGION, "prodml-streaming-scoring")
    assert cloud.enable_streaming_engine is True
    assert (cloud.temp_location, cloud.staging_location) == (f"{GS}/dataflow/tmp", f"{GS}/dataflow/staging")
    assert cloud.service_account_email == "scorer@render-project.iam.gserviceaccount.com"
    # the same wheel as the transform's Dataflow jobs, not a source tree
    setup = options.view_as(SetupOptions)
    assert setup.extra_packages == [f"{GS}/dist/prodml-{ml.__version__}-py3-none-any.whl"] == [dataflow.package_uri]
    assert setup.setup_file is None
    workers = options.view_as(WorkerOptions)
    assert (workers.machine_type, workers.max_num_workers) == ("n2-standard-4", 20)


def write_transforms(pipeline) -> list:
    import apache_beam as beam
    from apache_beam.pipeline import PipelineVisitor

    found = []

    class Visitor(PipelineVisitor):
        def enter_composite_transform(self, node):
            if isinstance(node.transform, beam.io.WriteToBigQuery):
                found.append(node.transform)

    pipeline.visit(Visitor())
    return found


def test_the_streaming_graph_appends_to_bigquery(dataflow):
    """The graph `run` builds from that argv (not run): Pub/Sub → ... → two WriteToBigQuery
    appends, each creating its day-partitioned table with the schema's columns if missing."""
    import apache_beam as beam

    from ml import predict
    from ml.features import load_schema

    args, _ = score_pipeline.parse_args(streaming_argv(dataflow))
    scoring = score_pipeline.Scoring(model_dir=args.model_dir, schema_path=SCHEMA,  # the bucket copy is not here
                                     model_version=args.model_version, run_id="render", threshold=args.threshold)
    p = beam.Pipeline()
    source = score_pipeline.Messages(read=beam.io.ReadFromPubSub(subscription=args.subscription), window_s=args.window_s)
    score_pipeline.build(p, source=source, scoring=scoring, sink=score_pipeline.BigQuerySink(args.bigquery_dataset))

    writes = {str(w.table_reference.tableId): w for w in write_transforms(p)}
    assert set(writes) == {"streaming_predictions", "streaming_dead_letters"}
    predictions = writes["streaming_predictions"]
    assert predictions.method == beam.io.WriteToBigQuery.Method.STREAMING_INSERTS
    assert (predictions.table_reference.projectId, predictions.table_reference.datasetId) == (PROJECT, "prodml")
    assert predictions.create_disposition == beam.io.BigQueryDisposition.CREATE_IF_NEEDED
    assert predictions.write_disposition == beam.io.BigQueryDisposition.WRITE_APPEND
    # the table it would create, read by the BigQuery client's own types
    table = bigquery_table(predictions)
    columns = [(f.name, f.field_type) for f in table.schema]
    assert columns == [*predict.predictions_columns(load_schema(SCHEMA)), ("window_end", "TIMESTAMP")]
    assert (table.time_partitioning.type_, table.time_partitioning.field) == ("DAY", "target_date")
    dead = bigquery_table(writes["streaming_dead_letters"])
    assert [(f.name, f.field_type) for f in dead.schema] == [("payload", "STRING"), ("reason", "STRING"),
                                                             ("window_end", "TIMESTAMP")]
    assert dead.time_partitioning.field == "window_end"


def bigquery_table(write):
    """The table resource a WriteToBigQuery would create (CREATE_IF_NEEDED), as the client reads it."""
    from google.cloud import bigquery

    ref = write.table_reference
    return bigquery.Table.from_api_repr({
        "tableReference": {"projectId": ref.projectId, "datasetId": ref.datasetId, "tableId": ref.tableId},
        "schema": write.schema, **write.additional_bq_parameters})


def test_the_batch_graph_replaces_the_days_partition_in_bigquery(tmp_path):
    """Bounded source + BigQuery: one load job that truncates exactly the target date's partition
    (the table's partition decorator), into the existing predictions table."""
    import apache_beam as beam

    day = tmp_path / "forecast" / "dt=2026-11-02"
    day.mkdir(parents=True)
    (day / "part-00000.csv").write_text("sensor_id,date,hour\n")  # listed when the graph is built, read when run
    scoring = score_pipeline.Scoring(model_dir=MODEL, schema_path=SCHEMA, model_version="v0003", run_id="render",
                                     threshold=0.5)
    p = beam.Pipeline()
    score_pipeline.build(p, source=score_pipeline.ForecastDay((tmp_path / "forecast").as_uri(), "2026-11-02"),
                         scoring=scoring, sink=score_pipeline.BigQuerySink(f"{PROJECT}:prodml"))
    [write] = write_transforms(p)
    ref = write.table_reference
    assert (ref.projectId, ref.datasetId, ref.tableId) == (PROJECT, "prodml", "predictions$20261102")
    assert write.method == beam.io.WriteToBigQuery.Method.FILE_LOADS
    assert write.write_disposition == beam.io.BigQueryDisposition.WRITE_TRUNCATE
    assert write.create_disposition == beam.io.BigQueryDisposition.CREATE_NEVER
