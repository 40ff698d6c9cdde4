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
from ml.schema_check import DataError


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
    needed = forecast_columns(schema)
    for file in files:
        with storage.open(file) as handle:
            header = F.read_header(file, handle.read(1 << 16))
        missing = [c for c in needed if c not in header]
        if missing:
            raise DataError(file=file, rule="lacks columns needed to score", field=", ".join(missing),
                            detail=f"every row needs the model inputs, keys and partition column of {schema.path}; "
                                   "publish these columns in the known-ahead table, or drop them from the schema's "
                                   "features/keys and retrain")
    return F.read_csv_files(files, schema)


def forecast_columns(schema: F.Schema) -> list[str]:
    """The columns a known-ahead (forecast) table must have: the partition column, the entity keys
    and every model input, in that order without repeats."""
    names = [schema.partition_column, *schema.entity_keys, *(f.name for f in schema.model_inputs)]
    return list(dict.fromkeys(n for n in names if n))


def predictions_columns(schema: F.Schema) -> list[tuple[str, str]]:
    """The `predictions` table of a schema, (column, BigQuery type): the partition's date, the
    schema's entity keys typed as the schema types them, the canonical `entity_key` string
    (ml.features.entity_key: what generic SQL and the online head key on), the score, the
    thresholded label, and lineage (model version, run id, time)."""
    if not schema.entity_keys:
        raise F.SchemaError(f"{schema.path}: keys must name at least one column besides the partition column: "
                            "predictions are written per key (add e.g. an id column to keys)")
    return [("target_date", "DATE"),
            *((k, F.BIGQUERY_TYPES[schema.feature(k).type]) for k in schema.entity_keys),
            ("entity_key", "STRING"), ("score", "FLOAT64"), (schema.prediction_column, "INT64"),
            ("model_version", "STRING"), ("run_id", "STRING"), ("predicted_at", "TIMESTAMP")]


def predictions_ddl(schema: F.Schema) -> str:
    """CREATE TABLE for `predictions`, generated from the schema (BigQuery dialect, `{dataset}`
    left for ml.warehouse to fill; one partition per target_date, as batch prediction replaces)."""
    body = ",\n".join(f"  {name} {kind}" for name, kind in predictions_columns(schema))
    return f"CREATE TABLE IF NOT EXISTS {{dataset}}.predictions (\n{body}\n)\nPARTITION BY target_date"


def ensure_predictions_table(warehouse, schema: F.Schema) -> None:
    from ml.warehouse import render

    warehouse.query(render(predictions_ddl(schema), warehouse.dataset))


def entity_keys_of(table: pa.Table, schema: F.Schema) -> pa.Array:
    """The canonical entity_key string of every row of `table`."""
    columns = [table.column(k).to_pylist() for k in schema.entity_keys]
    return pa.array([F.entity_key(values) for values in zip(*columns, strict=True)], pa.string())


def predict_table(model, table: pa.Table, schema: F.Schema, *, target_date: str, model_version: str,
                  run_id: str, threshold: float, batch_size: int = 8192) -> pa.Table:
    """Score every row of `table` into rows of the `predictions` table (`predictions_columns`);
    keys pass through the model call unchanged."""
    columns = F.to_model_inputs(schema, {f.name: table.column(f.name) for f in schema.model_inputs})
    scores = score_columns(model, columns, batch_size)
    n = table.num_rows
    keys = {k: table.column(k).cast(F.arrow_types(schema)[k]) for k in schema.entity_keys}
    return pa.table({
        "target_date": pa.array([dt.date.fromisoformat(target_date)] * n, pa.date32()),
        **keys,
        "entity_key": entity_keys_of(table, schema),
        "score": pa.array(scores.astype(np.float64)),
        schema.prediction_column: pa.array((scores >= threshold).astype(np.int64)),
        "model_version": pa.array([model_version] * n, pa.string()),
        "run_id": pa.array([run_id] * n, pa.string()),
        "predicted_at": pa.array([dt.datetime.now(dt.UTC)] * n, pa.timestamp("us", tz="UTC")),
    })
