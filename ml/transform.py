"""Beam transform: landed CSVs → cleaned raw features as sharded TFRecords + training statistics.

One `run(argv)` entry point (like Beam's wordcount.py), run unchanged by
`BeamRunPythonPipelineOperator` on FnApiRunner locally and on Dataflow in the gcp profile.

Work happens on Arrow batches (a whole CSV file per element, split into record batches), not
one Python dict per row: parsing, cleaning, the train/eval split and the partial statistics are
columnar. Only the final tf.train.Example serialisation is per row, because that is the format.

Outputs under --output:
  train/part-SSSSS-of-NNNNN.tfrecord, eval/part-...tfrecord   raw model inputs + label
  stats.json    vocabularies and mean/variance of the train split (adapts the model's layers)
  summary.json  row counts (in, dropped and why, train, eval)
"""

from __future__ import annotations

import argparse
import json
import logging

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from ml import features as F

log = logging.getLogger(__name__)
BATCH_ROWS = 8192


class TransformError(ValueError):
    pass


def read_csv(path: str, schema: F.Schema) -> pa.Table:
    """Read one landed CSV with the schema's types; a bad value names file, column and row."""
    try:
        return F.read_csv_files([path], schema, open_file=FileSystems.open)
    except ValueError as exc:  # names the file, the column and the row
        raise TransformError(str(exc)) from None


def clean(table: pa.Table, schema: F.Schema) -> tuple[pa.Table, dict]:
    """Drop rows that cannot train a model (missing or invalid label); keep raw features as they are
    (the model imputes/looks up itself, so cleaning here must not transform features)."""
    label = table.column(schema.label)
    valid = pc.and_(pc.is_valid(label), pc.is_in(label, value_set=pa.array(schema.label_values, pa.int64())))
    valid = pc.fill_null(valid, False)
    kept = table.filter(valid)
    return kept, {"rows_in": table.num_rows, "dropped_bad_label": table.num_rows - kept.num_rows}


def partial_stats(table: pa.Table, schema: F.Schema) -> dict:
    """Mergeable per-batch statistics for the preprocessing layers (sums, counts, value counts)."""
    out = {"numeric": {}, "counts": {}}
    for f in schema.model_inputs:
        col = table.column(f.name)
        if f.transform == "normalize":
            values = col.cast(pa.float64()).drop_null().to_numpy()
            values = values[~np.isnan(values)]
            out["numeric"][f.name] = [len(values), float(values.sum()), float((values**2).sum())]
        elif f.transform == "lookup" and not f.vocabulary:
            vc = pc.value_counts(col.drop_null())
            out["counts"][f.name] = {str(v["values"]): int(v["counts"]) for v in vc.to_pylist()}
    return out


def merge_stats(parts) -> dict:
    merged = {"numeric": {}, "counts": {}}
    for part in parts:
        for name, (n, s, ss) in part["numeric"].items():
            acc = merged["numeric"].setdefault(name, [0, 0.0, 0.0])
            acc[0] += n
            acc[1] += s
            acc[2] += ss
        for name, counts in part["counts"].items():
            acc = merged["counts"].setdefault(name, {})
            for value, c in counts.items():
                acc[value] = acc.get(value, 0) + c
    return merged


def finalize_stats(merged: dict, schema: F.Schema) -> dict:
    numeric = {}
    for name, (n, s, ss) in merged["numeric"].items():
        mean = s / n if n else 0.0
        numeric[name] = {"count": n, "mean": mean, "var": max(ss / n - mean * mean, 0.0) if n else 1.0}
    vocabulary = {}
    for f in schema.model_inputs:
        if f.transform == "lookup":
            if f.vocabulary:
                vocabulary[f.name] = list(f.vocabulary)
            else:  # most frequent first; ties by value for determinism
                counts = merged["counts"].get(f.name, {})
                vocabulary[f.name] = [v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"numeric": numeric, "vocabulary": vocabulary, "schema_hash": schema.digest}


def serialize_examples(table: pa.Table, schema: F.Schema) -> list[bytes]:
    """Raw model inputs + label → serialized tf.train.Example (nulls are left out, so the parse
    spec's default - NaN / OOV - reaches the model exactly as a missing serving value does)."""
    from tensorflow.core.example import example_pb2

    inputs = schema.model_inputs
    columns = {f.name: table.column(f.name).to_pylist() for f in inputs}
    labels = table.column(schema.label).to_pylist()
    out = []
    for i in range(table.num_rows):
        example = example_pb2.Example()
        feats = example.features.feature
        for f in inputs:
            value = columns[f.name][i]
            if value is None:
                continue
            if f.type == "string":
                feats[f.name].bytes_list.value.append(value.encode())
            elif f.transform == "normalize" or f.type == "float":
                feats[f.name].float_list.value.append(float(value))
            else:
                feats[f.name].int64_list.value.append(int(value))
        feats[schema.label].int64_list.value.append(int(labels[i]))
        out.append(example.SerializeToString())
    return out


