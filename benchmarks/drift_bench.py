"""Drift benchmark: stored reference statistics vs recomputing the reference at every check, the
cost of doubling the columns, and drift at scale (benchmarks/drift_scale.py: 1M rows x 20 columns
against reading the CSVs plus histograms, measured in the same run).

Reference = 14 simulated days, current = 1 day (200 sensors, 20 schema features + the label).
All timings are medians of repeated runs in this process, so the ratios compare like with like.

    python -m benchmarks.drift_bench [--sensors 200] [--repeat 5] [--rows 1000000 (0: no scale case)]

Writes benchmarks/results/drift.json (and drift_scale.json).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from ml import drift as D
from ml.features import load_schema
from ml.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "include/schemas/traffic.yaml"
RESULTS = ROOT / "benchmarks/results/drift.json"
START = dt.date(2024, 3, 4)


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _double(folder: Path, out: Path, schema_path: Path) -> tuple[Path, list[Path]]:
    """A schema and CSVs with every feature duplicated under a new name (`<name>_dup`)."""
    raw = yaml.safe_load(schema_path.read_text())
    names = [f["name"] for f in raw["features"]]
    dups = [{**f, "name": f"{f['name']}_dup", "transform": "none"} for f in raw["features"]]
    raw["features"] = raw["features"] + dups
    raw["name"] = raw["name"] + "_doubled"
    out.mkdir(parents=True, exist_ok=True)
    new_schema = out / "doubled.yaml"
    new_schema.write_text(yaml.safe_dump(raw, sort_keys=False))
    files = []
    for path in sorted(folder.rglob("part-*.csv")):
        target = out / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, newline="") as src, open(target, "w", newline="") as dst:
            reader, writer = csv.reader(src), csv.writer(dst)
            header = next(reader)
            idx = [header.index(n) for n in names]
            writer.writerow(header + [f"{n}_dup" for n in names])
            for row in reader:
                writer.writerow(row + [row[i] for i in idx])
        files.append(target)
    return new_schema, files


def run_case(schema_path: Path, ref_files: list, cur_files: list, config: dict, repeat: int, tmp: Path) -> dict:
    schema = load_schema(str(schema_path))
    reference = D.build_reference(ref_files, schema_path, config)
    stored = Path(D.save_reference(reference, tmp / f"{schema.name}_reference.json"))

    def with_stored():
        ref = D.load_reference(stored)
        return D.check_drift(ref, cur_files, schema_path, config=config)

    def recompute():
        ref = D.build_reference(ref_files, schema_path, config)
        return D.check_drift(ref, cur_files, schema_path, config=config)

    current_table = D.read_table(cur_files, schema)

    def current_side():
        return D.compute_stats(current_table, schema, reference["config"], reference=reference["stats"])

    t_stored, result = _median_time(with_stored, repeat)
    t_recompute, _ = _median_time(recompute, max(2, repeat // 2))
    t_current, _ = _median_time(current_side, repeat * 4)  # cheap and noisy: more samples
    t_read, _ = _median_time(lambda: D.read_table(cur_files, schema), repeat)
    n_features = len(D.monitored(schema))
    return {"features": len(schema.features), "monitored": n_features,
            "reference_rows": reference["stats"]["rows"], "current_rows": current_table.num_rows,
            "check_stored_s": t_stored, "check_recompute_s": t_recompute,
            "recompute_over_stored": t_recompute / t_stored,
            "current_stats_s": t_current, "current_read_s": t_read,
            "current_rows_per_s": current_table.num_rows / t_current,
            "current_rows_per_s_with_read": current_table.num_rows / (t_current + t_read),
            "reference_json_bytes": stored.stat().st_size,
            "reference_values_bytes": stored.with_name(stored.stem + ".values.parquet").stat().st_size, "scores": len(result["scores"])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the scale case (0: skip it)")
    args = parser.parse_args(argv)
    config = yaml.safe_load((ROOT / "include/config/local.yaml").read_text())["drift"]
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        tmp = Path(tmp)
        simulate(tmp / "bucket", START, 15, 7, sensors=args.sensors, forecast_days=0)
        landing = tmp / "bucket" / "landing"
        days = sorted(landing.glob("dt=*"))
        ref_files, cur_files = [d / "part-00000.csv" for d in days[:14]], [days[14] / "part-00000.csv"]
        base = run_case(SCHEMA, ref_files, cur_files, config, args.repeat, tmp)
        dschema, dfiles = _double(landing, tmp / "doubled", SCHEMA)
        by_day = {p.parent.name: p for p in dfiles}
        doubled = run_case(dschema, [by_day[d.name] for d in days[:14]], [by_day[days[14].name]], config,
                           args.repeat, tmp)
    result = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sensors": args.sensors, "repeat": args.repeat, "base": base, "doubled": doubled,
        "doubled_over_base_check": doubled["check_stored_s"] / base["check_stored_s"],
        "doubled_over_base_current_stats": doubled["current_stats_s"] / base["current_stats_s"],
        "target_doubled_ratio": 2.2,
    }
    result["doubled_within_target"] = result["doubled_over_base_check"] <= 2.2
    if args.rows:
        from benchmarks import drift_scale

        result["scale"] = drift_scale.run(rows=args.rows, repeat=1)
        result["figures"] = result["scale"]["figures"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    rows = [("", "base", "doubled"),
            ("schema features / monitored", f"{base['features']} / {base['monitored']}",
             f"{doubled['features']} / {doubled['monitored']}"),
            ("reference rows / current rows", f"{base['reference_rows']} / {base['current_rows']}",
             f"{doubled['reference_rows']} / {doubled['current_rows']}"),
            ("check, stored reference (s)", f"{base['check_stored_s']:.3f}", f"{doubled['check_stored_s']:.3f}"),
            ("check, recompute reference (s)", f"{base['check_recompute_s']:.3f}",
             f"{doubled['check_recompute_s']:.3f}"),
            ("recompute / stored", f"{base['recompute_over_stored']:.1f}x", f"{doubled['recompute_over_stored']:.1f}x"),
            ("current stats only (s)", f"{base['current_stats_s']:.3f}", f"{doubled['current_stats_s']:.3f}"),
            ("current-side rows/s (stats)", f"{base['current_rows_per_s']:,.0f}", f"{doubled['current_rows_per_s']:,.0f}"),
            ("current-side rows/s (read+stats)", f"{base['current_rows_per_s_with_read']:,.0f}",
             f"{doubled['current_rows_per_s_with_read']:,.0f}")]
    width = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:>14}  {r[2]:>14}")
    verdict = "within" if result["doubled_within_target"] else "MISSES"
    print(f"doubled columns / base, full check with stored reference: {result['doubled_over_base_check']:.2f}x "
          f"({verdict} the 2.2x target); current stats only: {result['doubled_over_base_current_stats']:.2f}x")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
