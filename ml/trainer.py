"""Trainer: Keras model over the shared transform, fed by a tf.data TFRecord pipeline.

`run(argv)` is the entry point for `python -m ml.trainer` (local subprocess) and unchanged for a
Vertex AI CustomJob (same module, same flags). Outputs under --output:

  model/            exported SavedModel: raw features in, probability out (serving graph)
  model/model.keras the Keras model, for warm starts of the next candidate
  model/embeddings/ the sensor embeddings for the TensorBoard projector (`ml.embeddings`)
  training.json     per-epoch loss/AUC, input-wait share, peak memory, strategy, and how the warm
                    start went ("warm_start": full | mapped | fallback, `ml.warm_start`)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from pathlib import Path

from ml import alerts, embeddings, warm_start
from ml.distribute import choose_strategy  # TPU / multi-worker / mirrored / default, from the environment

log = logging.getLogger(__name__)


SHUFFLE_CHUNK = 4_096  # rows read, parsed and cached together
SHUFFLE_CHUNKS = 4  # chunks whose order is shuffled together (the first batch waits for them)
SHUFFLE_WINDOW = 16_384  # rows permuted together: consecutive chunks after the chunk shuffle
STEPS_PER_DRAW = 64  # training batches drawn from tf.data at once


def make_dataset(pattern, schema, batch_size: int, shuffle: bool, cache: bool = True, seed: int = 7,
                 shuffle_chunk: int = SHUFFLE_CHUNK, shuffle_window: int = SHUFFLE_WINDOW,
                 steps_per_draw: int = 1):
    """`pattern`: a glob or a list of shard files. Parallel interleave over shards, each read in
    chunks of records → parse_example on whole chunks → cache → (shuffle) → batches → prefetch.

    The cache holds parsed examples and sits *before* the shuffle, so every epoch draws a new
    order from it: the chunks' order is shuffled, consecutive chunks are joined into windows
    of `shuffle_window` rows and each window's rows permuted (stateless shuffles seeded from
    `seed`, new each epoch: two epochs see different orders of the same examples, two runs with
    the same seed the same orders). Whole chunks, not single examples, go through the shuffle,
    so no per-example work is left in the epoch loop; `rebatch` cuts and joins without it.

    `steps_per_draw` > 1: each element is a block of that many batches (the last one may be
    short), for `InputWaitMonitor.run_epoch(..., batch_size=...)` to split: one draw from the
    iterator costs ~0.3 ms whatever its size, a training step on 2 cores a few ms."""
    import tensorflow as tf

    from ml import features as F

    spec = F.feature_spec(schema)
    block = batch_size * steps_per_draw
    chunk = shuffle_chunk if shuffle else block
    # Fixed parallelism instead of AUTOTUNE: tf.data's autotuning thread stalled the end of an
    # epoch (the iterator's teardown) for 1.5-3.6 s in some epochs on 2 busy cores; without it, never.
    parallel = max(2, len(os.sched_getaffinity(0)))
    files = tf.data.Dataset.list_files(pattern, shuffle=False)
    # Each shard is read in chunks (records batched inside the file's own dataset: a record never
    # crosses a thread on its own, which cost ~4 us each), several shards at once.
    ds = files.interleave(lambda f: tf.data.TFRecordDataset(f).batch(chunk), cycle_length=4,
                          num_parallel_calls=min(4, parallel), deterministic=True)
    ds = ds.map(lambda b: tf.io.parse_example(b, spec), num_parallel_calls=parallel)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(SHUFFLE_CHUNKS, seed=seed, reshuffle_each_iteration=True).rebatch(shuffle_window)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(_permute_rows, num_parallel_calls=parallel)
        ds = ds.rebatch(block)
    ds = ds.map(lambda d: (d, d.pop(schema.label))).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def split_blocks(blocks, batch_size: int):
    """Blocks of several batches (`make_dataset(..., steps_per_draw=k)`) → batches of `batch_size`:
    one `tf.split` per column and block."""
    import tensorflow as tf

    for x, y in blocks:
        n = int(y.shape[0])
        sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
        if len(sizes) <= 1:
            yield x, y
            continue
        columns = {name: tf.split(values, sizes) for name, values in x.items()}
        for i, labels in enumerate(tf.split(y, sizes)):
            yield {name: parts[i] for name, parts in columns.items()}, labels


def _permute_rows(columns: dict, seed):
    import tensorflow as tf

    n = tf.shape(next(iter(columns.values())))[0]
    order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=seed)
    return {name: tf.gather(values, order) for name, values in columns.items()}


def build_model(schema, stats: dict, hidden_units: list[int], learning_rate: float, name: str | None = None):
    """The classifier over the schema's transform; `name`: the Keras model's (default: the schema's)."""
    import keras

    from ml import features as F

    inputs, x = F.preprocessing(schema, stats)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
    output = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    model = keras.Model(inputs=inputs, outputs=output, name=name or schema.name)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    return model


class InputWaitMonitor:
    """Splits each epoch's wall time into waiting for the next batch vs computing the step —
    the course's I/O vs CPU diagnosis — by timing the iterator and the train step separately."""

    def __init__(self):
        self.epochs = []

    def run_epoch(self, model, dataset, batch_size: int | None = None):
        """One pass over `dataset`; with `batch_size`, its elements are blocks of batches (split
        here, inside the timed wait)."""
        wait = compute = 0.0
        iterator = iter(split_blocks(dataset, batch_size) if batch_size else dataset)
        logs = {}
        steps = 0
        while True:
            t0 = time.perf_counter()
            try:
                x, y = next(iterator)
            except StopIteration:  # the iterator's end is input time too
                wait += time.perf_counter() - t0
                break
            t1 = time.perf_counter()
            logs = model.train_on_batch(x, y, return_dict=True)
            t2 = time.perf_counter()
            wait += t1 - t0
            compute += t2 - t1
            steps += 1
        total = wait + compute
        record = {"steps": steps, "input_wait_s": round(wait, 4), "compute_s": round(compute, 4),
                  "input_share": round(wait / total, 4) if total else 0.0,
                  **{k: float(v) for k, v in logs.items()}}
        self.epochs.append(record)
        return record


def build_for_replicas(model, strategy, dataset) -> None:
    """Build the model's compile state from one local batch. Under a multi-replica strategy Keras
    builds it from the first distributed batch averaged over the replicas (`strategy.reduce("MEAN")`),
    which fails on string inputs (sensor ids, road types); once built, it skips that step."""
    x, y = next(iter(dataset.take(1)))
    with strategy.scope():
        model._symbolic_build(data_batch=(x, y, None))


def run(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Train the schema's binary classifier on TFRecords of raw features.")
    parser.add_argument("--train", required=True, help="TFRecord glob (train split)")
    parser.add_argument("--eval", required=True, help="TFRecord glob (eval split)")
    parser.add_argument("--stats", required=True, help="stats.json from the Beam transform")
    parser.add_argument("--schema", required=True)
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--learning_rate", type=float, default=0.003)
    parser.add_argument("--hidden_units", default="64,32")
    parser.add_argument("--warm_start", default="", help="champion's model.keras to start from")
    parser.add_argument("--model_name", default="", help="the Keras model's name (default: the schema's name)")
    parser.add_argument("--shuffle_labels", action="store_true",
                        help="train on permuted labels: a deliberately bad candidate for gate drills")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    import keras

    from ml import features as F
    from ml import storage

    keras.utils.set_random_seed(args.seed)
    schema = F.load_schema(args.schema)
    stats = json.loads(storage.read_text(args.stats))
    # Inputs are read from local disk and outputs written there, then published to `--output`
    # (the same folder on the local profile; the bucket on Vertex AI).
    with (storage.local_files(args.train) as train_files, storage.local_files(args.eval) as eval_files,
          storage.staged_output(args.output) as output):
        report = _train(args, schema, stats, train_files, eval_files, output)
    report["model_dir"] = storage.join(args.output, "model")
    report["keras_model"] = storage.join(args.output, "model", "model.keras")
    storage.write_text(storage.join(args.output, "training.json"), json.dumps(report, indent=1))
    log.info("training is %s: %.0f%% of step time waiting for input; peak RSS %.0f MB",
             report["bound"], 100 * report["input_share"], report["peak_rss_mb"])
    return report


def _train(args, schema, stats: dict, train_files: list, eval_files: list, output: Path) -> dict:
    import tensorflow as tf

    from ml import features as F

    if not train_files:
        raise FileNotFoundError(f"no training shards match {args.train}")
    strategy = choose_strategy()
    replicas = strategy.num_replicas_in_sync
    hidden = [int(u) for u in args.hidden_units.split(",") if u]
    with strategy.scope():
        model = build_model(schema, stats, hidden, args.learning_rate, name=args.model_name or None)
        warm = None
        if args.warm_start:  # the champion's weights, mapped by token where a vocabulary grew
            warm = warm_start.warm_start(model, args.warm_start, F.custom_objects())
            log.info("warm start: %s", warm)
            if warm["status"] == "fallback":  # never silently: the log line is what alert policies match
                alerts.raise_alert(None, "warning", "trainer.warm_start",
                                   f"warm start from the champion failed, training from scratch: {warm['reason']}",
                                   warm)

    shards = [str(f) for f in train_files]
    # One replica: blocks of batches (one iterator draw per STEPS_PER_DRAW steps). Several: each
    # global batch is split across the replicas by the strategy (synchronous all-reduce).
    train = make_dataset(shards, schema, args.batch_size, shuffle=True, seed=args.seed,
                         steps_per_draw=STEPS_PER_DRAW if replicas == 1 else 1)
    if args.shuffle_labels:
        train = train.map(lambda x, y: (x, tf.random.shuffle(y, seed=args.seed)))
    if replicas > 1:
        build_for_replicas(model, strategy, make_dataset(shards, schema, args.batch_size, shuffle=False, cache=False))
        train = strategy.experimental_distribute_dataset(train)
    evaluation = make_dataset([str(f) for f in eval_files], schema, args.batch_size, shuffle=False)
    monitor = InputWaitMonitor()
    for epoch in range(args.epochs):
        record = monitor.run_epoch(model, train, batch_size=args.batch_size if replicas == 1 else None)
        log.info("epoch %d: %s", epoch + 1, record)
    if replicas > 1:  # evaluate and export one plain copy: the SavedModel must not depend on the devices
        trained, model = model, build_model(schema, stats, hidden, args.learning_rate, name=model.name)
        model.set_weights(trained.get_weights())
    eval_logs = model.evaluate(evaluation, return_dict=True, verbose=0) if args.epochs else {}
    model.export(str(output / "model"), format="tf_saved_model", verbose=False)
    # The Keras file and the embeddings for the projector ride inside the SavedModel folder
    # (loaders ignore them), so one registered folder serves, warm-starts and is explored.
    model.save(output / "model" / "model.keras")
    projected = embeddings.export_projector(model, schema, stats, str(output / "model" / "embeddings"))

    input_share = sum(e["input_wait_s"] for e in monitor.epochs) / max(
        sum(e["input_wait_s"] + e["compute_s"] for e in monitor.epochs), 1e-9)
    report = {
        "epochs": monitor.epochs,
        "eval": {k: float(v) for k, v in eval_logs.items()},
        "input_share": round(input_share, 4),
        "bound": "input-bound" if input_share > 0.5 else "compute-bound",
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "embeddings": projected,
        "model_name": model.name,
        "warm_start": warm,
        "shuffled_labels": args.shuffle_labels,
    }
    return report


if __name__ == "__main__":
    from ml.errors import run_main

    run_main(run)
