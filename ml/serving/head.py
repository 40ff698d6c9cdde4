"""The head: the champion's precomputed predictions (the `batch_prediction` table), held in memory.

The service keeps the `days` newest partitions of `predictions` that the current champion wrote,
as a dict keyed by the schema's keys (sensor_id, date, hour). A partition written by another model
version is not served: after a promotion or a rollback the head is empty until `batch_prediction`
has rescored (it runs when the champion changes), and the tail answers meanwhile, so an answer's
`model_version` is always the model that computed it.

Polling is cheap: one GROUP BY over the table (`serving_head_partitions.sql`) gives a signature;
the rows are read again only when it changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Head:
    model_version: str | None = None
    dates: tuple[str, ...] = ()
    signature: tuple = ()
    scores: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)


EMPTY = Head()


def _iso(value) -> str:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)


def partitions(warehouse) -> list[dict]:
    """[{target_date, model_version, n, predicted_at}] of the static serving table."""
    return warehouse.run_sql_file("serving_head_partitions").to_pylist()


def wanted(parts: list[dict], model_version: str | None, days: int) -> tuple[tuple[str, ...], tuple]:
    """The dates to hold (the `days` newest the champion wrote) and their signature."""
    if model_version is None:
        return (), ()
    mine = [p for p in parts if p["model_version"] == model_version]
    mine = sorted(mine, key=lambda p: _iso(p["target_date"]))[-days:] if days > 0 else []
    signature = tuple((_iso(p["target_date"]), p["model_version"], int(p["n"]), _iso(p["predicted_at"]))
                      for p in mine)
    return tuple(s[0] for s in signature), signature


def load(warehouse, *, keys: tuple[str, ...], partition_column: str, model_version: str,
         dates: tuple[str, ...], signature: tuple) -> Head:
    """The champion's rows for `dates`, keyed by the schema's `keys` (the partition column is the
    table's `target_date`)."""
    if not dates:
        return Head(model_version=model_version, signature=signature)
    table = warehouse.run_sql_file("serving_head", {"first_date": dt.date.fromisoformat(dates[0]),
                                                    "last_date": dt.date.fromisoformat(dates[-1]),
                                                    "model_version": model_version})
    wanted_dates = set(dates)
    columns = []
    for key in keys:
        values = table.column("target_date" if key == partition_column else key).to_pylist()
        columns.append([_iso(v) for v in values] if key == partition_column else values)
    date_index = keys.index(partition_column)
    scores = {}
    for key, score in zip(zip(*columns, strict=True), table.column("score").to_pylist(), strict=True):
        if key[date_index] in wanted_dates:
            scores[key] = score
    return Head(model_version=model_version, dates=dates, signature=signature, scores=scores)
