"""A seeded simulator of city traffic sensors: the data source of the demo and the tests.

Sensors across a city report hourly traffic; road type and location are known ahead, traffic
peaks at rush hours, and the city changes (named scenarios inject the kinds of change a
production pipeline must notice). Under `out` it writes what the upstream system would land:

    landing/dt=YYYY-MM-DD/part-00000.csv + _SUCCESS    readings + label `congested`
    forecast/dt=YYYY-MM-DD/part-00000.csv + _SUCCESS   known-ahead features only (for scoring)
    ground_truth.json                                  which scenario hit which day and columns

Every random draw comes from a generator keyed by (seed, purpose, date, ...), never from a
running stream, so: the same arguments give byte-identical files; a sensor has the same
attributes whatever the dates or the sensor count; a day's weather, events and noise do not
depend on the start date; and the forecast of a day equals what lands for it.

    python -m ml.simulate --out file:///tmp/bucket --start-date 2024-03-04 --days 14 --seed 7 \
        --scenario 2024-03-12=road_closure
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ml.features import Schema, load_schema
from ml.storage import to_path

HOURS = np.arange(24)
SCENARIOS = ("normal", "road_closure", "new_sensors", "logging_format_change",
             "weather_model_shift", "event_spike", "flood", "leaky_feature")
MAX_SENSORS = 5000  # new sensors take ids S9001..; keep the regular ids clear of them
NEW_SENSOR_FIRST_ID = 9001

ROAD_TYPES = ("arterial", "highway", "collector", "residential")
ROAD_SHARE = (0.25, 0.15, 0.25, 0.35)
LANES = {"arterial": (2, 4), "highway": (3, 6), "collector": (1, 2), "residential": (1, 2)}
SPEED_LIMITS = {"arterial": (50, 60), "highway": (100, 110, 120), "collector": (40, 50),
                "residential": (20, 30)}
# Effect of the road type on the congestion logit, and how strongly it feels the rush hours.
ROAD_EFFECT = {"arterial": 0.8, "highway": 0.3, "collector": 0.0, "residential": -1.0}
ROAD_RUSH = {"arterial": 1.1, "highway": 1.3, "collector": 0.9, "residential": 0.6}
# Vehicles per lane per hour at full load.
CAPACITY = {"arterial": 900, "highway": 1800, "collector": 600, "residential": 300}
CITY_CENTRE = (51.5, -0.1)
FIXED_HOLIDAYS = {(1, 1), (12, 25), (12, 26)}

INTERCEPT = -2.9  # calibrated: ~16% of weekday rows congested, ~11% on weekends
FORECAST_NULL_RATE = 0.03  # below the schema's presence 0.95, so a normal day validates
READING_NULL_RATE = 0.02
KMH_PER_MPH = 1.609344


# ---------------------------------------------------------------------------- randomness


def _rng(seed: int, *keys) -> np.random.Generator:
    """A generator for one purpose: keys are strings/ints, e.g. ("weather", date ordinal)."""
    words = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(words)


def _pick(u: np.ndarray, options: tuple) -> np.ndarray:
    """Uniform draws in [0, 1) → one of `options`, equally likely."""
    return np.asarray(options)[np.minimum((u * len(options)).astype(int), len(options) - 1)]


# ------------------------------------------------------------------------------- sensors


def make_sensors(seed: int, n: int, first_id: int = 1, kind: str = "base") -> dict:
    """Sensor attributes (1-D arrays of length n), from the seed only.

    Each attribute has its own generator, and numpy draws a prefix of a stream identically
    for any length, so sensor S0001 is the same sensor in a 30- and a 200-sensor run.
    """
    road = np.asarray(ROAD_TYPES)[np.searchsorted(np.cumsum(ROAD_SHARE),
                                                  _rng(seed, kind, "road").random(n), side="right")]
    u_lanes, u_speed = _rng(seed, kind, "lanes").random(n), _rng(seed, kind, "speed").random(n)
    lanes = np.empty(n, dtype=np.int64)
    speed = np.empty(n, dtype=np.int64)
    for rt in ROAD_TYPES:
        m = road == rt
        lo, hi = LANES[rt]
        lanes[m] = lo + np.minimum((u_lanes[m] * (hi - lo + 1)).astype(int), hi - lo)
        speed[m] = _pick(u_speed[m], SPEED_LIMITS[rt])
    lat = np.round(51.35 + 0.30 * _rng(seed, kind, "lat").random(n), 5)
    lon = np.round(-0.35 + 0.50 * _rng(seed, kind, "lon").random(n), 5)
    return {
        "sensor_id": np.array([f"S{i:04d}" for i in range(first_id, first_id + n)], dtype=object),
        "road_type": road.astype(object),
        "lanes": lanes,
        "speed_limit_kmh": speed,
        "latitude": lat,
        "longitude": lon,
        "district": _district(lat, lon),
        # Hidden random effect: some segments are just worse (bottlenecks, junction design).
        "propensity": 0.6 * _rng(seed, kind, "propensity").standard_normal(n),
    }


def _district(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Central within a radius of the centre, else the compass direction that dominates."""
    dy = (lat - CITY_CENTRE[0]) / 0.15
    dx = (lon - CITY_CENTRE[1]) / 0.25
    out = np.where(np.abs(dy) >= np.abs(dx), np.where(dy >= 0, "north", "south"),
                   np.where(dx >= 0, "east", "west")).astype(object)
    out[dx**2 + dy**2 < 0.45**2] = "central"
    return out


