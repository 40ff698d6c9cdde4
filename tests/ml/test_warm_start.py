"""Warm start from a champion whose open vocabulary grew: the trainer maps the old weights into the
new shapes by token, and falls back loudly (status, reason, alert) when they cannot be mapped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

SCHEMA = """\
name: warm_test
label: {name: y, type: int, values: [0, 1]}
features:
  - {name: kind, type: string, kind: categorical, known: ahead, open_vocabulary: true, transform: lookup}
  - {name: x, type: float, kind: numeric, known: ahead, transform: normalize}
  - {name: site, type: string, kind: categorical, known: ahead, open_vocabulary: true, transform: hash, hash_bins: 16}
"""


def write_data(folder: Path, kinds: list[str], rows: int = 400) -> dict:
    """Train/eval TFRecords and stats.json as the transform writes them, `kind` drawn from `kinds`
    (its vocabulary in stats.json: the order given, as if most frequent first)."""
    import tensorflow as tf

    rng = np.random.default_rng(len(kinds))
    for split in ("train", "eval"):
        (folder / split).mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(folder / split / "part-00000-of-00001.tfrecord")) as writer:
            for i in range(rows):
                x = float(rng.normal())
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "kind": tf.train.Feature(bytes_list=tf.train.BytesList(value=[kinds[i % len(kinds)].encode()])),
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
                    "site": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"T{i % 7}".encode()])),
                    "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x > 0)])),
                })).SerializeToString())
    stats = {"numeric": {"x": {"mean": 0.0, "var": 1.0}},
             "vocabulary": {"kind": kinds, "site": [f"T{i}" for i in range(7)]}}
    (folder / "stats.json").write_text(json.dumps(stats))
    return {"train": str(folder / "train" / "*.tfrecord"), "eval": str(folder / "eval" / "*.tfrecord"),
            "stats": str(folder / "stats.json"), "stats_dict": stats}


def train(schema: Path, data: dict, output: Path, *extra: str) -> dict:
    from ml import trainer

    return trainer.run(["--train", data["train"], "--eval", data["eval"], "--stats", data["stats"],
                        "--schema", str(schema), "--output", str(output), "--batch_size", "64",
                        "--hidden_units", "4", *extra])


def load(output: Path):
    import keras

    from ml import features as F

    return keras.saving.load_model(str(output / "model" / "model.keras"), custom_objects=F.custom_objects())


def kernel_rows(model) -> dict:
    """The first Dense layer's kernel row of each (layer, token-or-position) of the transformed features."""
    from ml.warm_start import feature_rows

    kernel = model.get_layer("dense_0").kernel.numpy()
    return dict(zip(feature_rows(model), kernel, strict=True))


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> dict:
    """A champion trained (1 epoch) on kinds a, b, c."""
    folder = tmp_path_factory.mktemp("warm")
    schema = folder / "schema.yaml"
    schema.write_text(SCHEMA)
    data = write_data(folder / "data1", ["a", "b", "c"])
    report = train(schema, data, folder / "champion", "--epochs", "1")
    return {"schema": schema, "folder": folder, "report": report, "checkpoint": report["keras_model"]}


