"""B1 input pipeline: ml.trainer.make_dataset (TFRecord shards, parallel interleave, batch then
parse_example, map AUTOTUNE, cache, prefetch) against a naive per-row Python feed (pandas rows →
tf.data.Dataset.from_generator → batch) and against tf.data on the CSVs (TextLineDataset + batched
decode_csv). Also batch-then-parse vs parse-then-batch, and the cached second epoch vs the first.

Every pipeline yields what the trainer consumes: batches of ({feature: (n, 1) tensor}, label),
and one epoch is a full pass drawn batch by batch, as ml.trainer.InputWaitMonitor does. All
pipelines run the trainer's settings (batch 256, shuffle=True). The TFRecords (one shard per
landed day) are written once by the transform's functions (read_csv, clean, serialize_examples)
and cached under benchmarks/.data.

    python -m benchmarks.input_pipeline [--rows 1000000] [--naive-rows 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.common import DATA, SCHEMA, figure, print_table, simulated, write_result

BATCH = 256


def _write_shard(args) -> int:
    """One landed CSV → one TFRecord shard of all its (clean) rows, with the transform's functions."""
    csv_path, out_path = args
    import tensorflow as tf

    from ml import features as F
    from ml import transform as T

    schema = F.load_schema(SCHEMA)
    table, _ = T.clean(T.read_csv(str(csv_path), schema), schema)
    tmp = f"{out_path}.tmp"
    with tf.io.TFRecordWriter(tmp) as writer:
        for record in T.serialize_examples(table, schema):
            writer.write(record)
    os.replace(tmp, out_path)
    return table.num_rows


def tfrecords(sim: dict) -> dict:
    folder = DATA / f"tfrecords-{sim['folder'].name}"
    done = folder / "_DONE"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [(p, folder / f"part-{i:05d}.tfrecord") for i, p in enumerate(sim["landing_files"])]
        workers = max(1, min(len(jobs), os.cpu_count() or 1))
        with ProcessPoolExecutor(workers) as pool:
            rows = sum(pool.map(_write_shard, jobs))
        done.write_text(f"{rows}\n")
    return {"pattern": str(folder / "part-*.tfrecord"), "rows": int(done.read_text())}


def epoch(ds) -> tuple[float, int]:
    """Seconds to draw every batch (as the trainer's monitor does) and the rows seen."""
    rows = 0
    t0 = time.perf_counter()
    for _, y in ds:
        rows += int(y.shape[0])
    return time.perf_counter() - t0, rows