# ------------------------------------------------------------------------ one day's world


def _weather(seed: int, day: dt.date) -> dict:
    """City-wide hourly forecast, from (seed, date) only."""
    rng = _rng(seed, "weather", day.toordinal())
    season = 11.0 + 7.0 * np.sin(2 * np.pi * (day.timetuple().tm_yday - 110) / 365.25)
    temp = season + rng.normal(0, 3) + 4.0 * np.sin(2 * np.pi * (HOURS - 9) / 24) + rng.normal(0, 0.7, 24)
    rainy_day = rng.random() < 0.35
    rain_hours = rainy_day & (rng.random(24) < 0.4)
    precip = np.where(rain_hours, rng.exponential(1.5, 24), 0.0)
    wind = np.maximum(0.0, rng.gamma(4.0, 4.0) + rng.normal(0, 3, 24))
    return {"forecast_temp_c": np.round(temp, 1), "forecast_precip_mm": np.round(precip, 1),
            "forecast_wind_kmh": np.round(wind, 1)}


def is_holiday(seed: int, day: dt.date) -> bool:
    return (day.month, day.day) in FIXED_HOLIDAYS or _rng(seed, "holiday", day.toordinal()).random() < 0.02


def _ahead(sensors: dict, seed: int, day: dt.date, stream: str) -> tuple[dict, dict]:
    """Known-ahead columns of one day as (n_sensors, 24) arrays, plus their null masks.

    `stream` separates the per-sensor draws of different sensor sets (base / new), so adding
    new sensors leaves the regular sensors' rows untouched.
    """
    n, key = len(sensors["sensor_id"]), (stream, day.toordinal())
    grid = np.zeros((n, 24), dtype=np.int64)
    cols = {name: np.broadcast_to(values[:, None], (n, 24)).copy()
            for name, values in sensors.items() if name != "propensity"}
    cols["date"] = np.full((n, 24), day.isoformat(), dtype=object)
    cols["hour"] = grid + HOURS
    cols["day_of_week"] = grid + day.weekday()
    cols["is_holiday"] = grid + int(is_holiday(seed, day))
    for name, values in _weather(seed, day).items():
        cols[name] = np.broadcast_to(values, (n, 24)).copy()
    # Evening events (concerts, matches): ~12% of sensors a day, 3-4 hours from 17-20h.
    has_event = _rng(seed, "event", *key).random(n) < 0.12
    start = 17 + (_rng(seed, "event_start", *key).random(n) * 4).astype(int)
    length = 3 + (_rng(seed, "event_length", *key).random(n) < 0.5)
    in_window = (HOURS >= start[:, None]) & (HOURS < (start + length)[:, None])
    cols["scheduled_event"] = (has_event[:, None] & in_window).astype(np.int64)
    cols["roadworks"] = grid + (_rng(seed, "roadworks", *key).random(n) < 0.03)[:, None]
    nulls = {name: _rng(seed, "null", name, *key).random((n, 24)) < FORECAST_NULL_RATE
             for name in ("forecast_temp_c", "forecast_precip_mm", "forecast_wind_kmh")}
    return cols, nulls


