"""A small data set with a schema of its own, for the ablation and compression tests: a strong
feature, weak ones and pure noise, through every transform the feature contract has.

    label ~ Bernoulli(sigmoid(2.5 * signal + 1.0 * [kind == "a"] + 0.3 * [slot == 0] + site effect - 0.8))

`signal` (normalize) carries most of the information; `kind` (string lookup), `slot` (integer lookup)
and `site` (hashed id, 40 sites, effect N(0, 0.3)) some; `noise` (normalize) none. Written as the Beam
transform writes its outputs (train/ and eval/ TFRecords of raw features, stats.json).
"""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA = """\
name: ablation_test
keys: [row]
split_key: row
label: {name: y, type: int, values: [0, 1]}
features:
  - {name: row, type: string, kind: key, known: ahead, transform: none}
  - {name: signal, type: float, kind: numeric, known: ahead, range: [-10, 10], transform: normalize}
  - {name: kind, type: string, kind: categorical, known: ahead, vocabulary: [a, b, c], transform: lookup}
  - {name: noise, type: float, kind: numeric, known: ahead, range: [-10, 10], transform: normalize}
  - {name: slot, type: int, kind: categorical, known: ahead, vocabulary: [0, 1, 2, 3], transform: lookup}
  - {name: site, type: string, kind: categorical, known: ahead, open_vocabulary: true, transform: hash, hash_bins: 64}
"""


def write(folder: str | Path, train_rows: int = 3000, eval_rows: int = 2000, seed: int = 0) -> dict:
    """The schema and a transform folder under `folder`: {"schema", "train", "eval", "stats"}."""
    import numpy as np
    import tensorflow as tf

    folder = Path(folder)
    (folder / "transform" / "train").mkdir(parents=True, exist_ok=True)
    (folder / "transform" / "eval").mkdir(parents=True, exist_ok=True)
    (folder / "schema.yaml").write_text(SCHEMA)
    rng = np.random.default_rng(seed)
    n = train_rows + eval_rows
    signal, noise = rng.normal(size=n), rng.normal(size=n)
    kind = rng.choice(np.array(["a", "b", "c"]), size=n)
    slot = rng.integers(0, 4, size=n)
    site = rng.integers(0, 40, size=n)
    site_effect = rng.normal(0, 0.3, size=40)
    logit = 2.5 * signal + 1.0 * (kind == "a") + 0.3 * (slot == 0) + site_effect[site] - 0.8
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    def example(i: int) -> bytes:
        f = tf.train.Feature
        return tf.train.Example(features=tf.train.Features(feature={
            "signal": f(float_list=tf.train.FloatList(value=[signal[i]])),
            "noise": f(float_list=tf.train.FloatList(value=[noise[i]])),
            "kind": f(bytes_list=tf.train.BytesList(value=[kind[i].encode()])),
            "slot": f(int64_list=tf.train.Int64List(value=[slot[i]])),
            "site": f(bytes_list=tf.train.BytesList(value=[f"T{site[i]:03d}".encode()])),
            "y": f(int64_list=tf.train.Int64List(value=[y[i]])),
        })).SerializeToString()

    for split, rows in (("train", range(train_rows)), ("eval", range(train_rows, n))):
        with tf.io.TFRecordWriter(str(folder / "transform" / split / "part-00000-of-00001.tfrecord")) as w:
            for i in rows:
                w.write(example(i))
    stats = {"numeric": {name: {"mean": float(v[:train_rows].mean()), "var": float(v[:train_rows].var())}
                         for name, v in (("signal", signal), ("noise", noise))},
             "vocabulary": {"kind": ["a", "b", "c"], "slot": [0, 1, 2, 3],
                            "site": sorted({f"T{s:03d}" for s in site[:train_rows]})}}
    (folder / "transform" / "stats.json").write_text(json.dumps(stats))
    return {"schema": str(folder / "schema.yaml"), "train": str(folder / "transform/train/part-*.tfrecord"),
            "eval": str(folder / "transform/eval/part-*.tfrecord"), "stats": str(folder / "transform/stats.json")}
