"""ml.score_pipeline on real Beam, a real SavedModel (tests/ml/tiny_model.py) and a real DuckDB file.

Batch: `run(argv)` on FnApiRunner over a simulated forecast day. Streaming: the same pipeline fed by
a `TestStream` of JSON messages (the same rows, spread over three fixed windows, with bad messages
between them) on the bundle-based direct runner, the one local runner that runs unbounded input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ml import score_pipeline
from ml.config import PROJECT_ROOT
from ml.features import load_schema

SCHEMA = str(PROJECT_ROOT / "include" / "schemas" / "traffic.yaml")
DAY = "2026-11-02"
WINDOW_S = 60
START_S = 1_800_000_000  # event time of the first window's start (a multiple of WINDOW_S)
MAX_BATCH = 50
# Not scoreable: each reason names what is wrong.
BAD_MESSAGES = [
    (b'{"sensor_id": "S0001", "hour": ', "malformed JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b"\xff\xfe not utf-8", "malformed JSON"),
]
# Scoring metadata that differs between two runs of the same rows.
RUN_COLUMNS = {"run_id", "predicted_at", "window_end"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A tiny SavedModel whose scores spread over (0, 1) (small weights: no saturated sigmoid)."""
    out = tmp_path_factory.mktemp("tiny-model") / "model"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    code = "import sys; from tests.ml.tiny_model import build; build(sys.argv[1], sys.argv[2], scale=0.02)"
    proc = subprocess.run([sys.executable, "-c", code, str(out), SCHEMA], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(out)


@pytest.fixture(scope="module")
def forecast(tmp_path_factory) -> dict:
    """One simulated day of known-ahead rows (12 sensors x 24 hours) and the same rows as instances."""
    from ml import predict, simulate

    out = tmp_path_factory.mktemp("bucket")
    simulate.simulate(str(out), "2026-11-01", days=1, seed=5, sensors=12, forecast_days=1)
    uri = (out / "forecast").as_uri()
    table = predict.read_ahead_features(f"{uri}/dt={DAY}", load_schema(SCHEMA))
    return {"uri": uri, "instances": table.to_pylist()}


def scoring(model_dir: str) -> score_pipeline.Scoring:
    return score_pipeline.Scoring(model_dir=model_dir, schema_path=SCHEMA, model_version="v0001", run_id="test",
                                  threshold=0.5, max_batch=MAX_BATCH)


def read_table(path: Path, table: str) -> list[dict]:
    from ml import warehouse

    with warehouse.connect({"kind": "duckdb", "path": str(path), "dataset": "prodml"}) as wh:
        return wh.query(f"SELECT * FROM prodml.{table}").to_pylist()


def without_run_columns(rows: list[dict]) -> list[tuple]:
    return sorted(tuple(sorted((k, v) for k, v in row.items() if k not in RUN_COLUMNS)) for row in rows)


@pytest.fixture(scope="module")
def batch(model_dir, forecast, tmp_path_factory) -> dict:
    db = tmp_path_factory.mktemp("batch") / "warehouse.duckdb"
    argv = ["--model_dir", model_dir, "--model_version", "v0001", "--schema", SCHEMA, "--threshold", "0.5",
            "--run_id", "test", "--max_batch", str(MAX_BATCH), "--forecast_uri", forecast["uri"],
            "--target_date", DAY, "--duckdb", str(db)]
    first = score_pipeline.run(argv)
    rows_first = read_table(db, "predictions")
    summary = score_pipeline.run(argv)  # a rerun replaces the day's partition
    return {"summary": summary, "first": first, "rows_first": rows_first, "rows": read_table(db, "predictions")}


def messages(instances: list[dict]) -> list[list]:
    """The instances as Pub/Sub-like JSON messages, in three windows; the bad messages and one
    instance missing a field and one with a wrong type land in the second window."""
    third = len(instances) // 3
    windows = [[json.dumps(i).encode() for i in instances[k * third:(k + 1) * third if k < 2 else None]]
               for k in range(3)]
    missing = dict(instances[0])
    del missing["road_type"]
    wrong_type = {**instances[1], "hour": "noon"}
    windows[1][5:5] = [bad for bad, _ in BAD_MESSAGES] + [json.dumps(missing).encode(), json.dumps(wrong_type).encode()]
    return windows


@pytest.fixture(scope="module")
def streaming(model_dir, forecast, tmp_path_factory) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms.window import TimestampedValue

    db = tmp_path_factory.mktemp("streaming") / "warehouse.duckdb"
    windows = messages(forecast["instances"])
    stream = TestStream()
    for k, window in enumerate(windows):
        start = START_S + k * WINDOW_S
        stream.add_elements([TimestampedValue(m, start + i * WINDOW_S / (len(window) + 1)) for i, m in enumerate(window)])
        stream.advance_watermark_to(start + WINDOW_S)
    stream.advance_watermark_to_infinity()

    p = beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"]))
    score_pipeline.build(p, source=score_pipeline.Messages(read=stream, window_s=WINDOW_S), scoring=scoring(model_dir),
                         sink=score_pipeline.WarehouseSink({"kind": "duckdb", "path": str(db), "dataset": "prodml"}))
    result = p.run()
    result.wait_until_finish()
    return {"rows": read_table(db, "streaming_predictions"), "dead_letters": read_table(db, "streaming_dead_letters")}


@pytest.mark.slow  # a SavedModel built and run in-process (TensorFlow), two pipelines: ~25 s
def test_batch_and_streaming_give_identical_predictions(batch, streaming, forecast):
    n = len(forecast["instances"])
    assert len(batch["rows"]) == len(streaming["rows"]) == n
    # same keys, same scores: exact float equality, every other column equal too
    assert without_run_columns(batch["rows"]) == without_run_columns(streaming["rows"])
    scores = {row["score"] for row in batch["rows"]}
    assert len(scores) > n / 4, "a constant model would make this test vacuous"


@pytest.mark.slow  # a SavedModel built and run in-process (TensorFlow), two pipelines: ~25 s
def test_batch_rerun_replaces_the_day(batch, forecast):
    assert len(batch["rows_first"]) == len(batch["rows"]) == len(forecast["instances"])
    assert {str(row["target_date"]) for row in batch["rows"]} == {DAY}
    assert without_run_columns(batch["rows_first"]) == without_run_columns(batch["rows"])


@pytest.mark.slow  # a SavedModel built and run in-process (TensorFlow), two pipelines: ~25 s
def test_micro_batches_call_the_model_fewer_times_than_rows(batch, streaming, forecast):
    n = len(forecast["instances"])
    assert batch["summary"]["model_calls"] == -(-n // MAX_BATCH)  # Beam's counter (FnApiRunner)
    for rows in (batch["rows"], streaming["rows"]):
        # one timestamp per model call (the direct runner's streaming metrics keep only one bundle's)
        calls = Counter(row["predicted_at"] for row in rows)
        assert sum(calls.values()) == n
        assert len(calls) < n / 10 and max(calls.values()) == MAX_BATCH


@pytest.mark.slow  # a SavedModel built and run in-process (TensorFlow), two pipelines: ~25 s
def test_bad_messages_go_to_dead_letters_with_the_reason(streaming):
    reasons = sorted(row["reason"] for row in streaming["dead_letters"])
    expected = sorted([r for _, r in BAD_MESSAGES] + ["missing field(s): road_type", "hour: 'noon' is not of type int"])
    assert len(reasons) == len(expected)
    for reason, want in zip(reasons, expected, strict=True):
        assert reason.startswith(want), (reason, want)
    payloads = {row["payload"] for row in streaming["dead_letters"]}
    assert BAD_MESSAGES[0][0].decode() in payloads


@pytest.mark.slow  # a SavedModel built and run in-process (TensorFlow), two pipelines: ~25 s
def test_each_window_is_appended_with_its_end(streaming):
    ends = {row["window_end"].timestamp() for row in streaming["rows"]}
    assert ends == {START_S + (k + 1) * WINDOW_S for k in range(3)}
    assert {row["window_end"].timestamp() for row in streaming["dead_letters"]} == {START_S + 2 * WINDOW_S}


@pytest.mark.parametrize(("change", "reason"), [
    (lambda i: i.pop("sensor_id"), "missing field(s): sensor_id"),
    (lambda i: i.update(sensor_id=None), "sensor_id: a key cannot be null"),
    (lambda i: i.update(hour=True), "hour: True is not of type int"),
    (lambda i: i.update(hour=2**63), "hour: 9223372036854775808 is not of type int"),
    (lambda i: i.update(date="tomorrow"), "date: 'tomorrow' is not a date (YYYY-MM-DD)"),
    (lambda i: i.update(lanes=None), None),  # a missing model input is imputed by the model, as in CSVs
    (lambda i: i.update(unknown_field=1), None),  # other fields are ignored
])
def test_instance_problem_names_what_is_wrong(forecast, change, reason):
    instance = dict(forecast["instances"][0])
    change(instance)
    assert score_pipeline.instance_problem(instance, load_schema(SCHEMA)) == reason


def test_the_batch_source_needs_the_days_files(tmp_path):
    import apache_beam as beam

    with pytest.raises(FileNotFoundError, match="was the day published"):
        score_pipeline.build(beam.Pipeline(), source=score_pipeline.ForecastDay((tmp_path / "forecast").as_uri(), DAY),
                             scoring=scoring("unused: no model is loaded to build the graph"),
                             sink=score_pipeline.BigQuerySink("p:d"))