def _hour_effect(hour: np.ndarray, weekend: np.ndarray, rush_scale: np.ndarray) -> np.ndarray:
    """Weekdays: morning (8h) and evening (17-18h) peaks; weekends: one broad midday hump."""
    night = -1.5 * ((hour <= 5) | (hour >= 23))
    weekday = rush_scale * (2.8 * np.exp(-(((hour - 8) / 1.2) ** 2))
                            + 2.6 * np.exp(-(((hour - 17.5) / 1.6) ** 2))) \
        + 0.9 * np.exp(-(((hour - 13) / 4) ** 2))
    weekend_curve = 1.8 * np.exp(-(((hour - 14) / 3.5) ** 2))
    return night + np.where(weekend, weekend_curve, weekday)


def _logit(sensors: dict, cols: dict, seed: int, day: dt.date, stream: str) -> np.ndarray:
    """Latent congestion logit of every (sensor, hour)."""
    n = len(sensors["sensor_id"])
    road = sensors["road_type"]
    road_effect = np.vectorize(ROAD_EFFECT.get, otypes=[float])(road)[:, None]
    rush = np.vectorize(ROAD_RUSH.get, otypes=[float])(road)[:, None]
    weekend = (cols["day_of_week"] >= 5) | (cols["is_holiday"] == 1)  # holidays run like Sundays
    rain = np.minimum(cols["forecast_precip_mm"], 4.0) / 4.0
    rng = _rng(seed, "noise", stream, day.toordinal())
    return (INTERCEPT
            + _hour_effect(cols["hour"], weekend, rush)
            + road_effect
            - 0.15 * (sensors["lanes"][:, None] - 2)  # more lanes absorb more traffic
            + 0.4 * (sensors["district"] == "central")[:, None]
            + 1.0 * rain
            + 0.4 * (cols["forecast_temp_c"] < 0)  # ice
            + 1.8 * cols["scheduled_event"]
            + 1.3 * cols["roadworks"]
            + sensors["propensity"][:, None]
            + 0.3 * rng.standard_normal((n, 1))  # a sensor's good or bad day
            + 0.4 * rng.standard_normal((n, 24)))


def _outcomes(sensors: dict, cols: dict, logit: np.ndarray, seed: int, day: dt.date,
              stream: str) -> tuple[dict, dict]:
    """The label and the readings that follow from the latent state, plus null masks."""
    n = logit.shape[0]
    rng = _rng(seed, "outcome", stream, day.toordinal())
    p = 1 / (1 + np.exp(-logit))
    congested = (rng.random((n, 24)) < p).astype(np.int64)
    load = 1 / (1 + np.exp(-(logit + 2.0)))  # how close to capacity the segment runs
    capacity = np.vectorize(CAPACITY.get, otypes=[float])(sensors["road_type"])[:, None]
    flow = capacity * sensors["lanes"][:, None] * load * rng.lognormal(0, 0.15, (n, 24))
    flow = np.where(congested == 1, flow * rng.uniform(0.7, 0.9, (n, 24)), flow)  # flow breaks down
    limit = sensors["speed_limit_kmh"][:, None].astype(float)
    speed = np.where(congested == 1, limit * rng.uniform(0.1, 0.35, (n, 24)),
                     limit * (0.95 - 0.3 * load) * rng.normal(1, 0.05, (n, 24)))
    occupancy = np.where(congested == 1, rng.uniform(0.45, 0.95, (n, 24)),
                         np.clip(0.6 * load * rng.uniform(0.8, 1.2, (n, 24)), 0, 1))
    cols = {
        "vehicle_count": np.round(flow).astype(np.int64),
        "avg_speed_kmh": np.round(np.maximum(speed, 0), 1),
        "occupancy": np.round(occupancy, 3),
        "incident_reports": rng.poisson(np.where(congested == 1, 3.0, 0.1)),
        "congested": congested,
    }
    nulls = {name: rng.random((n, 24)) < READING_NULL_RATE
             for name in ("vehicle_count", "avg_speed_kmh", "occupancy")}
    return cols, nulls


class Frame:
    """One day's table as (n_sensors, 24) arrays keyed by column, with null masks."""

    def __init__(self, cols: dict, nulls: dict):
        self.cols, self.nulls = cols, nulls
        self.renamed: dict[str, str] = {}  # schema name -> name written (a logging change)

    @property
    def n_rows(self) -> int:
        return self.cols["hour"].size

    @property
    def n_sensors(self) -> int:
        return self.cols["hour"].shape[0]

    def null(self, name: str) -> np.ndarray:
        return self.nulls.get(name, np.zeros(self.cols[name].shape, dtype=bool))

    def concat(self, other: Frame) -> Frame:
        names = set(self.nulls) | set(other.nulls)
        return Frame({k: np.concatenate([v, other.cols[k]]) for k, v in self.cols.items()},
                     {k: np.concatenate([self.null(k), other.null(k)]) for k in names})


