"""Compression: a registered model as TFLite, dynamic-range / float16 / int8 quantized, measured on
held-out rows, attached to its version only within the AUC budget.

    python -m ml.compress [--version champion] [--json]

What is converted. The exported SavedModel keeps its transform inside: string lookups (hash tables)
and the sensor-id hashing (`StringToHashBucketFast`). TFLite's builtin ops have neither, so a plain
conversion needs `SELECT_TF_OPS`, and TensorFlow 2.21's pip package ships no Flex delegate to run
such a model (its `tf.lite.Interpreter` refuses the Flex ops; so does ai-edge-litert). So the
conversion rebuilds the serving function from the model's own layers with builtin ops only:
- `normalize` features: the TFLite model takes the standardized value; `load_tflite` imputes and
  standardizes the raw number with the model's own FillNaN and Normalization layers (rebuilt from
  their configs, stored next to the .tflite file). Inside the graph, int8 would quantize the raw
  input with a range that must include 0: a latitude of 51.5 +- 0.1 would keep a resolution of
  about 0.2 degrees, coarser than the whole city;
- `lookup` features: the layer's vocabulary as a constant, the index found by equality (0 = OOV, as
  the StringLookup/IntegerLookup layer numbers it), and its row of the first Dense kernel gathered
  (the same as one-hot times the kernel, without a one-hot tensor for int8 to mis-scale);
- `hash` features: the TFLite model takes the bucket id; `load_tflite` hashes the raw string with the
  model's own Hashing layer (rebuilt from its config) before the call;
- the rest of the network (embeddings, dense layers) unchanged.
The unquantized `float32` rewrite is measured too: it checks the rewrite (its scores match the
SavedModel's to ~1e-7), so the other variants' deltas are the quantization's.

Variants: `dynamic_range` (int8 weights, float activations), `float16` (float16 weights), `int8`
(int8 weights and activations, calibrated on a representative sample of eval rows that is then left
out of the measurement). Each variant's size and AUC delta (SavedModel AUC - variant AUC) on the
held-out rows is reported; a variant within `max_auc_drop` is attached to the version
(`model_<variant>.tflite` with its input spec `model_<variant>.tflite.json`), and the report as the
`compression` attachment. `load_tflite(uri)` returns a predict function over raw feature columns,
for the serving path.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ml import storage

log = logging.getLogger(__name__)

VARIANTS = ("dynamic_range", "float16", "int8")
REFERENCE = "float32"  # the rewrite, unquantized: measured, never attached
OUTPUT = "probability"


# ------------------------------------------------------------------ conversion


def _tflite_archive(model, schema, folder: Path) -> dict:
    """Write a SavedModel of the builtin-ops serving function built from `model`'s layers to
    `folder`; return the input spec {name: {"dtype", "hash"?, "fill"?, "normalize"?}} the loader needs.

    The first Dense layer after the transformed features is folded: its output is the sum of each
    feature's contribution, kernel rows x feature. A one-hot lookup's contribution is the kernel row
    of its index (a GATHER, no one-hot tensor): int8 quantization mis-scales one-hot values
    (measured: int8 AUC 0.50 with the one-hot concatenated, as the Keras graph does)."""
    import keras
    import tensorflow as tf

    from ml import features as F

    spec = F.feature_spec(schema, with_label=False)
    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    rest = None if first.output is model.output else keras.Model(first.output, model.output)
    vocab, hashing, numeric, used = {}, {}, {}, [first, *([rest] if rest is not None else [])]
    signature, rows, offset = {}, {}, 0
    for f in schema.model_inputs:
        dtype = spec[f.name].dtype
        if f.transform == "lookup":
            vocab[f.name] = model.get_layer(f"{f.name}_lookup").get_vocabulary()[1:]  # [0] is the OOV token
            width = len(vocab[f.name]) + 1
        elif f.transform == "hash":
            hashing[f.name] = model.get_layer(f"{f.name}_hash").get_config()
            dtype = tf.int64  # the bucket id: hashed by the loader
            embedding = model.get_layer(f"{f.name}_embedding")
            used += [embedding, model.get_layer(f"{f.name}_flat")]
            width = embedding.output_dim
        else:  # imputed and standardized by the loader with the model's own layers
            numeric[f.name] = {"fill": model.get_layer(f"{f.name}_fill").get_config(),
                               "normalize": model.get_layer(f"{f.name}_norm").get_config()}
            width = 1
        rows[f.name] = list(range(offset, offset + width))  # this feature's rows of the first kernel
        offset += width
        signature[f.name] = tf.TensorSpec([None, 1], dtype, name=f.name)
    if offset != first.kernel.shape[0]:
        raise ValueError(f"the transformed features have {offset} columns, {first.name} takes {first.kernel.shape[0]}")

    def serve(inputs):
        kernel = tf.convert_to_tensor(first.kernel)
        total = tf.convert_to_tensor(first.bias)
        numbers = [f.name for f in schema.model_inputs if f.name in numeric]
        if numbers:
            x = tf.concat([inputs[name] for name in numbers], axis=1)  # already standardized
            total = total + tf.matmul(x, tf.gather(kernel, [r for name in numbers for r in rows[name]]))
        for f in schema.model_inputs:
            x, k = inputs[f.name], tf.gather(kernel, rows[f.name])
            if f.transform == "lookup":  # index by equality (integer ops; 0 = OOV), then its kernel row
                values = vocab[f.name]
                hits = tf.cast(tf.equal(x, tf.constant([values], dtype=x.dtype)), tf.int32)
                index = tf.reduce_sum(hits * tf.range(1, len(values) + 1, dtype=tf.int32), axis=1)
                total = total + tf.gather(k, index)
            elif f.transform == "hash":
                total = total + tf.matmul(model.get_layer(f"{f.name}_flat")(model.get_layer(f"{f.name}_embedding")(x)), k)
        y = first.activation(total)
        return {OUTPUT: rest(y) if rest is not None else y}

    archive = keras.export.ExportArchive()
    for layer in used:  # only what the function uses: no lookup tables left in the graph
        archive.track(layer)
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[signature])
    archive.write_out(str(folder), verbose=False)
    return {name: {"dtype": s.dtype.name, **({"hash": hashing[name]} if name in hashing else {}),
                   **numeric.get(name, {})} for name, s in signature.items()}


def convert(saved_dir: Path, variant: str, representative: list[dict] | None = None) -> bytes:
    """The TFLite flatbuffer of `saved_dir` for `variant` (builtin ops only)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_dir), signature_keys=["serving_default"])
    if variant != REFERENCE:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        if not representative:
            raise ValueError("int8 needs a representative sample to calibrate the activations")
        converter.representative_dataset = lambda: iter(representative)
    elif variant not in (REFERENCE, "dynamic_range"):
        raise ValueError(f"unknown variant {variant!r} (known: {REFERENCE}, {', '.join(VARIANTS)})")
    return converter.convert()


