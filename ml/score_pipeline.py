"""Scoring pipeline: a SavedModel over the forecast files of a day (batch) or a stream of instances.

One `run(argv)` entry point (like Beam's wordcount.py). The source chooses the read and write steps:

- bounded, `--forecast_uri U --target_date D`: the day's known-ahead CSVs (`U/dt=D/*.csv`, as
  `ml.prediction_job` reads them) → the `predictions` partition of D is replaced (idempotent reruns);
- unbounded, `--subscription S`: Pub/Sub messages, one JSON instance each (a `TestStream` in the
  tests) → fixed windows; each window's scores are appended to `streaming_predictions`, and messages
  that cannot be scored (malformed JSON, a missing field, a wrong type) to `streaming_dead_letters`
  with the reason. A separate table: `predictions` is replaced per date by batch runs, so appended
  rows there would be wiped or doubled.

Both share one scoring step: `GroupIntoBatches` micro-batches instances per target date (within a
window when streaming), and `ScoreBatch` scores each batch with one model call through
`ml.predict.predict_table`, the serving-side scoring code; the SavedModel carries the transform, so
batch, streaming and the online service run the same graph. The model is loaded once per DoFn
instance (`setup`).

Sinks: the warehouse backend (`--duckdb PATH`, the local profile), or BigQuery through Beam's
`WriteToBigQuery` (`--bigquery_dataset PROJECT:DATASET`, on Dataflow: workers have no Airflow hook).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms import window as beam_window

from ml import features as F
from ml import predict, storage, warehouse

log = logging.getLogger(__name__)
DEAD_LETTER = "dead_letter"
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Scoring:
    """What scores: the model, its feature contract and the decision threshold."""
    model_dir: str
    schema_path: str
    model_version: str
    run_id: str
    threshold: float
    max_batch: int = 256  # instances per model call
    max_wait_s: float = 1.0  # streaming: a partial batch is scored after this long


@dataclass(frozen=True)
class ForecastDay:
    """Bounded source: the known-ahead CSVs of one target date."""
    forecast_uri: str
    target_date: str


@dataclass(frozen=True)
class Messages:
    """Unbounded source: a transform that yields message bytes (ReadFromPubSub; TestStream in tests)."""
    read: beam.PTransform
    window_s: int = 60


@dataclass(frozen=True)
class WarehouseSink:
    """The warehouse backend (`ml.warehouse.connect` section), written from the workers."""
    section: dict


@dataclass(frozen=True)
class BigQuerySink:
    """BigQuery tables of `project:dataset`, written by Beam's WriteToBigQuery."""
    dataset: str  # PROJECT:DATASET


def instance_columns(schema: F.Schema) -> list[str]:
    """What an instance must carry: the schema's keys, its partition column (the date predicted) and
    the model inputs. Other fields of a message are ignored."""
    if not schema.partition_column:
        raise F.SchemaError(f"{schema.path}: scoring needs a partition_column (the date each row predicts)")
    names = [*schema.keys, schema.partition_column, *(f.name for f in schema.model_inputs)]
    return list(dict.fromkeys(names))


def _fits(value, type_: str) -> bool:
    if isinstance(value, bool):  # JSON true/false are not numbers here
        return False
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "int":
        return isinstance(value, int) and INT64[0] <= value <= INT64[1]
    return isinstance(value, (int, float))


def instance_problem(instance, schema: F.Schema) -> str | None:
    """Why `instance` (a decoded message) cannot be scored, or None. Missing values (null) of model
    inputs are allowed, as empty CSV fields are: the model imputes them. Keys must be present."""
    if not isinstance(instance, dict):
        return f"not a JSON object but {type(instance).__name__}"
    columns = instance_columns(schema)
    missing = [c for c in columns if c not in instance]
    if missing:
        return f"missing field(s): {', '.join(missing)}"
    for name in columns:
        value = instance[name]
        if value is None:
            if name in schema.keys or name == schema.partition_column:
                return f"{name}: a key cannot be null"
            continue
        type_ = schema.feature(name).type
        if not _fits(value, type_):
            return f"{name}: {value!r} is not of type {type_}"
    try:
        dt.date.fromisoformat(instance[schema.partition_column])
    except ValueError:
        return f"{schema.partition_column}: {instance[schema.partition_column]!r} is not a date (YYYY-MM-DD)"
    return None