def _day(sensors: dict, seed: int, day: dt.date, stream: str = "base", event_spike=None) -> Frame:
    """The full landed table of one day. `event_spike`: (sensor mask, hours) with parades."""
    cols, nulls = _ahead(sensors, seed, day, stream)
    if event_spike is not None:
        block = np.ix_(*event_spike)
        cols["scheduled_event"][block] = 1
    logit = _logit(sensors, cols, seed, day, stream)
    if event_spike is not None:
        logit[block] += 2.5  # crowds: far worse than an ordinary evening event
    readings, reading_nulls = _outcomes(sensors, cols, logit, seed, day, stream)
    if event_spike is not None:
        spike = np.round(readings["vehicle_count"][block] * 2.5)
        readings["vehicle_count"][block] = np.minimum(spike, 20000).astype(np.int64)
    return Frame({**cols, **readings}, {**nulls, **reading_nulls})


# ------------------------------------------------------------------------------ scenarios


def _some_sensors(seed: int, day: dt.date, n: int, share: float) -> np.ndarray:
    """A boolean mask choosing ceil(share * n) sensors for a scenario."""
    k = int(np.ceil(share * n))
    chosen = _rng(seed, "scenario", day.toordinal()).permutation(n)[:k]
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return mask


def _ids(frame: Frame, mask: np.ndarray) -> list[str]:
    return [str(s) for s in frame.cols["sensor_id"][mask, 0]]


def _spike_block(seed: int, day: dt.date, n: int) -> tuple[np.ndarray, np.ndarray]:
    """event_spike: (sensor mask, hours) of the parades; applied before the label is drawn."""
    return _some_sensors(seed, day, n, 0.15), np.arange(6, 24)


# Each effect rewrites a landed frame in place (or returns a new one) and reports
# (frame, touched features, fraction of rows touched, details) for the ground truth.


def _event_spike(frame: Frame, seed: int, day: dt.date):
    mask, hours = _spike_block(seed, day, frame.n_sensors)
    details = {"sensor_ids": _ids(frame, mask), "hours": [int(h) for h in hours]}
    return frame, ["scheduled_event", "vehicle_count", "congested"], mask.mean() * len(hours) / 24, details


def _road_closure(frame: Frame, seed: int, day: dt.date):
    """Closed segments still report, but read zero all day."""
    mask = _some_sensors(seed, day, frame.n_sensors, 0.15)
    for name in ("vehicle_count", "avg_speed_kmh", "occupancy"):
        frame.cols[name][mask] = 0
        frame.nulls[name][mask] = False
    return frame, ["vehicle_count", "avg_speed_kmh", "occupancy"], mask.mean(), {"sensor_ids": _ids(frame, mask)}


def _new_sensors(frame: Frame, seed: int, day: dt.date):
    """Sensors installed since training: valid ids, never seen (the same ones on every day)."""
    count = int(np.ceil(0.15 * frame.n_sensors))
    new = make_sensors(seed, count, first_id=NEW_SENSOR_FIRST_ID, kind="new")
    extra = _day(new, seed, day, stream="new")
    frame = frame.concat(extra)
    return frame, ["sensor_id"], extra.n_rows / frame.n_rows, {"sensor_ids": [str(s) for s in new["sensor_id"]]}


def _logging_format_change(frame: Frame, seed: int, day: dt.date):
    """Upstream logging changed: a renamed column in other units, more nulls, text in a number."""
    c, rng = frame.cols, _rng(seed, "scenario", day.toordinal())
    c["avg_speed_kmh"] = np.round(c["avg_speed_kmh"] / KMH_PER_MPH, 1)
    frame.renamed = {"avg_speed_kmh": "avg_speed_mph"}
    frame.nulls["forecast_temp_c"] |= rng.random(c["hour"].shape) < 0.30
    na = rng.random(c["hour"].shape) < 0.15
    c["vehicle_count"] = np.where(na, "n/a", c["vehicle_count"].astype(str)).astype(object)
    frame.nulls["vehicle_count"] &= ~na
    details = {"renamed": dict(frame.renamed),
               "forecast_temp_c_null_fraction": round(float(frame.nulls["forecast_temp_c"].mean()), 4),
               "vehicle_count_na_fraction": round(float(na.mean()), 4)}
    return frame, ["avg_speed_kmh", "forecast_temp_c", "vehicle_count"], 1.0, details