# ------------------------------------------------------------------ the loader (serving path)


def _as_inputs(columns: dict, spec: dict, layers: dict) -> dict:
    """Raw columns (lists or arrays, shaped (n,) or (n, 1); strings, bytes, numbers, None) → the
    TFLite model's inputs: bytes for strings, int64 (None → -1: the OOV bucket), and through the
    model's own layers (`layers`): standardized numbers (None/NaN → the training mean) and the
    bucket ids of hashed features."""
    out = {}
    for name, s in spec.items():
        values = np.asarray(columns[name], dtype=object).reshape(-1)
        if "hash" in s or s["dtype"] == "string":
            text = np.array([v if isinstance(v, bytes) else ("" if v is None else str(v)).encode() for v in values],
                            dtype=object).reshape(-1, 1)
            out[name] = layers[name](text) if "hash" in s else text.astype(np.bytes_)
        elif s["dtype"] == "float32":
            x = np.array([np.nan if v is None else v for v in values], dtype=np.float32).reshape(-1, 1)
            out[name] = layers[name](x) if name in layers else x
        else:
            out[name] = np.array([-1 if v is None else v for v in values], dtype=np.int64).reshape(-1, 1)
    return out


def _layers(spec: dict) -> dict:
    """Feature → the model's own preprocessing that runs before the TFLite call, rebuilt from the
    layer configs in the spec: Hashing for hashed ids, FillNaN then Normalization for numbers."""
    if not any("hash" in s or "normalize" in s for s in spec.values()):
        return {}
    import keras

    from ml import features as F

    fill_nan = F.custom_objects()["prodml>FillNaN"]
    out = {}
    for name, s in spec.items():
        if "hash" in s:
            layer = keras.layers.Hashing.from_config(s["hash"])
            out[name] = lambda x, layer=layer: np.asarray(layer(x)).astype(np.int64).reshape(-1, 1)
        elif "normalize" in s:
            fill, norm = fill_nan.from_config(s["fill"]), keras.layers.Normalization.from_config(s["normalize"])
            out[name] = lambda x, fill=fill, norm=norm: np.asarray(norm(fill(x)), dtype=np.float32).reshape(-1, 1)
    return out


