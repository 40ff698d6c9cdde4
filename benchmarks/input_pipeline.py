"""B1 input pipeline: ml.trainer.make_dataset (TFRecord shards read in chunks, parallel
interleave, parse_example on whole chunks, cache, per-epoch shuffle of the cached chunks, rebatch,
prefetch) against a naive per-row Python feed (pandas rows → per-row loop → NumPy batches) and
against tf.data on the CSVs (TextLineDataset + batched decode_csv). Also batch-then-parse vs
parse-then-batch, and the cached second epoch vs the first.

Every pipeline yields what the trainer consumes: batches of ({feature: (n, 1) tensor}, label),
and one epoch is a full pass drawn batch by batch. All pipelines run the trainer's settings
(batch 256, shuffle=True); make_dataset runs as the trainer reads it (blocks of STEPS_PER_DRAW
batches, split by ml.trainer.split_blocks). The TFRecords (4 shards per landed day) are written once by the
transform's functions (read_csv, clean, ml.tfrecords) and cached under benchmarks/.data.

The training limit: a full training run (the trainer's model, loop and InputWaitMonitor, 5 epochs
as `ml.trainer` defaults to) fed by make_dataset from the TFRecords, against the same run fed from
tensors already in memory (parsed and batched before the clock starts), two runs of each in
ABBA order, medians. Aim: within 1.2x, with the trainer's input-wait share under 5 %.

    python -m benchmarks.input_pipeline [--rows 240000] [--naive-rows 50000] [--repeat 3] [--slow-repeat 1]
        [--epochs 5]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.common import DATA, SCHEMA, figure, print_table, simulated, write_result

BATCH = 256


SHARDS_PER_FILE = 4


def _write_shards(args) -> tuple[int, dict]:
    """One landed CSV → SHARDS_PER_FILE TFRecord shards of its (clean) rows, with the transform's
    functions; returns the rows and the partial statistics."""
    csv_path, out_prefix = args
    import pyarrow as pa

    from ml import features as F
    from ml import tfrecords
    from ml import transform as T

    schema = F.load_schema(SCHEMA)
    table, _ = T.clean(T.read_csv(str(csv_path), schema), schema)
    records = tfrecords.serialize(table, schema)
    for shard in range(SHARDS_PER_FILE):
        out_path = f"{out_prefix}-{shard}.tfrecord"
        Path(f"{out_path}.tmp").write_bytes(tfrecords.frame(records.take(
            pa.array(range(shard, len(records), SHARDS_PER_FILE)))))
        os.replace(f"{out_path}.tmp", out_path)
    return table.num_rows, T.partial_stats(table, schema)


def tfrecords(sim: dict) -> dict:
    from ml import features as F
    from ml import transform as T

    folder = DATA / f"tfrecords-v2-{sim['folder'].name}"
    done = folder / "_DONE"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [(p, folder / f"part-{i:05d}") for i, p in enumerate(sim["landing_files"])]
        workers = max(1, min(len(jobs), os.cpu_count() or 1))
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_write_shards, jobs))
        stats = T.finalize_stats(T.merge_stats(p for _, p in results), F.load_schema(SCHEMA))
        (folder / "stats.json").write_text(json.dumps(stats))
        done.write_text(f"{sum(n for n, _ in results)}\n")
    return {"pattern": str(folder / "part-*.tfrecord"), "rows": int(done.read_text()),
            "shards": len(list(folder.glob("part-*.tfrecord"))),
            "stats": json.loads((folder / "stats.json").read_text())}


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


class naive_feed:
    """The naive way: pandas reads the CSVs, a Python loop walks the rows one by one (missing values
    made NaN / "" by hand) and assembles NumPy batches (which Keras' train_on_batch accepts)."""

    def __init__(self, files: list[Path], schema, batch_size: int, max_rows: int):
        self.files, self.schema, self.batch_size, self.max_rows = files, schema, batch_size, max_rows

    def __iter__(self):
        import numpy as np
        import pandas as pd
        import tensorflow as tf

        from ml import features as F

        spec = F.feature_spec(self.schema)
        kinds = {n: ("s" if s.dtype == tf.string else "f" if s.dtype == tf.float32 else "i") for n, s in spec.items()}
        dtypes = {"s": object, "f": np.float32, "i": np.int64}
        label = self.schema.label
        cols = {n: [] for n in spec}
        left = self.max_rows
        for path in self.files:
            if left <= 0:
                break
            df = pd.read_csv(path, nrows=left)
            left -= len(df)
            for record in df.to_dict("records"):
                for n, kind in kinds.items():
                    v = record[n]
                    if kind == "s":
                        v = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                    elif kind == "f":
                        v = float(v)
                    else:
                        v = int(v)
                    cols[n].append(v)
                if len(cols[label]) == self.batch_size:
                    yield self._batch(cols, dtypes, kinds, label)
                    cols = {n: [] for n in spec}
        if cols[label]:
            yield self._batch(cols, dtypes, kinds, label)

    @staticmethod
    def _batch(cols, dtypes, kinds, label):
        import numpy as np

        x = {n: np.asarray(v, dtype=dtypes[kinds[n]]).reshape(-1, 1) for n, v in cols.items() if n != label}
        return x, np.asarray(cols[label], dtype=np.int64).reshape(-1, 1)


def in_memory_batches(pattern: str, schema, batch_size: int, epochs: int, seed: int = 7) -> list[list]:
    """Every epoch's batches as tensors already in memory (the training limit's feed): all records
    parsed once, then one permutation per epoch, gathered into (x, y) batches. Built untimed."""
    import numpy as np
    import tensorflow as tf

    from ml import features as F

    records = tf.concat(list(tf.data.TFRecordDataset(sorted(glob.glob(pattern))).batch(65_536)), axis=0)
    columns = tf.io.parse_example(records, F.feature_spec(schema))
    n = int(records.shape[0])
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        order = rng.permutation(n)
        batches = []
        for start in range(0, n, batch_size):
            idx = tf.constant(order[start:start + batch_size])
            x = {k: tf.gather(v, idx) for k, v in columns.items()}
            batches.append((x, x.pop(schema.label)))
        out.append(batches)
    return out


def training_limit(rec: dict, schema, epochs: int = 5, batch_size: int = BATCH, pairs: int = 2) -> dict:
    """A full training run (the trainer's model, loop and monitor) fed by make_dataset from the
    TFRecords, against the same run fed from tensors already in memory; `pairs` of each, in the
    order memory, tfrecords, tfrecords, memory, ... (drift on a shared machine falls on both),
    medians reported. Each model first takes one untimed step, so no run's time includes tracing."""
    import keras

    from ml.trainer import STEPS_PER_DRAW, InputWaitMonitor, build_model, make_dataset

    feeds = in_memory_batches(rec["pattern"], schema, batch_size, epochs)
    order = [("memory", "tfrecords"), ("tfrecords", "memory")] * pairs
    samples = {"memory": [], "tfrecords": []}
    for name in [n for pair in order[:pairs] for n in pair]:
        keras.utils.set_random_seed(7)
        model = build_model(schema, rec["stats"], [64, 32], 0.003)
        x, y = feeds[0][0]
        model.train_on_batch(x, y)
        monitor = InputWaitMonitor()
        t0 = time.perf_counter()
        if name == "memory":
            for batches in feeds:
                monitor.run_epoch(model, batches)
        else:
            ds = make_dataset(rec["pattern"], schema, batch_size, shuffle=True, steps_per_draw=STEPS_PER_DRAW)
            for _ in range(epochs):  # as ml.trainer._train runs it
                monitor.run_epoch(model, ds, batch_size=batch_size)
        seconds = time.perf_counter() - t0
        wait = sum(e["input_wait_s"] for e in monitor.epochs)
        step = sum(e["input_wait_s"] + e["compute_s"] for e in monitor.epochs)
        samples[name].append({"seconds": round(seconds, 3), "input_share": round(wait / step, 4),
                              "epoch_s": [round(e["input_wait_s"] + e["compute_s"], 3) for e in monitor.epochs],
                              "epoch_input_share": [e["input_share"] for e in monitor.epochs],
                              "steps": sum(e["steps"] for e in monitor.epochs), "auc": monitor.epochs[-1].get("auc")})
    runs = {}
    for name, runs_of in samples.items():
        middle = sorted(runs_of, key=lambda r: r["seconds"])[(len(runs_of) - 1) // 2]  # the median run
        runs[name] = {**middle, "seconds": round(statistics.median(r["seconds"] for r in runs_of), 3),
                      "input_share": round(statistics.median(r["input_share"] for r in runs_of), 4),
                      "all_seconds": [r["seconds"] for r in runs_of],
                      "all_input_shares": [r["input_share"] for r in runs_of]}
    return runs


def run(rows: int = 240_000, naive_rows: int = 50_000, repeat: int = 3, slow_repeat: int = 1,
        epochs: int = 5) -> dict:
    import tensorflow as tf  # noqa: F401  (imported before timing)

    from ml import features as F
    from ml.trainer import STEPS_PER_DRAW, make_dataset, split_blocks

    def ours(cache: bool):
        """make_dataset as the trainer reads it: blocks of batches, split back into batches."""
        return make_dataset(rec["pattern"], schema, BATCH, shuffle=True, cache=cache, steps_per_draw=STEPS_PER_DRAW)

    schema = F.load_schema(SCHEMA)
    sim = simulated(rows)
    t0 = time.perf_counter()
    rec = tfrecords(sim)
    prep_s = time.perf_counter() - t0
    n = rec["rows"]
    naive_rows = min(naive_rows, n)

    def med(fn):
        samples = [fn() for _ in range(slow_repeat)]
        for _, seen in samples:
            if seen != expect[0]:
                raise AssertionError(f"pipeline saw {seen} rows, expected {expect[0]}")
        return statistics.median(s for s, _ in samples), [round(s, 3) for s, _ in samples]

    expect = [n]
    first, second = [], []
    for _ in range(repeat):  # a fresh make_dataset each time: epoch 1 fills the cache, epoch 2 reads it
        ds = ours(cache=True)
        for bucket in (first, second):
            s, seen = epoch(split_blocks(ds, BATCH))
            if seen != n:
                raise AssertionError(f"make_dataset saw {seen} rows, expected {n}")
            bucket.append(s)
    ours1, ours2 = statistics.median(first), statistics.median(second)
    nocache, nocache_all = med(lambda: epoch(split_blocks(ours(cache=False), BATCH)))
    ptb, ptb_all = med(lambda: epoch(parse_then_batch(rec["pattern"], schema, BATCH, shuffle=True)))
    csv, csv_all = med(lambda: epoch(csv_dataset(sim["landing_files"], schema, BATCH, shuffle=True)))
    expect[0] = naive_rows
    naive, naive_all = med(lambda: epoch(naive_feed(sim["landing_files"], schema, BATCH, naive_rows)))

    limit = training_limit(rec, schema, epochs=epochs) if epochs else None

    figures = [
        figure("B1 make_dataset (1st epoch) vs naive per-row feed", naive, ours1, n, aim=5,
               baseline="pandas rows → per-row Python loop → NumPy batches", baseline_rows=naive_rows,
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
    if limit:
        mem, ours = limit["memory"], limit["tfrecords"]
        figures.append(figure(
            f"B1 training run ({epochs} epochs) via make_dataset vs from in-memory tensors", mem["seconds"],
            ours["seconds"], n * epochs, aim=round(1 / 1.2, 2),
            baseline="the trainer's loop fed tensors already in memory", ours="the trainer's loop fed by make_dataset",
            note=f"aim: within 1.2x of the in-memory run, i.e. ratio ≥ 0.83x; trainer's input-wait share "
                 f"{ours['input_share']:.1%} (aim < 5%; by epoch "
                 f"{', '.join(f'{x:.0%}' for x in ours['epoch_input_share'])})"))
    result = {"rows": n, "sensors": sim["sensors"], "days": sim["days"], "shards": rec["shards"],
              "batch_size": BATCH, "repeat": repeat, "slow_repeat": slow_repeat, "naive_rows": naive_rows, "prep_s": round(prep_s, 2),
              "epoch_s": {"make_dataset_epoch1": [round(s, 3) for s in first],
                          "make_dataset_epoch2": [round(s, 3) for s in second],
                          "make_dataset_nocache": nocache_all, "parse_then_batch": ptb_all, "csv": csv_all,
                          "naive": naive_all},
              "training_limit": limit, "input_share": limit and limit["tfrecords"]["input_share"],
              "input_share_met": limit and limit["tfrecords"]["input_share"] < 0.05,
              "figures": figures}
    print_table(f"B1 input pipeline ({n} rows, {rec['shards']} shards, batch {BATCH}; make_dataset median of "
                f"{repeat}, baselines of {slow_repeat})", figures)
    write_result("input_pipeline", result)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=240_000)
    parser.add_argument("--naive-rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the make_dataset epochs")
    parser.add_argument("--slow-repeat", type=int, default=1, help="repeats of the slower baselines")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the training-limit runs (0: skip them)")
    args = parser.parse_args(argv)
    return run(args.rows, args.naive_rows, args.repeat, args.slow_repeat, args.epochs)


if __name__ == "__main__":
    main()