def _weather_model_shift(frame: Frame, seed: int, day: dt.date):
    """The weather provider switched to Fahrenheit; the weather itself (and traffic) is unchanged."""
    frame.cols["forecast_temp_c"] = np.round(frame.cols["forecast_temp_c"] * 1.8 + 32, 1)
    return frame, ["forecast_temp_c"], 1.0, {"unit": "fahrenheit"}


def _flood(frame: Frame, seed: int, day: dt.date):
    """A system failure: labels forced to 1 and readings frozen for a block of hours."""
    mask, hours = _some_sensors(seed, day, frame.n_sensors, 0.25), np.arange(6, 19)
    block = np.ix_(mask, hours)
    frame.cols["congested"][block] = 1
    for name in ("occupancy", "avg_speed_kmh"):
        frame.cols[name][block] = frame.cols[name][mask, hours[0]][:, None]
    details = {"sensor_ids": _ids(frame, mask), "hours": [int(h) for h in hours],
               "stuck_readings": ["occupancy", "avg_speed_kmh"]}
    return frame, ["congested"], mask.mean() * len(hours) / 24, details


def _leaky_feature(frame: Frame, seed: int, day: dt.date):
    """Upstream back-fills `scheduled_event` from what happened: the label leaks into a feature."""
    frame.cols["scheduled_event"] = frame.cols["congested"].copy()
    return frame, ["scheduled_event"], 1.0, {"copied_from": "congested"}


EFFECTS = {"event_spike": _event_spike, "road_closure": _road_closure, "new_sensors": _new_sensors,
           "logging_format_change": _logging_format_change, "weather_model_shift": _weather_model_shift,
           "flood": _flood, "leaky_feature": _leaky_feature}


def _landing_day(sensors: dict, seed: int, day: dt.date, scenario: str) -> tuple[Frame, dict]:
    """The landed frame of one day under `scenario`, and its ground-truth entry."""
    n = len(sensors["sensor_id"])
    spike = _spike_block(seed, day, n) if scenario == "event_spike" else None
    frame = _day(sensors, seed, day, event_spike=spike)
    touched, fraction, details = [], 0.0, {}
    if scenario in EFFECTS:
        frame, touched, fraction, details = EFFECTS[scenario](frame, seed, day)
    truth = {"date": day.isoformat(), "scenario": scenario, "features": touched,
             "rows_touched_fraction": round(float(fraction), 4), "details": details,
             "rows": frame.n_rows, "label_rate": round(float(frame.cols["congested"].mean()), 4)}
    return frame, truth


# -------------------------------------------------------------------------------- writing


def _to_arrow(values: np.ndarray, nulls: np.ndarray, kind: str) -> pa.Array:
    """A 1-D NumPy column → Arrow, built from buffers: `pa.array` would import pandas, which
    costs more than the whole simulation."""
    validity = pa.py_buffer(np.packbits(~nulls, bitorder="little")) if nulls.any() else None
    if kind != "string":
        data = np.ascontiguousarray(values, dtype=np.float64 if kind == "float" else np.int64)
        return pa.Array.from_buffers(pa.float64() if kind == "float" else pa.int64(), len(data),
                                     [validity, pa.py_buffer(data)], null_count=int(nulls.sum()))
    raw = np.where(nulls, "", values).astype("S")  # fixed-width ASCII, zero-padded
    lengths = np.char.str_len(raw)
    chars = raw.view(np.uint8).reshape(len(raw), raw.dtype.itemsize)
    data = chars[np.arange(raw.dtype.itemsize) < lengths[:, None]]  # drop the padding
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), len(raw),
                                 [validity, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())],
                                 null_count=int(nulls.sum()))


def _write_partition(folder: Path, day: dt.date, frame: Frame, columns: list[str], schema: Schema) -> Path:
    """dt=DAY/part-00000.csv, then _SUCCESS: a reader that waits for the marker never sees a
    half-written day (the csv goes to a temporary name and is renamed into place)."""
    types = {f.name: f.type for f in schema.features} | {schema.label: "int"}
    arrays = []
    for name in columns:
        if name not in frame.cols:
            raise ValueError(f"{schema.path}: column {name!r} is not simulated")
        values = frame.cols[name].reshape(-1)
        kind = "string" if values.dtype == object else types[name]  # e.g. "n/a" in a number
        arrays.append(_to_arrow(values, frame.null(name).reshape(-1), kind))
    table = pa.Table.from_arrays(arrays, names=[frame.renamed.get(c, c) for c in columns])
    part = folder / f"dt={day.isoformat()}"
    part.mkdir(parents=True, exist_ok=True)
    (part / "_SUCCESS").unlink(missing_ok=True)
    tmp = part / ".part-00000.csv.tmp"
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")
    pacsv.write_csv(table, str(tmp), options)
    os.replace(tmp, part / "part-00000.csv")
    (part / "_SUCCESS").touch()
    return part