class TFLitePredictor:
    """`predict(columns) -> probabilities` over raw feature columns, batch by batch."""

    def __init__(self, model: bytes, spec: dict, batch_size: int = 4096):
        import tensorflow as tf

        self.spec = spec
        self.layers = _layers(spec)
        self.batch_size = batch_size
        self.interpreter = tf.lite.Interpreter(model_content=model)
        self.runner = self.interpreter.get_signature_runner("serving_default")
        self.size_bytes = len(model)

    def __call__(self, columns: dict) -> np.ndarray:
        inputs = _as_inputs(columns, self.spec, self.layers)
        n = len(next(iter(inputs.values())))
        scores = np.empty(n, dtype=np.float32)
        for start in range(0, n, self.batch_size):
            batch = {k: v[start:start + self.batch_size] for k, v in inputs.items()}
            scores[start:start + self.batch_size] = self.runner(**batch)[OUTPUT].ravel()
        return scores


def load_tflite(uri: str, batch_size: int = 4096) -> TFLitePredictor:
    """A compressed variant (`<uri>` and its input spec `<uri>.json`, as attached to a registry
    version) as a predict function over raw feature columns: `load_tflite(uri)(columns)`."""
    spec = json.loads(storage.read_text(f"{uri}.json"))
    return TFLitePredictor(storage.read_bytes(uri), spec["inputs"], batch_size)


# ------------------------------------------------------------------ measure and attach


def _take(columns: dict, rows) -> dict:
    return {k: v[rows] for k, v in columns.items()}


def _timed(predict, columns: dict) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    scores = predict(columns)
    n = len(next(iter(columns.values())))
    return scores, round(1000 * (time.perf_counter() - start) / max(n, 1) * 1000, 3)


