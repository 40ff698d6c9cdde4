"""ml.trainer's input path: the cache sits before the shuffle, so each epoch is a new order of the
same examples; blocks of batches split back into the trainer's batches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from ml import features as F
from ml import tfrecords, trainer

SCHEMA = """
name: ids
label: {name: y, values: [0, 1]}
features:
  - {name: id, type: int, kind: numeric, known: ahead, transform: normalize}
  - {name: code, type: string, kind: categorical, known: ahead, transform: hash, hash_bins: 8}
"""
ROWS = 1000


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """1000 examples with unique ids (and labels id % 2) in 3 TFRecord shards."""
    folder = tmp_path_factory.mktemp("shards")
    (folder / "schema.yaml").write_text(SCHEMA)
    schema = F.load_schema(str(folder / "schema.yaml"))
    table = pa.table({"id": pa.array(range(ROWS), pa.int64()), "code": [f"c{i % 7}" for i in range(ROWS)],
                      "y": pa.array([i % 2 for i in range(ROWS)], pa.int64())})
    records = tfrecords.serialize(table, schema)
    for shard in range(3):
        (folder / f"part-{shard}.tfrecord").write_bytes(tfrecords.frame(records[shard::3]))
    return str(folder / "part-*.tfrecord"), schema


def epoch_ids(dataset) -> list[int]:
    ids = []
    for x, y in dataset:
        batch = x["id"].numpy().ravel().astype(int)
        assert (y.numpy().ravel() == batch % 2).all()  # labels travel with their rows
        ids.extend(batch.tolist())
    return ids


@pytest.mark.parametrize("chunk", [trainer.SHUFFLE_CHUNK, 64])  # one chunk; many chunks and windows
def test_every_epoch_is_a_new_order_of_the_same_examples(shards, chunk):
    pattern, schema = shards
    ds = trainer.make_dataset(pattern, schema, 32, shuffle=True, shuffle_chunk=chunk, shuffle_window=2 * chunk)
    epochs = [epoch_ids(ds) for _ in range(3)]
    for ids in epochs:
        assert Counter(ids) == Counter(range(ROWS))  # each example exactly once
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]  # the cache no longer replays epoch 1
    # the same seed gives the same orders (a rerun trains on the same sequence)
    again = trainer.make_dataset(pattern, schema, 32, shuffle=True, shuffle_chunk=chunk, shuffle_window=2 * chunk)
    assert epoch_ids(again) == epochs[0]
    other = trainer.make_dataset(pattern, schema, 32, shuffle=True, seed=8, shuffle_chunk=chunk,
                                 shuffle_window=2 * chunk)
    assert epoch_ids(other) != epochs[0]


def test_without_shuffle_every_epoch_is_the_same_complete_pass(shards):
    pattern, schema = shards
    ds = trainer.make_dataset(pattern, schema, 100, shuffle=False)
    first, second = epoch_ids(ds), epoch_ids(ds)
    assert first == second and sorted(first) == list(range(ROWS))


def test_uncached_shuffled_epochs_differ_too(shards):
    pattern, schema = shards
    ds = trainer.make_dataset(pattern, schema, 32, shuffle=True, cache=False)
    a, b = epoch_ids(ds), epoch_ids(ds)
    assert a != b and sorted(a) == sorted(b) == list(range(ROWS))


def test_blocks_split_into_the_trainers_batches(shards):
    pattern, schema = shards
    ds = trainer.make_dataset(pattern, schema, 32, shuffle=True, steps_per_draw=8)
    sizes, ids = [], []
    for x, y in trainer.split_blocks(ds, 32):
        sizes.append(int(y.shape[0]))
        assert all(int(v.shape[0]) == sizes[-1] for v in x.values())
        ids.extend(x["id"].numpy().ravel().astype(int).tolist())
    assert sizes == [32] * (ROWS // 32) + [ROWS % 32]
    assert sorted(ids) == list(range(ROWS))


def test_the_monitor_counts_every_step_and_times_the_wait(shards):
    import keras

    pattern, schema = shards
    stats = {"numeric": {"id": {"mean": ROWS / 2, "var": ROWS**2 / 12}}, "vocabulary": {}}
    keras.utils.set_random_seed(1)
    model = trainer.build_model(schema, stats, [4], 0.01)
    ds = trainer.make_dataset(pattern, schema, 50, shuffle=True, steps_per_draw=4)
    record = trainer.InputWaitMonitor().run_epoch(model, ds, batch_size=50)
    assert record["steps"] == ROWS // 50
    assert record["input_wait_s"] > 0 and record["compute_s"] > 0 and 0 < record["input_share"] < 1
    assert np.isfinite(record["loss"])
