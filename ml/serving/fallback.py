"""The safe fallback: the historical congestion rate per sensor and hour, from validated data.

What the service answers while the kill switch is on (and when no model can answer). No model is
involved: the rate is the label's mean over the validated rows of the newest `window_days` days,
per group of the schema's entity keys (its keys without the partition column). A group with few
rows is pulled towards its hour's rate (`prior_rows` pseudo-rows of it); an unknown sensor gets
its hour's rate, and an unknown hour the overall rate.

The table is small (one number per sensor and hour) and lives in the bucket as JSON,
`<bucket>/serving/fallback_rates.json`, rebuilt by

    python -m ml.serving.fallback            # from the profile's validated data

and by the service at start-up when the file is missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field

from ml import features as F
from ml import storage

log = logging.getLogger(__name__)
_DATE = re.compile(r"dt=(\d{4}-\d{2}-\d{2})__")


@dataclass(frozen=True)
class FallbackRates:
    key_columns: tuple[str, ...] = ()
    backoff_columns: tuple[str, ...] = ()
    by_key: dict = field(default_factory=dict)
    by_backoff: dict = field(default_factory=dict)
    overall: float = 0.0
    dates: tuple[str, ...] = ()

    def rate(self, instance: dict) -> float:
        key = "|".join(str(instance.get(c)) for c in self.key_columns)
        if key in self.by_key:
            return self.by_key[key]
        backoff = "|".join(str(instance.get(c)) for c in self.backoff_columns)
        return self.by_backoff.get(backoff, self.overall)

    def to_json(self) -> str:
        return json.dumps({"key_columns": self.key_columns, "backoff_columns": self.backoff_columns,
                           "overall": self.overall, "dates": self.dates, "by_backoff": self.by_backoff,
                           "by_key": self.by_key}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FallbackRates:
        raw = json.loads(text)
        return cls(key_columns=tuple(raw["key_columns"]), backoff_columns=tuple(raw["backoff_columns"]),
                   by_key=raw["by_key"], by_backoff=raw["by_backoff"], overall=float(raw["overall"]),
                   dates=tuple(raw["dates"]))


def key_columns(schema: F.Schema) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the group: the keys without the partition column; its back-off: those with a closed vocabulary)."""
    keys = schema.entity_keys
    backoff = tuple(k for k in keys if schema.feature(k).vocabulary and not schema.feature(k).open_vocabulary)
    return keys, backoff


def build(validated_uri: str, schema: F.Schema, *, window_days: int = 28, prior_rows: float = 2.0,
          default_rate: float = 0.0) -> FallbackRates:
    """Rates from the validated CSVs (`dt=D__*.csv`) of the newest `window_days` dates."""
    import pyarrow.compute as pc

    keys, backoff = key_columns(schema)
    files = storage.glob(storage.join(validated_uri, "dt=*__*.csv"))
    dates = sorted({m.group(1) for f in files if (m := _DATE.search(f))})[-window_days:]
    chosen = [f for f in files if (m := _DATE.search(f)) and m.group(1) in set(dates)]
    if not chosen:
        log.warning("no validated data under %s: the fallback answers %s everywhere", validated_uri, default_rate)
        return FallbackRates(keys, backoff, overall=default_rate)
    table = F.read_csv_files(chosen, schema).select([*keys, schema.label])
    table = table.filter(pc.is_valid(table.column(schema.label)))
    overall = float(pc.mean(table.column(schema.label)).as_py() or default_rate)

    def rates(columns: tuple[str, ...]) -> dict[str, tuple[float, int]]:
        if not columns:
            return {}
        grouped = table.group_by(list(columns)).aggregate([(schema.label, "sum"), (schema.label, "count")])
        names = [grouped.column(c).to_pylist() for c in columns]
        sums, counts = grouped.column(f"{schema.label}_sum").to_pylist(), grouped.column(f"{schema.label}_count").to_pylist()
        return {"|".join(str(v) for v in key): (s, n) for key, s, n in zip(zip(*names, strict=True), sums, counts,
                                                                         strict=True)}

    by_backoff = {k: (s + prior_rows * overall) / (n + prior_rows) for k, (s, n) in rates(backoff).items()}
    positions = [keys.index(c) for c in backoff]
    by_key = {}
    for key, (s, n) in rates(keys).items():
        parts = key.split("|")
        prior = by_backoff.get("|".join(parts[i] for i in positions), overall)
        by_key[key] = round((s + prior_rows * prior) / (n + prior_rows), 6)
    return FallbackRates(keys, backoff, by_key=by_key, by_backoff={k: round(v, 6) for k, v in by_backoff.items()},
                         overall=round(overall, 6), dates=tuple(dates))


def write(rates: FallbackRates, uri: str) -> str:
    return storage.write_text(uri, rates.to_json())


def read(uri: str) -> FallbackRates:
    return FallbackRates.from_json(storage.read_text(uri))


def read_or_build(uri: str, validated_uri: str, schema: F.Schema, **options) -> FallbackRates:
    """The stored table; built from validated data (and stored) when there is none yet."""
    if storage.exists(uri):
        return read(uri)
    rates = build(validated_uri, schema, **options)
    if rates.by_key:
        write(rates, uri)
    return rates


def main(argv: list[str] | None = None) -> dict:
    from ml import config as C

    parser = argparse.ArgumentParser(prog="python -m ml.serving.fallback", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default=None)
    args = parser.parse_args(argv)
    config = C.load(args.profile)
    from ml.serving.settings import Settings

    settings = Settings.from_config(config)
    rates = build(config["storage"]["validated"], F.load_schema(config["schema_path"]),
                  window_days=settings.fallback_window_days)
    write(rates, settings.fallback_uri)
    summary = {"uri": settings.fallback_uri, "groups": len(rates.by_key), "overall": rates.overall,
               "dates": [rates.dates[0], rates.dates[-1]] if rates.dates else [],
               "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
