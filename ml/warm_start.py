"""Warm start: the champion's weights carried into a new candidate whose vocabularies grew.

An open vocabulary (a lookup without a fixed vocabulary in the schema) is sized from the data, so
a new token adds a one-hot column to the transformed features and a row to the kernel of the
layer that reads them: the champion's weights no longer fit by shape. Here that kernel is mapped
row by row, by identity: a lookup's row is (layer, token), any other input's is (layer, position).
Rows of tokens both vocabularies share are copied, a new token's row keeps its fresh init, a
dropped token's row is left behind. Every other weight must have the same shape and is copied as
is. Anything else (another architecture, hidden units changed) cannot be mapped: nothing is
copied, and the caller trains from scratch and says so.

Status, as the trainer records it in training.json under "warm_start":
  full      every weight copied as it was (same vocabularies, same order)
  mapped    the feature-reading kernel mapped by token; `rows` counts copied and new rows
  fallback  nothing copied; `reason` says why (an alert is raised)
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

FEATURES_LAYER = "transformed_features"  # the Concatenate of all encoded inputs (ml.features.preprocessing)


class Unmappable(ValueError):
    """The previous model's weights do not map onto the new model's."""


def feature_rows(model) -> list[tuple]:
    """The identity of each column of the model's transformed features, in order: (lookup layer,
    token) for a one-hot lookup (its OOV bucket included), (layer, position) for anything else."""
    import keras

    try:
        concat = model.get_layer(FEATURES_LAYER)
    except ValueError:
        raise Unmappable(f"model {model.name!r} has no {FEATURES_LAYER!r} layer") from None
    producers = {id(layer.output): layer for layer in model.layers if layer is not concat}
    rows = []
    for tensor in concat.input:
        layer = producers[id(tensor)]
        if isinstance(layer, keras.layers.StringLookup | keras.layers.IntegerLookup) and layer.output_mode == "one_hot":
            rows += [(layer.name, str(token)) for token in layer.get_vocabulary()]
        else:
            rows += [(layer.name, i) for i in range(tensor.shape[-1])]
    return rows


def map_weights(model, previous) -> dict:
    """Copy `previous`'s weights into `model` (built, freshly initialised): {"status": "full" |
    "mapped", "rows": {...}}. Unmappable (and nothing assigned) when they do not fit."""
    new_rows, old_rows = feature_rows(model), feature_rows(previous)
    old_index = {row: i for i, row in enumerate(old_rows)}
    source = [old_index.get(row) for row in new_rows]  # None: a new token, fresh init
    features = model.get_layer(FEATURES_LAYER).output
    readers = {layer.name for layer in model.layers if layer.input is features}
    old_layers = {layer.name: layer for layer in previous.layers}
    assignments = []
    for layer in model.layers:
        if not layer.weights:
            continue
        old = old_layers.get(layer.name)
        if old is None or len(old.weights) != len(layer.weights):
            raise Unmappable(f"layer {layer.name!r} has no counterpart with the same weights in the previous model")
        for weight, old_weight in zip(layer.weights, old.weights, strict=True):
            value, shape = old_weight.numpy(), tuple(weight.shape)
            if layer.name in readers and len(shape) == 2 and shape[0] == len(new_rows):
                if value.shape != (len(old_rows), shape[1]):
                    raise Unmappable(f"{weight.path}: shape {value.shape} → {shape}; only the rows of the "
                                     "transformed features (the vocabularies) may differ")
                mapped = weight.numpy().copy()
                for row, old_row in enumerate(source):
                    if old_row is not None:
                        mapped[row] = value[old_row]
                value = mapped
            elif value.shape != shape:
                raise Unmappable(f"{weight.path}: shape {value.shape} → {shape}")
            assignments.append((weight, value))
    for weight, value in assignments:  # only once every weight fits: all or nothing
        weight.assign(value)
    copied = sum(row is not None for row in source)
    status = "full" if source == list(range(len(old_rows))) else "mapped"
    return {"status": status, "rows": {"copied": copied, "new": len(source) - copied,
                                       "dropped": len(old_rows) - copied}}


def warm_start(model, checkpoint: str, custom_objects: dict) -> dict:
    """Start `model` from the Keras file at `checkpoint` (a local path or bucket URI):
    {"from", "status", "rows"} or, when it cannot, {"from", "status": "fallback", "reason"} with
    the model's weights untouched."""
    import keras

    from ml import storage

    if not storage.exists(checkpoint):
        return {"from": checkpoint, "status": "fallback", "reason": "no model file at this path"}
    try:
        with storage.local_copy(checkpoint) as local:
            previous = keras.saving.load_model(str(local), custom_objects=custom_objects)
        return {"from": checkpoint, **map_weights(model, previous)}
    except (Unmappable, ValueError, OSError) as exc:
        return {"from": checkpoint, "status": "fallback", "reason": f"{type(exc).__name__}: {exc}"}
