"""A tiny serving model built in seconds, no training: the fast tier's stand-in for a trained one.

Same shape as the trainer's export (`ml.trainer.run`): the feature contract's preprocessing layers
(`ml.features.preprocessing`) on raw inputs, a Dense head, `model.export(format="tf_saved_model")`,
so it has the `serve` signature that infra validation and batch prediction call.

    python -m tests.ml.tiny_model OUT_DIR SCHEMA_PATH   # → OUT_DIR/serving, OUT_DIR/out_of_range

Run as a separate process so that the test process never imports TensorFlow (one import, two
exports: a few seconds). `out_of_range` has no sigmoid and large weights: its outputs leave [0, 1],
a broken candidate for the gate.
"""

from __future__ import annotations

import argparse
import sys


def build(out_dir: str, schema_path: str, scale: float = 1.0, sigmoid: bool = True) -> str:
    import keras
    import numpy as np

    from ml import features as F

    keras.utils.set_random_seed(0)
    schema = F.load_schema(schema_path)
    stats = {"numeric": {f.name: {"mean": 1.0, "var": 4.0} for f in schema.model_inputs if f.is_numeric},
             "vocabulary": {f.name: ["a", "b"] for f in schema.model_inputs if f.is_categorical}}
    inputs, x = F.preprocessing(schema, stats)
    head = keras.layers.Dense(1, activation="sigmoid" if sigmoid else None, name="probability")
    model = keras.Model(inputs=inputs, outputs=head(x))
    kernel, bias = head.get_weights()
    head.set_weights([np.full_like(kernel, scale), bias])
    model.export(out_dir, format="tf_saved_model", verbose=False)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("schema_path")
    args = parser.parse_args(argv)
    print(build(f"{args.out_dir}/serving", args.schema_path))
    print(build(f"{args.out_dir}/out_of_range", args.schema_path, scale=1000.0, sigmoid=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
