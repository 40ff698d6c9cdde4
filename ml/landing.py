"""The landing area: `landing/dt=YYYY-MM-DD/part-*.csv`, complete only once `_SUCCESS` exists."""

from __future__ import annotations

import datetime as dt

from ml import storage

SUCCESS = "_SUCCESS"


def complete_partitions(landing_uri: str) -> dict[str, list[str]]:
    """{date: [csv paths]} for every partition whose `_SUCCESS` marker is present (no marker, no data)."""
    def partition(uri: str) -> str:
        return storage.name(uri.rsplit("/", 1)[0]).removeprefix("dt=")

    # Two listings whatever the number of partitions (each glob is one list call on a bucket).
    complete = {partition(marker) for marker in storage.glob(storage.join(landing_uri, "dt=*", SUCCESS))}
    out = {date: [] for date in sorted(complete)}
    for csv in storage.glob(storage.join(landing_uri, "dt=*", "*.csv")):
        if partition(csv) in complete:
            out[partition(csv)].append(csv)
    return out


def partitions_in_window(landing_uri: str, end: str, days: int) -> dict[str, list[str]]:
    """Complete partitions with date in [end - days, end)."""
    end_date = dt.date.fromisoformat(end)
    start = (end_date - dt.timedelta(days=days)).isoformat()
    return {d: files for d, files in complete_partitions(landing_uri).items() if start <= d < end}


def newest_partition(landing_uri: str) -> str | None:
    dates = list(complete_partitions(landing_uri))
    return max(dates) if dates else None
