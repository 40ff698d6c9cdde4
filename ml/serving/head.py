"""The head: the champion's precomputed predictions (the `batch_prediction` table), held in memory.

The service keeps the `days` newest partitions of `predictions` that the current champion wrote,
as a dict keyed by (target date, entity key): `Head.key` of a request. A partition written by another model
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


def request_key(instance: dict, entity_keys: tuple[str, ...], partition_column: str | None) -> tuple:
    """The head's key of one request: (its partition value, ml.features.entity_key of its entity
    keys). A schema without a partition column serves the newest held date: (None, entity key)."""
    from ml.features import entity_key

    date = instance[partition_column] if partition_column else None
    return date, entity_key(instance[k] for k in entity_keys)


def load(warehouse, *, partition_column: str | None, model_version: str, dates: tuple[str, ...],
         signature: tuple) -> Head:
    """The champion's rows for `dates`, keyed as `request_key` keys a request."""
    if not dates:
        return Head(model_version=model_version, signature=signature)
    table = warehouse.run_sql_file("serving_head", {"first_date": dt.date.fromisoformat(dates[0]),
                                                    "last_date": dt.date.fromisoformat(dates[-1]),
                                                    "model_version": model_version})
    wanted_dates = set(dates)
    rows = sorted(zip((_iso(v) for v in table.column("target_date").to_pylist()),
                      table.column("entity_key").to_pylist(), table.column("score").to_pylist(), strict=True))
    scores = {}
    for date, key, score in rows:  # by date: without a partition column the newest date wins
        if date in wanted_dates:
            scores[(date if partition_column else None, key)] = score
    return Head(model_version=model_version, dates=dates, signature=signature, scores=scores)