class ParseInstance(beam.DoFn):
    """Message bytes → an instance dict (its scoring columns), or a dead letter with the reason."""

    def __init__(self, schema_path: str):
        self.schema_path = schema_path
        self.dead_letters = Metrics.counter("prodml", "dead_letters")

    def setup(self):
        self.schema = F.load_schema(self.schema_path)
        self.columns = instance_columns(self.schema)

    def process(self, message: bytes):
        payload = message.decode("utf-8", errors="replace")
        try:
            instance = json.loads(payload)
        except ValueError as exc:  # JSONDecodeError is a ValueError
            problem = f"malformed JSON: {exc}"
        else:
            problem = instance_problem(instance, self.schema)
        if problem:
            self.dead_letters.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"payload": payload, "reason": problem})
            return
        yield {name: instance[name] for name in self.columns}


class ReadForecastFile(beam.DoFn):
    """One known-ahead CSV → its instances (the scoring columns), typed by the schema. A file of
    another date fails the run, as in `ml.prediction_job`."""

    def __init__(self, schema_path: str, target_date: str):
        self.schema_path = schema_path
        self.target_date = target_date

    def setup(self):
        self.schema = F.load_schema(self.schema_path)

    def process(self, path: str):
        table = F.read_csv_files([path], self.schema).select(instance_columns(self.schema))
        wrong_day = set(table.column(self.schema.partition_column).to_pylist()) - {self.target_date}
        if wrong_day:
            raise ValueError(f"{path}: rows of other dates than {self.target_date}: {sorted(wrong_day)}")
        yield from table.to_pylist()


class ScoreBatch(beam.DoFn):
    """A micro-batch of instances of one target date → prediction rows, with ONE model call."""

    def __init__(self, scoring: Scoring):
        self.scoring = scoring
        self.model_calls = Metrics.counter("prodml", "model_calls")
        self.batch_rows = Metrics.distribution("prodml", "batch_rows")

    def setup(self):
        self.model = predict.load_model(self.scoring.model_dir)
        self.schema = F.load_schema(self.scoring.schema_path)
        types = F.arrow_types(self.schema)
        self.input_schema = pa.schema([(name, types[name]) for name in instance_columns(self.schema)])

    def process(self, batch):
        sharded_key, instances = batch
        table = pa.Table.from_pylist(list(instances), schema=self.input_schema)
        rows = predict.predict_table(
            self.model, table, self.schema, target_date=sharded_key.key, model_version=self.scoring.model_version,
            run_id=self.scoring.run_id, threshold=self.scoring.threshold, batch_size=table.num_rows)
        self.model_calls.inc()
        self.batch_rows.update(table.num_rows)
        yield from rows.to_pylist()


class ScoreInstances(beam.PTransform):
    """Instances → prediction rows: micro-batches per target date (and window), one model call each."""

    def __init__(self, scoring: Scoring, streaming: bool):
        super().__init__()
        self.scoring = scoring
        self.streaming = streaming

    def expand(self, instances):
        partition_column = F.load_schema(self.scoring.schema_path).partition_column
        # A partial batch waits at most max_wait_s when streaming; a bounded input flushes at its end.
        wait = {"max_buffering_duration_secs": self.scoring.max_wait_s} if self.streaming else {}
        return (
            instances
            | "KeyByDate" >> beam.Map(lambda instance: (instance[partition_column], instance)).with_output_types(
                beam.typehints.KV[str, dict])  # a deterministic key coder: the batching is stateful
            | "MicroBatch" >> beam.GroupIntoBatches.WithShardedKey(self.scoring.max_batch, **wait)
            | "Score" >> beam.ParDo(ScoreBatch(self.scoring))
        )


