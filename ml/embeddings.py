"""Embeddings for the TensorBoard projector (projector.tensorflow.org, or TensorBoard's projector tab).

The model learns an embedding for each open-vocabulary feature it hashes (the sensor id: new
sensors appear, so it is hashed into buckets rather than looked up). With each trained model,
`export_projector` writes, per such feature, under `<folder>/<feature>/`:

  vectors.tsv    one row per observed value: the embedding of its hash bucket, tab-separated
  metadata.tsv   the same rows' labels, with a header: value, hash bucket, training rows

and `<folder>/projector_config.pbtxt`, so `tensorboard --logdir <folder>` shows them too. The
values are those the Beam transform saw in the training split (`stats.json`, most frequent
first). Values that share a bucket share a vector: that is what hashing does.
"""

from __future__ import annotations

import logging

from ml import storage

log = logging.getLogger(__name__)


def projected_features(schema) -> list:
    """The features whose embedding is exported: open vocabulary, hashed into an embedding."""
    return [f for f in schema.model_inputs if f.open_vocabulary and f.transform == "hash"]


def embedding_rows(model, feature, values: list[str]):
    """(hash bucket of each value, the embedding matrix) from the model's own layers (named by
    `ml.features.preprocessing`: `<feature>_hash`, `<feature>_embedding`)."""
    import numpy as np
    import tensorflow as tf

    hashing = model.get_layer(f"{feature.name}_hash")
    weights = np.asarray(model.get_layer(f"{feature.name}_embedding").get_weights()[0])
    if feature.type == "string":
        inputs = tf.constant([[v] for v in values], dtype=tf.string)
    else:
        inputs = tf.constant([[int(v)] for v in values], dtype=tf.int64)
    buckets = np.asarray(hashing(inputs)).reshape(-1).astype(int) if values else np.zeros(0, int)
    return buckets, weights


def export_projector(model, schema, stats: dict, folder: str) -> list[str]:
    """Write vectors.tsv + metadata.tsv per projected feature under `folder` (any storage URI or
    local path); returns the feature names written."""
    written, config = [], []
    for feature in projected_features(schema):
        values = [str(v) for v in stats.get("vocabulary", {}).get(feature.name, [])]
        if not values:
            log.warning("no observed values of %s in the statistics: its embedding is not exported", feature.name)
            continue
        buckets, weights = embedding_rows(model, feature, values)
        vectors = "".join("\t".join(f"{x:.6g}" for x in weights[b]) + "\n" for b in buckets)
        metadata = f"{feature.name}\tbucket\n" + "".join(
            f"{_tsv(v)}\t{b}\n" for v, b in zip(values, buckets, strict=True))
        base = storage.join(folder, feature.name)
        storage.write_text(storage.join(base, "vectors.tsv"), vectors)
        storage.write_text(storage.join(base, "metadata.tsv"), metadata)
        config.append(f'embeddings {{\n  tensor_name: "{feature.name}_embedding"\n'
                      f'  tensor_path: "{feature.name}/vectors.tsv"\n'
                      f'  metadata_path: "{feature.name}/metadata.tsv"\n}}\n')
        written.append(feature.name)
        log.info("exported %d %s embeddings (%d buckets) to %s", len(values), feature.name, weights.shape[0], base)
    if config:
        storage.write_text(storage.join(folder, "projector_config.pbtxt"), "".join(config))
    return written


def _tsv(value: str) -> str:
    return value.replace("\t", " ").replace("\n", " ")