def test_a_grown_vocabulary_keeps_the_shared_tokens_rows(champion, tmp_path):
    # new tokens d and e, and the shared ones in another order (frequency order changed)
    grown = write_data(tmp_path / "data2", ["d", "b", "a", "e", "c"])
    report = train(champion["schema"], grown, tmp_path / "candidate", "--epochs", "0",
                   "--warm_start", champion["checkpoint"], "--model_name", "grown_kinds")
    assert report["warm_start"]["status"] == "mapped"
    # 4 kind rows (OOV, a, b, c) + 1 normalized + 8 hashed-embedding columns copied; d and e new
    assert report["warm_start"]["rows"] == {"copied": 13, "new": 2, "dropped": 0}
    old, new = load(champion["folder"] / "champion"), load(tmp_path / "candidate")
    old_rows, new_rows = kernel_rows(old), kernel_rows(new)
    for token in ("[UNK]", "a", "b", "c"):
        np.testing.assert_array_equal(new_rows[("kind_lookup", token)], old_rows[("kind_lookup", token)])
    np.testing.assert_array_equal(new_rows[("x_norm", 0)], old_rows[("x_norm", 0)])
    for token in ("d", "e"):  # fresh rows, not a copy of any old one
        assert not any(np.array_equal(new_rows[("kind_lookup", token)], row) for row in old_rows.values())
    # weights whose shapes did not change are copied as they were
    for name in ("site_embedding", "probability"):
        for a, b in zip(new.get_layer(name).get_weights(), old.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(new.get_layer("dense_0").bias.numpy(), old.get_layer("dense_0").bias.numpy())
    assert new.name == report["model_name"] == "grown_kinds"
    saved = json.loads((tmp_path / "candidate" / "training.json").read_text())
    assert saved["warm_start"] == report["warm_start"]


def test_the_same_vocabulary_copies_every_weight(champion):
    from ml import features as F
    from ml import trainer, warm_start

    schema = F.load_schema(str(champion["schema"]))
    stats = json.loads(Path(champion["folder"] / "data1" / "stats.json").read_text())
    model = trainer.build_model(schema, stats, [4], 0.01)
    assert model.name == "warm_test"  # the schema's name by default
    status = warm_start.warm_start(model, champion["checkpoint"], F.custom_objects())
    assert status["status"] == "full" and status["rows"]["new"] == status["rows"]["dropped"] == 0
    for a, b in zip(model.get_weights(), load(champion["folder"] / "champion").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_unmappable_change_falls_back_loudly(champion, tmp_path, caplog):
    data = write_data(tmp_path / "data", ["a", "b", "c", "d"])
    with caplog.at_level(logging.WARNING, logger="prodml.alerts"):
        report = train(champion["schema"], data, tmp_path / "candidate", "--epochs", "1",
                       "--warm_start", champion["checkpoint"], "--hidden_units", "6", "--seed", "8")
    warm = report["warm_start"]
    assert warm["status"] == "fallback" and warm["from"] == champion["checkpoint"]
    # kind (OOV, a, b, c[, d]) + x + 8 hashed-embedding columns, by 4 hidden units before, 6 now
    assert warm["reason"] == ("Unmappable: dense_0/kernel: shape (13, 4) → (14, 6); only the rows of the "
                              "transformed features (the vocabularies) may differ")
    alert = [json.loads(r.getMessage()) for r in caplog.records if r.name == "prodml.alerts"]
    assert [a["source"] for a in alert] == ["trainer.warm_start"] and warm["reason"] in alert[0]["message"]
    # nothing was copied, not even the layers that would fit: no row of the hashed embedding is the
    # champion's (a copied row of a bin no site hashes to would have stayed as it was)
    old = load(champion["folder"] / "champion").get_layer("site_embedding").get_weights()[0]
    new = load(tmp_path / "candidate").get_layer("site_embedding").get_weights()[0]
    assert not any(np.array_equal(a, b) for a, b in zip(new, old, strict=True))


def test_a_missing_checkpoint_is_a_fallback_and_the_training_job_alerts_it(champion, tmp_path):
    from ml import warehouse
    from ml.training_job import alert_warm_start

    data = write_data(tmp_path / "data", ["a", "b", "c"])
    missing = str(tmp_path / "nowhere" / "model.keras")
    report = train(champion["schema"], data, tmp_path / "run" / "candidate", "--epochs", "0", "--warm_start", missing)
    assert report["warm_start"] == {"from": missing, "status": "fallback", "reason": "no model file at this path"}
    config = {"kind": "duckdb", "path": str(tmp_path / "wh.duckdb"), "dataset": "prodml"}
    warm = alert_warm_start(candidate_uri=str(tmp_path / "run" / "candidate"), trained_by="static_training",
                            run_id="r1", warehouse_config=config)
    assert warm == report["warm_start"]
    wh = warehouse.connect(config)
    try:
        rows = wh.query("SELECT severity, source, message FROM prodml.alerts").to_pylist()
    finally:
        wh.close()
    assert rows == [{"severity": "warning", "source": "static_training.warm_start",
                     "message": f"candidate trained from scratch: warm start from {missing} failed: "
                                "no model file at this path"}]