class WithWindowEnd(beam.DoFn):
    """Stamp each row with the end of its window (when the windowed write covers it)."""

    def process(self, row, window=beam.DoFn.WindowParam):
        yield {**row, "window_end": window.end.to_utc_datetime(has_tz=True)}


@dataclass(frozen=True)
class StreamTable:
    """A table the streaming path appends to, declared once: DDL for the warehouse backend, schema
    and partitioning for WriteToBigQuery (day partitions on `partition_field`)."""
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, BigQuery type)
    partition_field: str

    def create_sql(self) -> str:
        """BigQuery-dialect DDL, `{dataset}` left for ml.warehouse to fill (as include/sql files)."""
        types = dict(self.columns)
        partition = self.partition_field if types[self.partition_field] == "DATE" else f"DATE({self.partition_field})"
        body = ",\n".join(f"  {name} {kind}" for name, kind in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {{dataset}}.{self.name} (\n{body}\n)\nPARTITION BY {partition}"

    def bigquery_schema(self) -> dict:
        return {"fields": [{"name": name, "type": kind, "mode": "NULLABLE"} for name, kind in self.columns]}


def streaming_predictions_table(schema: F.Schema) -> StreamTable:
    """The columns of `predictions` (ml.predict) and the end of the window they were appended in."""
    return StreamTable("streaming_predictions", (*predict.predictions_columns(schema), ("window_end", "TIMESTAMP")),
                       "target_date")


DEAD_LETTERS_TABLE = StreamTable("streaming_dead_letters",
                                 (("payload", "STRING"), ("reason", "STRING"), ("window_end", "TIMESTAMP")),
                                 "window_end")


class WriteRows(beam.DoFn):
    """(key, rows) → one warehouse write into `table` (created by `create_sql` if missing): replace
    the `partition_column = key` partition, or (no partition column) append the rows."""

    def __init__(self, section: dict, table: str, create_sql: str, partition_column: str | None = None):
        self.section = section
        self.table = table
        self.create_sql = create_sql
        self.partition_column = partition_column

    def process(self, element):
        key, rows = element
        rows = pa.Table.from_pylist(list(rows))
        wh = warehouse.connect(self.section)
        try:
            wh.query(warehouse.render(self.create_sql, wh.dataset))
            if self.partition_column:
                wh.replace_partition(self.table, rows, self.partition_column, key)
            else:
                wh.load_arrow(self.table, rows)
        finally:
            wh.close()
        yield {"table": self.table, "key": key, "rows": rows.num_rows}


def bigquery_row(row: dict) -> dict:
    """A row as BigQuery's JSON API takes it (dates and timestamps as ISO strings)."""
    return {k: v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for k, v in row.items()}


def write_day(predictions, sink, schema: F.Schema, target_date: str):
    """Bounded: the day's rows replace its `predictions` partition."""
    if isinstance(sink, BigQuerySink):
        # The partition decorator with WRITE_TRUNCATE replaces exactly that day's partition; the
        # table exists (ml.predict.ensure_predictions_table, run by the batch_prediction DAG).
        return (predictions
                | "AsBigQueryRows" >> beam.Map(bigquery_row)
                | "WriteDay" >> beam.io.WriteToBigQuery(
                    f"{sink.dataset}.predictions${target_date.replace('-', '')}",
                    method=beam.io.WriteToBigQuery.Method.FILE_LOADS,
                    create_disposition=beam.io.BigQueryDisposition.CREATE_NEVER,
                    write_disposition=beam.io.BigQueryDisposition.WRITE_TRUNCATE))
    return (predictions
            | "KeyByTargetDate" >> beam.WithKeys(lambda row: row["target_date"].isoformat())
            | "GatherDay" >> beam.GroupByKey()
            | "ReplaceDay" >> beam.ParDo(WriteRows(sink.section, "predictions", predict.predictions_ddl(schema),
                                                   partition_column="target_date")))


def append_windows(rows, sink, table: StreamTable):
    """Unbounded: each window's rows go to `table` once the window closes (the warehouse backend:
    one append per window), or as they come (BigQuery: streaming inserts; the table is created if
    missing)."""
    stamped = rows | f"WindowEnd_{table.name}" >> beam.ParDo(WithWindowEnd())
    if isinstance(sink, BigQuerySink):
        return (stamped
                | f"AsBigQueryRows_{table.name}" >> beam.Map(bigquery_row)
                | f"Append_{table.name}" >> beam.io.WriteToBigQuery(
                    f"{sink.dataset}.{table.name}", schema=table.bigquery_schema(),
                    additional_bq_parameters={"timePartitioning": {"type": "DAY", "field": table.partition_field}},
                    method=beam.io.WriteToBigQuery.Method.STREAMING_INSERTS,
                    create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
                    write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND))
    return (stamped
            | f"Key_{table.name}" >> beam.WithKeys(lambda row: row["window_end"].isoformat())
            | f"GatherWindow_{table.name}" >> beam.GroupByKey()
            | f"Append_{table.name}" >> beam.ParDo(WriteRows(sink.section, table.name, table.create_sql())))


def build(p, *, source: ForecastDay | Messages, scoring: Scoring, sink: WarehouseSink | BigQuerySink) -> dict:
    """The pipeline on `p`; its predictions and dead letters (PCollections of dicts) for inspection."""
    streaming = isinstance(source, Messages)
    if streaming:
        parsed = (p
                  | "Read" >> source.read
                  | "FixedWindows" >> beam.WindowInto(beam_window.FixedWindows(source.window_s))
                  | "Parse" >> beam.ParDo(ParseInstance(scoring.schema_path)).with_outputs(
                      DEAD_LETTER, main="instances"))
        instances, dead_letters = parsed.instances, parsed[DEAD_LETTER]
    else:
        day = storage.join(source.forecast_uri, f"dt={source.target_date}")
        files = storage.glob(storage.join(day, "*.csv"))
        if not files:
            raise FileNotFoundError(f"no known-ahead feature file under {day}: was the day published?")
        instances = (p
                     | "ListFiles" >> beam.Create(files)
                     | "ReadFile" >> beam.ParDo(ReadForecastFile(scoring.schema_path, source.target_date)))
        dead_letters = None
    predictions = instances | "ScoreInstances" >> ScoreInstances(scoring, streaming)
    schema = F.load_schema(scoring.schema_path)
    if streaming:
        append_windows(predictions, sink, streaming_predictions_table(schema))
        append_windows(dead_letters, sink, DEAD_LETTERS_TABLE)
    else:
        write_day(predictions, sink, schema, source.target_date)
    return {"predictions": predictions, "dead_letters": dead_letters}


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="the SavedModel (a registry version's path)")
    parser.add_argument("--model_version", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--threshold", type=float, required=True, help="score at or above: predicted positive")
    parser.add_argument("--run_id", default="manual")
    parser.add_argument("--max_batch", type=int, default=256, help="instances per model call")
    parser.add_argument("--max_wait_s", type=float, default=1.0, help="streaming: longest wait for a full batch")
    read = parser.add_mutually_exclusive_group(required=True)
    read.add_argument("--forecast_uri", help="batch: forecast root; reads <forecast_uri>/dt=<target_date>/*.csv")
    read.add_argument("--subscription", help="streaming: projects/P/subscriptions/S (one JSON instance per message)")
    parser.add_argument("--target_date", help="batch: the day to score (YYYY-MM-DD)")
    parser.add_argument("--window_s", type=int, default=60, help="streaming: fixed window of each warehouse write")
    write = parser.add_mutually_exclusive_group(required=True)
    write.add_argument("--duckdb", help="local warehouse file (the warehouse backend)")
    write.add_argument("--bigquery_dataset", help="PROJECT:DATASET, written with WriteToBigQuery")
    parser.add_argument("--dataset", default="prodml", help="with --duckdb: the warehouse dataset")
    args, beam_args = parser.parse_known_args(argv)
    if args.forecast_uri and not args.target_date:
        parser.error("--forecast_uri needs --target_date")
    return args, beam_args


def dataflow_streaming_argv(*, subscription: str, bigquery_dataset: str, model_dir: str, model_version: str,
                            schema_uri: str, threshold: float, project: str, region: str, package_uri: str,
                            options: dict, job_name: str = "prodml-streaming-scoring",
                            service_account: str | None = None, window_s: int = 60, max_batch: int = 256) -> list[str]:
    """The argv of `python -m ml.score_pipeline` as a Dataflow streaming job. As the transform's
    Dataflow jobs (`prodml_airflow.targets.Dataflow`): the workers install the ml wheel from the
    bucket (`package_uri`) and read the schema and the model there; `options` are the profile's
    Dataflow options (temp/staging locations, machine type, max workers)."""
    argv = [f"--subscription={subscription}", f"--bigquery_dataset={bigquery_dataset}", f"--model_dir={model_dir}",
            f"--model_version={model_version}", f"--schema={schema_uri}", f"--threshold={threshold}",
            f"--window_s={window_s}", f"--max_batch={max_batch}",
            "--runner=DataflowRunner", "--streaming", "--enable_streaming_engine", f"--project={project}",
            f"--region={region}", f"--job_name={job_name}", f"--extra_package={package_uri}",
            *(f"--{key}={value}" for key, value in options.items())]
    if service_account:
        argv.append(f"--service_account_email={service_account}")
    return argv


def run(argv: list[str] | None = None) -> dict:
    args, beam_args = parse_args(argv)
    options = PipelineOptions(beam_args, save_main_session=False)
    streaming = bool(args.subscription)
    if streaming:
        options.view_as(StandardOptions).streaming = True
    if not options.view_as(StandardOptions).runner:
        # FnApiRunner (pinned: DirectRunner downloads Prism) runs bounded pipelines only; the
        # bundle-based direct runner runs unbounded ones in this process.
        options.view_as(StandardOptions).runner = "BundleBasedDirectRunner" if streaming else "FnApiRunner"
    scoring = Scoring(model_dir=args.model_dir, schema_path=args.schema, model_version=args.model_version,
                      run_id=args.run_id, threshold=args.threshold, max_batch=args.max_batch,
                      max_wait_s=args.max_wait_s)
    if streaming:
        source = Messages(read=beam.io.ReadFromPubSub(subscription=args.subscription), window_s=args.window_s)
    else:
        source = ForecastDay(forecast_uri=args.forecast_uri, target_date=args.target_date)
    if args.duckdb:
        sink = WarehouseSink({"kind": "duckdb", "path": args.duckdb, "dataset": args.dataset})
    else:
        sink = BigQuerySink(args.bigquery_dataset)
    p = beam.Pipeline(options=options)
    build(p, source=source, scoring=scoring, sink=sink)
    result = p.run()
    summary = {"mode": "streaming" if streaming else "batch"}
    if streaming and options.view_as(StandardOptions).runner == "DataflowRunner":
        # a streaming job runs until it is drained or cancelled: launch it, do not wait
        return {**summary, "job_id": result.job_id(), "state": str(result.state)}
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]}
    summary = {**summary, "state": str(result.state), **counters}
    log.info("scoring pipeline: %s", summary)
    return summary


if __name__ == "__main__":
    from ml.errors import run_main

    run_main(run)
