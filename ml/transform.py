"""Beam transform: landed CSVs → cleaned raw features as sharded TFRecords + training statistics.

One `run(argv)` entry point (like Beam's wordcount.py), run unchanged by
`BeamRunPythonPipelineOperator` on FnApiRunner locally and on Dataflow in the gcp profile.

Work happens on Arrow batches (a whole CSV file per element, split into record batches), not
one Python dict per row: parsing, cleaning, the train/eval split, the partial statistics and the
tf.train.Example serialisation (`ml.tfrecords`: the protobuf wire format assembled column by
column) are columnar. Each batch is cut round-robin into one framed TFRecord piece per shard;
a shard's pieces are grouped (paths only) and concatenated into one file through Beam's
FileSystems, so no Beam element is a single row.

The split takes two passes over the files: the first counts rows per split bucket (the hash of
the schema's `split_key`, or of the whole row without one), the assignment step picks the eval
buckets balanced by rows (`ml.features.choose_eval_buckets`) and fails when the realised share is
far from `--eval_fraction`, the second pass splits by those buckets. Only bucket counts (1,000
numbers per file) cross between them; the CSVs are read again rather than held.

Outputs under --output:
  train/part-SSSSS-of-NNNNN.tfrecord, eval/part-...tfrecord   raw model inputs + label
  stats.json    vocabularies and mean/variance of the train split (adapts the model's layers; the
                observed values of hashed features name the rows of the exported embeddings)
  summary.json  row counts (in, dropped and why, train, eval), eval_share and the split
                (key, eval buckets: the rows whose `F.table_split_buckets` is one of them are eval)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import uuid

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from ml import features as F
from ml import tfrecords
from ml.errors import PermanentError, run_main

log = logging.getLogger(__name__)
BATCH_ROWS = 8192


class TransformError(PermanentError, ValueError):
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
        elif (f.transform == "lookup" and not f.vocabulary) or f.transform == "hash":
            # hashed features: the observed values name the embedding rows (ml.embeddings)
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
        if f.transform == "lookup" and f.vocabulary:
            vocabulary[f.name] = list(f.vocabulary)
        elif f.transform in ("lookup", "hash"):  # most frequent first; ties by value for determinism
            counts = merged["counts"].get(f.name, {})
            vocabulary[f.name] = [v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"numeric": numeric, "vocabulary": vocabulary, "schema_hash": schema.digest}


def serialize_examples(table: pa.Table, schema: F.Schema) -> list[bytes]:
    """Raw model inputs + label → serialized tf.train.Example per row (nulls are left out, so the
    parse spec's default - NaN / OOV - reaches the model exactly as a missing serving value does)."""
    return tfrecords.serialize(table, schema).to_pylist()


class CountBuckets(beam.DoFn):
    """First pass: one CSV → its clean rows per split bucket (an array of SPLIT_BUCKETS counts)."""

    def __init__(self, schema_path: str):
        self.schema_path = schema_path

    def setup(self):
        self.schema = F.load_schema(self.schema_path)

    def process(self, path: str):
        table, _ = clean(read_csv(path, self.schema), self.schema)
        yield np.bincount(F.table_split_buckets(table, self.schema), minlength=F.SPLIT_BUCKETS)


def add_counts(parts) -> np.ndarray:
    return sum(parts, np.zeros(F.SPLIT_BUCKETS, dtype=np.int64))


def assign_split(rows_per_bucket, schema: F.Schema, eval_fraction: float, tolerance: float) -> dict:
    """The eval buckets for all the files' rows, balanced by rows; F.SplitError (naming the key)
    when the best whole-key assignment is still outside the tolerance."""
    eval_buckets = F.choose_eval_buckets(rows_per_bucket, eval_fraction)
    share = F.check_eval_share(rows_per_bucket, eval_buckets, eval_fraction, tolerance, schema.split_key)
    log.info("split by %s: %d of %d buckets in eval, %.1f%% of %d rows", schema.split_key or "row hash",
             len(eval_buckets), F.SPLIT_BUCKETS, 100 * share, int(rows_per_bucket.sum()))
    return {"key": schema.split_key, "by": "key" if schema.split_key else "row hash",
            "eval_fraction": eval_fraction, "buckets": F.SPLIT_BUCKETS, "eval_buckets": eval_buckets}


class ProcessFile(beam.DoFn):
    """Second pass: one CSV → (split, Arrow batch) elements, plus one "counts" output: the file's
    row counts and the partial statistics of its train side. `assignment` (side input): `assign_split`'s."""

    def __init__(self, schema_path: str):
        self.schema_path = schema_path
        self.rows_in = beam.metrics.Metrics.counter("prodml", "rows_in")
        self.rows_dropped = beam.metrics.Metrics.counter("prodml", "rows_dropped_bad_label")

    def setup(self):
        self.schema = F.load_schema(self.schema_path)

    def process(self, path: str, assignment: dict):
        table, counts = clean(read_csv(path, self.schema), self.schema)
        self.rows_in.inc(counts["rows_in"])
        self.rows_dropped.inc(counts["dropped_bad_label"])
        in_eval = np.zeros(F.SPLIT_BUCKETS, dtype=bool)
        in_eval[assignment["eval_buckets"]] = True
        is_eval = in_eval[F.table_split_buckets(table, self.schema)]
        for split, mask in (("train", ~is_eval), ("eval", is_eval)):
            part = table.filter(pa.array(mask))
            counts[f"{split}_rows"] = part.num_rows
            if split == "train":
                counts["stats"] = partial_stats(part, self.schema)
            for batch in part.to_batches(max_chunksize=BATCH_ROWS):
                yield split, pa.Table.from_batches([batch])
        yield beam.pvalue.TaggedOutput("counts", counts)


class SerializeShards(beam.DoFn):
    """One (split, Arrow batch) → for each shard, its rows (dealt round-robin, so shards stay even
    however few batches a split has) framed as TFRecords and written as one piece file; emits
    ((split, shard), piece path). Only paths cross the shuffle, not the records: on FnApiRunner,
    moving the bytes through the GroupByKey cost as much as serializing them."""

    def __init__(self, schema_path: str, num_shards: int, output: str):
        self.schema_path = schema_path
        self.num_shards = num_shards
        self.output = output

    def setup(self):
        self.schema = F.load_schema(self.schema_path)

    def process(self, element):
        split, table = element
        records = tfrecords.serialize(table, self.schema)
        for shard in range(self.num_shards):
            part = records.take(pa.array(np.arange(shard, len(records), self.num_shards)))
            if len(part):
                blob = tfrecords.frame(part)
                # Named by content: a retried bundle rewrites the same piece, and the name orders it.
                path = f"{self.output}/{PIECES}/{split}-{shard:05d}-{piece_key(blob)}.tfrecord"
                with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                    handle.write(blob)
                yield (split, shard), path


PIECES = "_pieces"


def piece_key(blob: bytes) -> str:
    """A piece's place in its shard: a digest of its bytes (reruns give the same order)."""
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def write_shard(item, output: str, num_shards: int) -> str:
    """Concatenate one shard's pieces (in digest order: reruns give the same file) under a
    temporary name, rename it into place (a retried or failed bundle never leaves half a shard),
    then delete the pieces."""
    (split, shard), paths = item
    pieces = sorted(p for p in paths if p)
    path = f"{output}/{split}/part-{shard:05d}-of-{num_shards:05d}.tfrecord"
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        for piece in pieces:
            with FileSystems.open(piece, compression_type=CompressionTypes.UNCOMPRESSED) as source:
                handle.write(source.read())
    FileSystems.rename([tmp], [path])
    if pieces:
        FileSystems.delete(pieces)
    return path


def merge_counts(parts) -> dict:
    parts = list(parts)
    merged = {k: sum(p[k] for p in parts) for k in ("rows_in", "dropped_bad_label", "train_rows", "eval_rows")}
    merged["stats"] = merge_stats(p["stats"] for p in parts)
    return merged


def write_stats(counts: dict, output: str, schema: F.Schema, split: dict) -> None:
    """stats.json (what adapts the model's layers) and _counts.json (read back by `run`): the row
    counts, the realised eval share and the split that gave it."""
    _write_json(finalize_stats(counts["stats"], schema), f"{output}/stats.json")
    rows = counts["train_rows"] + counts["eval_rows"]
    _write_json({**{k: v for k, v in counts.items() if k != "stats"},
                 "eval_share": round(counts["eval_rows"] / rows, 4) if rows else 0.0, "split": split},
                f"{output}/_counts.json")


def build_pipeline(p, input_files: list[str], output: str, schema_path: str, eval_fraction: float,
                   num_shards: int, eval_share_tolerance: float = 2.0):
    schema = F.load_schema(schema_path)
    files = p | "ListFiles" >> beam.Create(input_files)
    split = beam.pvalue.AsSingleton(
        files
        | "CountBuckets" >> beam.ParDo(CountBuckets(schema_path))
        | "AddCounts" >> beam.CombineGlobally(add_counts)
        | "AssignSplit" >> beam.Map(assign_split, schema, eval_fraction, eval_share_tolerance)
    )
    batches = files | "ParseCleanSplit" >> beam.ParDo(ProcessFile(schema_path), split).with_outputs(
        "counts", main="batches")
    pieces = batches.batches | "Serialize" >> beam.ParDo(SerializeShards(schema_path, num_shards, output))
    # Every shard exists, even one that no batch reached (an empty file, as WriteToTFRecord wrote).
    every_shard = p | "AllShards" >> beam.Create([((split, shard), "") for split in ("train", "eval")
                                                   for shard in range(num_shards)])
    (
        (pieces, every_shard)
        | "Flatten" >> beam.Flatten()
        | "GroupShards" >> beam.GroupByKey()
        | "WriteShards" >> beam.Map(write_shard, output, num_shards)
    )
    (
        batches.counts
        | "MergeCounts" >> beam.CombineGlobally(merge_counts)
        | "WriteStats" >> beam.Map(write_stats, output, schema, split)
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
    parser.add_argument("--eval_share_tolerance", type=float, default=2.0,
                        help="fail when the realised eval share is outside eval_fraction / t .. eval_fraction * t "
                             "(inf: no check)")
    args, beam_args = parser.parse_known_args(argv)
    if args.eval_share_tolerance < 1:
        parser.error("--eval_share_tolerance is a factor >= 1 (2: half to twice the eval fraction)")
    if not any(a.startswith("--runner") for a in beam_args):
        beam_args.append("--runner=FnApiRunner")  # DirectRunner downloads Prism: never default to it
    output = beam_path(args.output.rstrip("/"))
    files = expand_inputs(args.input)
    options = PipelineOptions(beam_args, save_main_session=False)
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, files, output, args.schema, args.eval_fraction, args.num_shards,
                       args.eval_share_tolerance)
    if FileSystems.exists(f"{output}/{PIECES}"):  # the emptied folder (local; object stores have none)
        FileSystems.delete([f"{output}/{PIECES}"])
    summary = {
        "input_files": files,
        **_read_json(f"{output}/_counts.json"),
        "stats": f"{output}/stats.json",
        "train_pattern": f"{output}/train/part-*.tfrecord",
        "eval_pattern": f"{output}/eval/part-*.tfrecord",
    }
    _write_json(summary, f"{output}/summary.json")
    log.info("transform done: %s", summary)
    return summary


if __name__ == "__main__":
    run_main(run)
