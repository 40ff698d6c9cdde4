"""The landing area: `landing/dt=YYYY-MM-DD/part-*.csv`, complete only once `_SUCCESS` exists."""

from __future__ import annotations

import datetime as dt

from ml.storage import to_path

SUCCESS = "_SUCCESS"


def complete_partitions(landing_uri: str) -> dict[str, list[str]]:
    """{date: [csv paths]} for every partition whose `_SUCCESS` marker is present (no marker, no data)."""
    root = to_path(landing_uri)
    out = {}
    for part in sorted(root.glob("dt=*")):
        if (part / SUCCESS).exists():
            out[part.name.removeprefix("dt=")] = [str(p) for p in sorted(part.glob("*.csv"))]
    return out


def partitions_in_window(landing_uri: str, end: str, days: int) -> dict[str, list[str]]:
    """Complete partitions with date in [end - days, end)."""
    end_date = dt.date.fromisoformat(end)
    start = (end_date - dt.timedelta(days=days)).isoformat()
    return {d: files for d, files in complete_partitions(landing_uri).items() if start <= d < end}


def newest_partition(landing_uri: str) -> str | None:
    dates = list(complete_partitions(landing_uri))
    return max(dates) if dates else None
