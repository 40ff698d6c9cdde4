"""Serving-side scoring: the exported SavedModel on raw features, in batches.

Used by evaluation, batch prediction (static serving into the warehouse) and the skew test.
No transform happens here: the model carries it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from ml import features as F
from ml import storage


def load_model(model_dir: str):
    import tensorflow as tf

    return tf.saved_model.load(str(storage.cached_copy(model_dir)))


def score_columns(model, columns: dict, batch_size: int = 8192) -> np.ndarray:
    """Raw model-input columns (arrays shaped (n, 1)) → probabilities, one batched call per slice."""
    import tensorflow as tf

    n = len(next(iter(columns.values())))
    scores = np.empty(n, dtype=np.float32)
    for start in range(0, n, batch_size):
        batch = {k: tf.constant(v[start:start + batch_size]) for k, v in columns.items()}
        scores[start:start + batch_size] = model.serve(batch).numpy().ravel()
    return scores


def read_ahead_features(uri: str, schema: F.Schema) -> pa.Table:
    """The known-ahead feature table of one day (forecast/dt=D/*.csv)."""
    files = storage.glob(storage.join(uri, "*.csv")) if storage.isdir(uri) else [uri]
    if not files:
        raise FileNotFoundError(f"no known-ahead feature file under {uri}: was the day published?")
    return F.read_csv_files(files, schema)


def predict_table(model, table: pa.Table, schema: F.Schema, *, target_date: str, model_version: str,
                  run_id: str, threshold: float, batch_size: int = 8192) -> pa.Table:
    """Score every row of `table`; keys pass through the model call unchanged."""
    columns = F.to_model_inputs(schema, {f.name: table.column(f.name) for f in schema.model_inputs})
    scores = score_columns(model, columns, batch_size)
    n = table.num_rows
    return pa.table({
        "target_date": pa.array([dt.date.fromisoformat(target_date)] * n, pa.date32()),
        "sensor_id": table.column("sensor_id").cast(pa.string()),
        "hour": table.column("hour").cast(pa.int64()),
        "road_type": table.column("road_type").cast(pa.string()),
        "score": pa.array(scores.astype(np.float64)),
        "predicted_congested": pa.array((scores >= threshold).astype(np.int64)),
        "model_version": pa.array([model_version] * n, pa.string()),
        "run_id": pa.array([run_id] * n, pa.string()),
        "predicted_at": pa.array([dt.datetime.now(dt.UTC)] * n, pa.timestamp("us", tz="UTC")),
    })