def measure(*, model_dir: str, eval_pattern: str, schema_path: str, variants=VARIANTS, calibration_rows: int = 512,
            seed: int = 0, out_dir: str | Path) -> dict:
    """Convert `model_dir` to every variant under `out_dir` and measure each on held-out eval rows.
    {"rows", "calibration_rows", "saved_model": {...}, "variants": {name: {"path", "bytes", "auc",
    "auc_delta", "max_abs_score_diff", "ms_per_1k_rows"}}}."""
    import keras

    from ml import features as F
    from ml.evaluate import auc, read_eval_examples
    from ml.predict import load_model, score_columns

    schema = F.load_schema(schema_path)
    columns, labels = read_eval_examples(eval_pattern, schema)
    n = labels.size
    if n < 4:
        raise ValueError(f"{eval_pattern}: {n} eval rows, too few to measure compression on")
    order = np.random.default_rng(seed).permutation(n)
    k = min(int(calibration_rows), n // 2)
    calibration, held = np.sort(order[:k]), np.sort(order[k:])
    held_columns, held_labels = _take(columns, held), labels[held]

    saved_model = load_model(model_dir)
    reference, ms = _timed(lambda c: score_columns(saved_model, c), held_columns)
    base_auc = auc(held_labels, reference)
    local = storage.cached_copy(model_dir)
    model = keras.saving.load_model(str(local / "model.keras"), custom_objects=F.custom_objects())
    out_dir = Path(out_dir)
    spec = _tflite_archive(model, schema, out_dir / "tflite_savedmodel")
    sample = _as_inputs(_take(columns, calibration), spec, _layers(spec))
    representative = [{k: v[i:i + 32] for k, v in sample.items()} for i in range(0, k, 32)]
    saved_bytes = sum(p.stat().st_size for p in local.rglob("*") if p.is_file() and p.name != "model.keras")
    report = {"rows": int(held.size), "calibration_rows": int(k), "seed": seed,
              "saved_model": {"bytes": int(saved_bytes), "auc": base_auc, "ms_per_1k_rows": ms}, "variants": {}}
    for variant in (REFERENCE, *variants):
        started = time.perf_counter()
        flatbuffer = convert(out_dir / "tflite_savedmodel", variant, representative if variant == "int8" else None)
        path = out_dir / f"model_{variant}.tflite"
        path.write_bytes(flatbuffer)
        path.with_name(path.name + ".json").write_text(json.dumps({"inputs": spec, "variant": variant}))
        scores, ms = _timed(TFLitePredictor(flatbuffer, spec), held_columns)
        variant_auc = auc(held_labels, scores)
        report["variants"][variant] = {
            "path": str(path), "bytes": len(flatbuffer), "size_ratio": round(len(flatbuffer) / saved_bytes, 4),
            "auc": variant_auc, "auc_delta": round(base_auc - variant_auc, 6),
            "max_abs_score_diff": float(np.abs(scores - reference).max()), "ms_per_1k_rows": ms,
            "convert_s": round(time.perf_counter() - started, 2)}
        log.info("%s: %d bytes, AUC %.4f (delta %+.5f)", variant, len(flatbuffer), variant_auc,
                 base_auc - variant_auc)
    return report


def within_budget(report: dict, max_auc_drop: float) -> list[str]:
    """The quantized variants whose AUC delta is inside the budget (never the float32 reference)."""
    return [v for v, r in report["variants"].items() if v != REFERENCE and r["auc_delta"] <= max_auc_drop]


def compress(*, registry_config: dict, schema_path: str, version: str = "champion", variants=VARIANTS,
             max_auc_drop: float = 0.005, calibration_rows: int = 512, seed: int = 0,
             eval_pattern: str | None = None) -> dict:
    """Measure every variant of a registered version on its run's held-out eval rows and attach the
    ones within `max_auc_drop`, with the report (`compression`). A version already compressed keeps
    its attachments (they are create-once): its stored report is returned."""
    from ml import registry
    from ml.run_layout import RunLayout

    models = registry.connect(registry_config)
    record = models.get(version)
    version = record["version"]
    try:
        return models.read_attachment(version, "compression")
    except registry.RegistryError:
        pass
    eval_pattern = eval_pattern or RunLayout(record["artifacts"]).eval_files
    with tempfile.TemporaryDirectory(prefix="prodml-compress-") as tmp:
        report = measure(model_dir=record["path"], eval_pattern=eval_pattern,
                         schema_path=schema_path, variants=variants, calibration_rows=calibration_rows, seed=seed,
                         out_dir=tmp)
        report |= {"version": version, "eval": eval_pattern, "max_auc_drop": max_auc_drop,
                   "attached": within_budget(report, max_auc_drop)}
        for variant in report["attached"]:
            path = report["variants"][variant]["path"]
            models.attach_file(version, f"model_{variant}.tflite", path)
            models.attach(version, f"model_{variant}.tflite", json.loads(Path(path + ".json").read_text()))
        for r in report["variants"].values():
            r.pop("path")
    models.attach(version, "compression", report)
    return report


def table(report: dict) -> str:
    rows = [("VARIANT", "BYTES", "SIZE", "AUC", "DELTA", "MS/1K ROWS", "ATTACHED")]
    saved = report["saved_model"]
    rows.append(("saved_model", f"{saved['bytes']:,}", "1.00x", f"{saved['auc']:.4f}", "-",
                 f"{saved['ms_per_1k_rows']:.1f}", "-"))
    for name, r in report["variants"].items():
        rows.append((name, f"{r['bytes']:,}", f"{r['size_ratio']:.2f}x", f"{r['auc']:.4f}", f"{r['auc_delta']:+.5f}",
                     f"{r['ms_per_1k_rows']:.1f}", "yes" if name in report.get("attached", []) else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def main(argv: list[str] | None = None) -> int:
    from ml.config import load

    parser = argparse.ArgumentParser(description="TFLite variants of a registered model, attached within the AUC budget.")
    parser.add_argument("--version", default="champion", help="version or alias (default: champion)")
    parser.add_argument("--eval", default=None, help="eval TFRecords (default: the version's run's eval split)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    config = load()
    section = config.get("compression") or {}
    report = compress(registry_config=config["registry"], schema_path=config["schema_path"], version=args.version,
                      variants=section.get("variants", VARIANTS), max_auc_drop=section.get("max_auc_drop", 0.005),
                      calibration_rows=section.get("calibration_rows", 512), seed=section.get("seed", 0),
                      eval_pattern=args.eval)
    print(json.dumps(report, indent=1) if args.json else table(report))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
