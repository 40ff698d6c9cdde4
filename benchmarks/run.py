"""Run the benchmarks (`make bench`): each measures prodml's code path and its baseline in the same
run, prints a table (baseline, ours, ratio, rows/s) and writes benchmarks/results/<name>.json.

    python -m benchmarks.run [--only B1,B2,B3,B4,B5,drift] [--rows N] [--repeat N]

B1 input pipeline (ml.trainer.make_dataset), B2 Beam transform (ml.transform), B3 DAG parsing
(dags/), B4 batch prediction (ml.prediction_job → DuckDB), B5 online serving (ml.serving under a
bounded open-loop load, benchmarks.serving_bench), drift (benchmarks.drift_bench),
validate (benchmarks.validate_bench: 1M rows, and peak memory on 10M).
`--rows` overrides the row count of B1, B2, B4 and of drift's scale case (1M x 20 by default;
defaults are sized to finish everything in under 10 minutes on 2 cores). Simulated data is
cached under benchmarks/.data (delete it to regenerate). Timings on a shared machine are noisy: medians of repeats where they are cheap.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import RESULTS, machine  # noqa: E402

ALL = ("B1", "B2", "B3", "B4", "B5", "drift", "validate")
DEFAULT_ROWS = {"B1": 240_000, "B2": 240_000, "B4": 120_000}


def _b1(rows, repeat):
    from benchmarks import input_pipeline

    return input_pipeline.run(rows=rows or DEFAULT_ROWS["B1"], repeat=repeat)


def _b2(rows, repeat):
    from benchmarks import beam_transform

    return beam_transform.run(rows=rows or DEFAULT_ROWS["B2"], repeat=1)


def _b3(rows, repeat):
    from benchmarks import dag_parsing

    return dag_parsing.run(repeat=repeat)


def _b4(rows, repeat):
    from benchmarks import batch_prediction

    return batch_prediction.run(rows=rows or DEFAULT_ROWS["B4"], repeat=repeat)


def _b5(rows, repeat):
    from benchmarks import serving_bench

    return serving_bench.run(log_repeat=max(repeat, 3))


def _drift(rows, repeat):
    from benchmarks import drift_bench

    return drift_bench.main(["--repeat", str(max(repeat, 3)), *(["--rows", str(rows)] if rows else [])])


def _validate(rows, repeat):
    from benchmarks import validate_bench

    return validate_bench.run(rows=rows or 1_000_000)


RUNNERS = {"B1": _b1, "B2": _b2, "B3": _b3, "B4": _b4, "B5": _b5, "drift": _drift, "validate": _validate}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--rows", type=int, default=None, help="row count for B1, B2, B4 and drift scale")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the cheap measurements (median)")
    args = parser.parse_args(argv)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(wanted) - set(ALL))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {','.join(ALL)}")
    logging.basicConfig(level=logging.WARNING)
    summary, started = {}, time.perf_counter()
    for name in [n for n in ALL if n in wanted]:
        t0 = time.perf_counter()
        result = RUNNERS[name](args.rows, args.repeat)
        summary[name] = {"seconds": round(time.perf_counter() - t0, 1), "figures": result.get("figures", [])}
        if name == "drift":
            summary[name]["drift"] = {k: result[k] for k in ("doubled_over_base_check", "target_doubled_ratio",
                                                             "doubled_within_target")}
            summary[name]["drift"]["recompute_over_stored"] = result["base"]["recompute_over_stored"]
        print(f"  [{name} took {summary[name]['seconds']} s]", flush=True)
    total = round(time.perf_counter() - started, 1)
    print(f"\n== summary ({machine()['cpus']} CPUs, {total} s)")
    for entry in summary.values():
        if "drift" in entry:
            d = entry["drift"]
            print(f"  drift: stored reference {d['recompute_over_stored']:.1f}x faster than recomputing; doubled "
                  f"columns cost {d['doubled_over_base_check']:.2f}x (target ≤{d['target_doubled_ratio']}x)")
        for f in entry["figures"]:
            aim = "" if f["aim"] is None else f"  aim ≥{f['aim']:g}x: {'ok' if f['met'] else 'MISS'}"
            rate = "" if f["ours_rows_per_s"] is None else f"  {f['ours_rows_per_s']:,.0f} rows/s"
            print(f"  {f['figure']}: {f['ratio']:.2f}x{rate}{aim}")
            if f.get("note"):
                print(f"      {f['note']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps({"machine": machine(), "total_s": total,
                                                      "benchmarks": summary}, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