def parse_then_batch(pattern: str, schema, batch_size: int, shuffle: bool):
    """make_dataset with one change: parse_single_example per record, then batch."""
    import tensorflow as tf

    from ml import features as F

    spec = F.feature_spec(schema)
    files = tf.data.Dataset.list_files(pattern, shuffle=shuffle, seed=7)
    ds = files.interleave(tf.data.TFRecordDataset, cycle_length=4,
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    if shuffle:
        ds = ds.shuffle(20_000, seed=7)
    ds = ds.map(lambda r: tf.io.parse_single_example(r, spec), num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    ds = ds.map(lambda d: (d, d.pop(schema.label)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def csv_dataset(files: list[Path], schema, batch_size: int, shuffle: bool):
    """tf.data on the landed CSVs: lines interleaved over files, batched, decode_csv on batches."""
    import tensorflow as tf

    from ml import features as F

    spec = F.feature_spec(schema)
    header = files[0].open().readline().strip().split(",")
    cols = sorted(header.index(name) for name in spec)
    names = [header[i] for i in cols]
    defaults = [tf.reshape(tf.constant(spec[n].default_value, spec[n].dtype), [1]) for n in names]

    def decode(lines):
        values = tf.io.decode_csv(lines, record_defaults=defaults, select_cols=cols)
        d = {n: tf.reshape(v, (-1, 1)) for n, v in zip(names, values, strict=True)}
        return d, d.pop(schema.label)

    ds = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    ds = ds.interleave(lambda f: tf.data.TextLineDataset(f).skip(1), cycle_length=4,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    if shuffle:
        ds = ds.shuffle(20_000, seed=7)
    return ds.batch(batch_size).map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def naive_feed(files: list[Path], schema, batch_size: int, max_rows: int):
    """The naive way: pandas reads the CSVs, a Python generator yields one row dict at a time
    (missing values made NaN / "" by hand), tf.data batches them."""
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    from ml import features as F

    spec = F.feature_spec(schema)
    names = list(spec)

    def rows():
        left = max_rows
        for path in files:
            df = pd.read_csv(path, nrows=left)
            for record in df.to_dict("records"):
                out = {}
                for n in names:
                    v = record[n]
                    if spec[n].dtype == tf.string:
                        out[n] = [b"" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).encode()]
                    elif spec[n].dtype == tf.float32:
                        out[n] = [float(v)]
                    else:
                        out[n] = [int(v)]
                label = out.pop(schema.label)
                yield out, label
            left -= len(df)
            if left <= 0:
                return

    signature = ({n: tf.TensorSpec((1,), spec[n].dtype) for n in names if n != schema.label},
                 tf.TensorSpec((1,), tf.int64))
    return tf.data.Dataset.from_generator(rows, output_signature=signature).batch(batch_size).prefetch(2)


def run(rows: int = 1_000_000, naive_rows: int = 200_000, repeat: int = 3) -> dict:
    import tensorflow as tf  # noqa: F401  (imported before timing)

    from ml import features as F
    from ml.trainer import make_dataset

    schema = F.load_schema(SCHEMA)
    sim = simulated(rows)
    t0 = time.perf_counter()
    rec = tfrecords(sim)
    prep_s = time.perf_counter() - t0
    n = rec["rows"]
    naive_rows = min(naive_rows, n)

    def med(fn):
        samples = [fn() for _ in range(repeat)]
        for _, seen in samples:
            if seen != expect[0]:
                raise AssertionError(f"pipeline saw {seen} rows, expected {expect[0]}")
        return statistics.median(s for s, _ in samples), [round(s, 3) for s, _ in samples]

    expect = [n]
    first, second = [], []
    for _ in range(repeat):  # a fresh make_dataset each time: epoch 1 fills the cache, epoch 2 reads it
        ds = make_dataset(rec["pattern"], schema, BATCH, shuffle=True, cache=True)
        for bucket in (first, second):
            s, seen = epoch(ds)
            if seen != n:
                raise AssertionError(f"make_dataset saw {seen} rows, expected {n}")
            bucket.append(s)
    ours1, ours2 = statistics.median(first), statistics.median(second)
    nocache, nocache_all = med(lambda: epoch(make_dataset(rec["pattern"], schema, BATCH, shuffle=True, cache=False)))
    ptb, ptb_all = med(lambda: epoch(parse_then_batch(rec["pattern"], schema, BATCH, shuffle=True)))
    csv, csv_all = med(lambda: epoch(csv_dataset(sim["landing_files"], schema, BATCH, shuffle=True)))
    expect[0] = naive_rows
    naive, naive_all = med(lambda: epoch(naive_feed(sim["landing_files"], schema, BATCH, naive_rows)))

    figures = [
        figure("B1 make_dataset (1st epoch) vs naive per-row feed", naive, ours1, n, aim=5,
               baseline="pandas rows → Python generator → from_generator → batch", baseline_rows=naive_rows,
               ours="ml.trainer.make_dataset, 1st epoch (fills the cache)",
               note=None if naive_rows == n else f"naive feed timed on the first {naive_rows} rows, compared by rows/s"),
        figure("B1 make_dataset (1st epoch) vs tf.data on CSV", csv, ours1, n,
               baseline="TextLineDataset interleave → batch → decode_csv (AUTOTUNE) → prefetch",
               ours="ml.trainer.make_dataset, 1st epoch"),
        figure("B1 batch-then-parse vs parse-then-batch", ptb, nocache, n, aim=2,
               baseline="parse_single_example per record, then batch", ours="make_dataset(cache=False)"),
        figure("B1 cached 2nd epoch vs 1st", ours1, ours2, n, aim=2,
               baseline="make_dataset epoch 1", ours="make_dataset epoch 2 (from cache)"),
    ]
    result = {"rows": n, "sensors": sim["sensors"], "days": sim["days"], "shards": len(sim["landing_files"]),
              "batch_size": BATCH, "repeat": repeat, "naive_rows": naive_rows, "prep_s": round(prep_s, 2),
              "epoch_s": {"make_dataset_epoch1": [round(s, 3) for s in first],
                          "make_dataset_epoch2": [round(s, 3) for s in second],
                          "make_dataset_nocache": nocache_all, "parse_then_batch": ptb_all, "csv": csv_all,
                          "naive": naive_all},
              "figures": figures}
    print_table(f"B1 input pipeline ({n} rows, {len(sim['landing_files'])} shards, batch {BATCH}, "
                f"median of {repeat})", figures)
    write_result("input_pipeline", result)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    return run(args.rows, args.naive_rows, args.repeat)


if __name__ == "__main__":
    main()
