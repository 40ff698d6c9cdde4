"""Batch prediction job: champion × known-ahead features of one date → warehouse partition."""

from __future__ import annotations

import datetime as dt
import logging

import pyarrow as pa

from ml import evaluate, features, landing, predict, registry, warehouse
from ml.errors import PermanentError
from ml.storage import join

log = logging.getLogger(__name__)


class NoChampionError(PermanentError, RuntimeError):
    """No model to score with: retrying cannot fix it, a model has to be trained first."""


def resolve_target_date(explicit: str | None, logical_date: dt.datetime | None, landing_uri: str) -> str:
    """Explicit param > the run's logical date (scheduled/backfill/manual) > the day after the
    newest complete landed partition (Asset-triggered runs have no logical date)."""
    if explicit:
        return dt.date.fromisoformat(explicit).isoformat()
    if logical_date is not None:
        return logical_date.date().isoformat()
    newest = landing.newest_partition(landing_uri)
    if newest is None:
        raise ValueError(f"no complete landed partition under {landing_uri}: cannot infer a target date; "
                         "pass the target_date param")
    return (dt.date.fromisoformat(newest) + dt.timedelta(days=1)).isoformat()


def rows_with_keys(table: pa.Table, keys: list[dict]) -> pa.Table:
    """The rows of `table` whose columns named in `keys` (a list of {column: value} dicts, all with
    the same columns) match one of them."""
    if not keys:
        return table.slice(0, 0)
    columns = list(keys[0])
    wanted = {tuple(k[c] for c in columns) for k in keys}
    found = zip(*(table.column(c).to_pylist() for c in columns), strict=True)
    return table.filter(pa.array([key in wanted for key in found], pa.bool_()))


def predict_to_warehouse(*, target_date: str, registry_config: dict, forecast_uri: str, schema_path: str,
                         warehouse_config: dict, evaluation: dict, batch_size: int, run_id: str | None,
                         model_version: str = "champion", keys: list[dict] | None = None) -> dict:
    """Score the forecast rows of `target_date` into its `predictions` partition. `keys`: only the
    rows whose key columns match one of these {column: value} dicts (the serving advisor's head,
    `ml.serving.advisor.advised_keys`); None = every row."""
    schema = features.load_schema(schema_path)
    try:
        champion = registry.connect(registry_config).get(model_version)
    except registry.RegistryError as exc:
        raise NoChampionError(f"no model to score with: {exc}. Train one first: `make demo`, or trigger the "
                              "static_training DAG (its gate promotes the first champion).") from None
    table = predict.read_ahead_features(join(forecast_uri, f"dt={target_date}"), schema)
    if schema.partition_column:
        wrong_day = set(table.column(schema.partition_column).cast(pa.string()).to_pylist()) - {target_date}
        if wrong_day:
            raise ValueError(f"forecast table for {target_date} holds rows whose {schema.partition_column} is another "
                             f"date: {sorted(wrong_day, key=str)[:5]}")
    if keys is not None:
        table = rows_with_keys(table, keys)
    threshold = evaluate.decision_threshold(evaluation["cost_false_negative"], evaluation["cost_false_positive"])
    rows = predict.predict_table(predict.load_model(champion["path"]), table, schema, target_date=target_date,
                                 model_version=champion["version"], run_id=run_id or "manual",
                                 threshold=threshold, batch_size=batch_size)
    wh = warehouse.connect(warehouse_config)
    try:
        wh.ensure_tables()
        predict.ensure_predictions_table(wh, schema)
        wh.replace_partition("predictions", rows, "target_date", dt.date.fromisoformat(target_date))
    finally:
        wh.close()
    result = {"target_date": target_date, "rows": rows.num_rows, "model_version": champion["version"],
              "keys": "all" if keys is None else len(keys),
              "mean_score": float(sum(rows.column("score").to_pylist()) / max(rows.num_rows, 1))}
    log.info("batch prediction: %s", result)
    return result