def _as_date(value) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _check(start: dt.date, days: int, sensors: int, forecast_days: int, scenarios: dict) -> dict:
    """Validated arguments; returns scenarios as {date: name}. Raises ValueError."""
    if days < 1:
        raise ValueError(f"days must be >= 1, not {days}")
    if not 1 <= sensors <= MAX_SENSORS:
        raise ValueError(f"sensors must be in 1..{MAX_SENSORS}, not {sensors}")
    if forecast_days < 0:
        raise ValueError(f"forecast days must be >= 0, not {forecast_days}")
    end = start + dt.timedelta(days=days - 1)
    out = {}
    for when, name in scenarios.items():
        day = _as_date(when)
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
        if not start <= day <= end:
            raise ValueError(f"scenario date {day} is outside the simulated days {start}..{end}")
        out[day] = name
    return out


def default_schema_path() -> Path:
    from ml import config

    return Path(config.PROJECT_ROOT) / "include/schemas/traffic.yaml"


def simulate(out, start_date, days: int, seed: int, sensors: int = 200,
             scenarios: dict | None = None, forecast_days: int = 7, schema_path=None) -> dict:
    """Write landing/, forecast/ and ground_truth.json under `out`; return the ground truth."""
    start = _as_date(start_date)
    plan = _check(start, days, sensors, forecast_days, scenarios or {})
    schema = load_schema(str(schema_path or default_schema_path()))
    ahead = [f.name for f in schema.features if f.known == "ahead"]
    root = to_path(out)
    base = make_sensors(seed, sensors)
    truth = {"seed": seed, "sensors": sensors, "start_date": start.isoformat(), "days": []}
    for i in range(days + forecast_days):
        day = start + dt.timedelta(days=i)
        line = f"{day}"
        if i < days:
            frame, entry = _landing_day(base, seed, day, plan.get(day, "normal"))
            _write_partition(root / "landing", day, frame, schema.columns, schema)
            truth["days"].append(entry)
            line += (f"  landing {entry['rows']} rows, {entry['scenario']},"
                     f" congested {entry['label_rate']:.1%}")
        forecast = Frame(*_ahead(base, seed, day, "base"))
        _write_partition(root / "forecast", day, forecast, ahead, schema)
        print(f"{line}  forecast {forecast.n_rows} rows", flush=True)
    tmp = root / ".ground_truth.json.tmp"
    tmp.write_text(json.dumps(truth, indent=2) + "\n")
    os.replace(tmp, root / "ground_truth.json")
    return truth


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ml.simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder or file:// URI (the bucket)")
    parser.add_argument("--start-date", required=True, help="YYYY-MM-DD")
    parser.add_argument("--days", type=int, required=True, help="days of landed data")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--forecast-days", type=int, default=7,
                        help="forecast partitions beyond the last landed day")
    parser.add_argument("--scenario", action="append", default=[], metavar="DATE=NAME",
                        help=f"inject a scenario on a landed day; NAME in: {', '.join(SCENARIOS)}")
    parser.add_argument("--schema", default=None, help="feature contract (default: traffic.yaml)")
    args = parser.parse_args(argv)
    scenarios = {}
    try:
        start = _as_date(args.start_date)
        for item in args.scenario:
            when, sep, name = item.partition("=")
            if not sep:
                raise ValueError(f"--scenario wants DATE=NAME, not {item!r}")
            if _as_date(when) in scenarios:
                raise ValueError(f"two scenarios for {when}")
            scenarios[_as_date(when)] = name
        _check(start, args.days, args.sensors, args.forecast_days, scenarios)
    except ValueError as exc:
        parser.error(str(exc))
    return simulate(args.out, start, args.days, args.seed, sensors=args.sensors, scenarios=scenarios,
                    forecast_days=args.forecast_days, schema_path=args.schema)


if __name__ == "__main__":
    main()