class ProcessFile(beam.DoFn):
    """One CSV → Arrow batches tagged train/eval, with partial statistics of the train side."""

    def __init__(self, schema_path: str, eval_fraction: float):
        self.schema_path = schema_path
        self.eval_fraction = eval_fraction
        self.rows_in = beam.metrics.Metrics.counter("prodml", "rows_in")
        self.rows_dropped = beam.metrics.Metrics.counter("prodml", "rows_dropped_bad_label")

    def setup(self):
        self.schema = F.load_schema(self.schema_path)

    def process(self, path: str):
        table, counts = clean(read_csv(path, self.schema), self.schema)
        self.rows_in.inc(counts["rows_in"])
        self.rows_dropped.inc(counts["dropped_bad_label"])
        is_eval = F.split_bucket(table.column(self.schema.split_key).to_pylist(), self.eval_fraction)
        for split, mask in (("train", ~is_eval), ("eval", is_eval)):
            part = table.filter(pa.array(mask))
            for batch in part.to_batches(max_chunksize=BATCH_ROWS):
                yield beam.pvalue.TaggedOutput(split, pa.Table.from_batches([batch]))


def build_pipeline(p, input_files: list[str], output: str, schema_path: str, eval_fraction: float,
                   num_shards: int):
    schema = F.load_schema(schema_path)
    tables = (
        p
        | "ListFiles" >> beam.Create(input_files)
        | "ParseCleanSplit" >> beam.ParDo(ProcessFile(schema_path, eval_fraction)).with_outputs("train", "eval")
    )
    for split in ("train", "eval"):
        (
            tables[split]
            | f"Serialize{split}" >> beam.FlatMap(serialize_examples, schema)
            | f"Write{split}" >> beam.io.WriteToTFRecord(
                f"{output}/{split}/part", file_name_suffix=".tfrecord", num_shards=num_shards)
        )
        (
            tables[split]
            | f"Count{split}" >> beam.Map(lambda t: t.num_rows)
            | f"Sum{split}" >> beam.CombineGlobally(sum)
            | f"WriteCount{split}" >> beam.Map(_write_json, f"{output}/_count_{split}.json")
        )
    (
        tables["train"]
        | "PartialStats" >> beam.Map(partial_stats, schema)
        | "MergeStats" >> beam.CombineGlobally(merge_stats)
        | "FinalizeStats" >> beam.Map(finalize_stats, schema)
        | "WriteStats" >> beam.Map(_write_json, f"{output}/stats.json")
    )


def _write_json(payload, path: str):
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(payload, indent=1, sort_keys=True).encode())
    return path


def _read_json(path: str):
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def beam_path(uri: str) -> str:
    """Beam's FileSystems know local paths and gs://, not file:// URIs."""
    return uri[len("file://"):] if uri.startswith("file://") else uri


def expand_inputs(patterns: list[str]) -> list[str]:
    files = []
    for pattern in map(beam_path, patterns):
        matched = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
        if not matched:
            raise TransformError(f"no input files match {pattern}")
        files.extend(sorted(matched))
    return files


def run(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", action="append", required=True, help="file or glob; repeatable")
    parser.add_argument("--output", required=True, help="output folder URI")
    parser.add_argument("--schema", required=True)
    parser.add_argument("--eval_fraction", type=float, default=0.2)
    parser.add_argument("--num_shards", type=int, default=4)
    args, beam_args = parser.parse_known_args(argv)
    if not any(a.startswith("--runner") for a in beam_args):
        beam_args.append("--runner=FnApiRunner")  # DirectRunner downloads Prism: never default to it
    output = beam_path(args.output.rstrip("/"))
    files = expand_inputs(args.input)
    options = PipelineOptions(beam_args, save_main_session=False)
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, files, output, args.schema, args.eval_fraction, args.num_shards)
    summary = {
        "input_files": files,
        "train_rows": _read_json(f"{output}/_count_train.json"),
        "eval_rows": _read_json(f"{output}/_count_eval.json"),
        "stats": f"{output}/stats.json",
        "train_pattern": f"{output}/train/part-*.tfrecord",
        "eval_pattern": f"{output}/eval/part-*.tfrecord",
    }
    _write_json(summary, f"{output}/summary.json")
    log.info("transform done: %s", summary)
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=1))
