"""Shared helpers for the benchmarks: simulated data (cached), timing, tables, JSON results."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "include/schemas/traffic.yaml"
DATA = Path(os.environ.get("PRODML_BENCH_DATA", ROOT / "benchmarks" / ".data"))
RESULTS = Path(os.environ.get("PRODML_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
START = dt.date(2026, 11, 1)
SEED = 11
HOURS_PER_DAY = 24
MAX_SENSORS = 5000  # ml.simulate.MAX_SENSORS


def shape_for(rows: int) -> tuple[int, int]:
    """(sensors, days) whose simulated landing data holds about `rows` rows (24 per sensor-day)."""
    days = max(1, math.ceil(rows / (HOURS_PER_DAY * MAX_SENSORS)))
    sensors = max(1, min(MAX_SENSORS, math.ceil(rows / (HOURS_PER_DAY * days))))
    return sensors, days


def simulated(rows: int, forecast_days: int = 0) -> dict:
    """Simulated landing (+ forecast) partitions of about `rows` rows, cached under benchmarks/.data."""
    from ml.simulate import simulate

    sensors, days = shape_for(rows)
    folder = DATA / f"sim-s{sensors}-d{days}-f{forecast_days}-seed{SEED}"
    done = folder / "_DONE"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        with quiet_stdout():
            simulate(folder, START, days, SEED, sensors=sensors, forecast_days=forecast_days)
        done.write_text("ok\n")
    landing = sorted((folder / "landing").glob("dt=*/part-*.csv"))
    forecast_dates = sorted(p.name.removeprefix("dt=") for p in (folder / "forecast").glob("dt=*"))
    return {"folder": folder, "sensors": sensors, "days": days, "rows": sensors * days * HOURS_PER_DAY,
            "landing_files": landing, "forecast": folder / "forecast", "forecast_dates": forecast_dates}


class quiet_stdout:
    """The simulator prints one line per day; keep the benchmark tables readable."""

    def __enter__(self):
        import contextlib
        import io

        self._ctx = contextlib.redirect_stdout(io.StringIO())
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def timed(fn, repeat: int = 1, warmup: int = 0):
    """(median seconds, all seconds, last result) of `repeat` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def figure(name: str, baseline_s: float, ours_s: float, rows: int | None, *, aim: float | None = None,
           baseline: str = "", ours: str = "", note: str = "", baseline_rows: int | None = None) -> dict:
    """One comparison. Times are for the same work; when the baseline ran on fewer rows
    (`baseline_rows`), the ratio compares throughputs (rows/s)."""
    if rows is None:  # not a throughput (e.g. parsing one file): compare times
        base_rps = ours_rps = None
        ratio = baseline_s / ours_s
    else:
        baseline_rows = baseline_rows or rows
        base_rps = round(baseline_rows / baseline_s, 1)
        ours_rps = round(rows / ours_s, 1)
        ratio = (rows / ours_s) / (baseline_rows / baseline_s)
    return {"figure": name, "baseline": baseline, "ours": ours, "rows": rows, "baseline_rows": baseline_rows,
            "baseline_s": round(baseline_s, 4), "ours_s": round(ours_s, 4), "ratio": round(ratio, 2),
            "baseline_rows_per_s": base_rps, "ours_rows_per_s": ours_rps,
            "aim": aim, "met": None if aim is None else ratio >= aim, "note": note}


def _rate(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "date": dt.date.today().isoformat()}


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def print_table(title: str, figures: list[dict]) -> None:
    print(f"\n== {title}")
    head = ("figure", "baseline s", "ours s", "ratio", "aim", "ours rows/s", "baseline rows/s")
    rows = []
    for f in figures:
        aim = "" if f["aim"] is None else f"≥{f['aim']:g}x {'ok' if f['met'] else 'MISS'}"
        base = f"{f['baseline_s']:.3f}" + ("" if f["baseline_rows"] == f["rows"] else f" ({f['baseline_rows']} rows)")
        rows.append((f["figure"], base, f"{f['ours_s']:.3f}", f"{f['ratio']:.1f}x", aim,
                     _rate(f["ours_rows_per_s"]), _rate(f["baseline_rows_per_s"])))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                                  strict=True))))
    for f in figures:
        if f.get("note"):
            print(f"  - {f['figure']}: {f['note']}")
