"""Validation benchmark: `python -m ml.validate` (compiled Arrow checks, streaming, every row decided)
vs the same Great Expectations suite run by GX's pandas engine on the whole file (what ml.validate
did before: every value a Python object, COMPLETE result format), in the same run.

Each measurement is a fresh process (as a user runs the CLI), so wall time includes imports and
peak RSS is the process's own. "Work" = time for the big file minus time for the smallest valid
file (one sensor-day, 24 rows): what the rows cost, without start-up. Also measured: pyarrow
reading the same file (the floor), and the peak RSS of ml.validate on a file `--large-rows` long
(memory must stay flat as the file grows).

    python -m benchmarks.validate_bench [--rows 1000000] [--large-rows 10000000]

Writes benchmarks/results/validate.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import DATA, ROOT, SCHEMA, figure, print_table, simulated, write_result

# The old engine: the same suite, GX's pandas engine, the whole file as Python strings.
_GX_WHOLE_FILE = r"""
import csv, sys, warnings
import pandas as pd
from ml import features as F
from ml.validate import DEFAULT_LIMITS, build_suites
from ml.validate.gx_report import GXSuite
schema = F.load_schema(sys.argv[1])
with open(sys.argv[2], newline="") as handle:
    rows = list(csv.reader(handle))
header, rows = rows[0], rows[1:]
raw = pd.DataFrame({name: pd.array([r[i].strip() or None for r in rows], dtype=object)
                    for i, name in enumerate(header)})
typed = pd.DataFrame({name: raw[name] if t == "string" else
                      pd.to_numeric(raw[name], errors="coerce").astype("float64")
                      for name, t, _ in [(c, "int" if c == schema.label else schema.feature(c).type, None)
                                         for c in schema.columns]})
suites = build_suites(schema, DEFAULT_LIMITS)
gx = GXSuite(schema, *suites)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for stage, frame in (("raw", raw), ("typed", typed)):
        batch = gx.batch_defs[stage].get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(gx.suites[stage], result_format={"result_format": "COMPLETE",
                                "unexpected_index_column_names": [], "return_unexpected_index_query": False})
print(len(rows))
"""


def big_file(rows: int) -> Path:
    """One CSV of about `rows` simulated rows (21 columns), cached under benchmarks/.data."""
    sim = simulated(rows)
    path = DATA / f"validate-{sim['rows']}.csv"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            for k, part in enumerate(sim["landing_files"]):
                with open(part, "rb") as handle:
                    header = handle.readline()
                    if k == 0:
                        out.write(header)
                    out.write(handle.read())
        tmp.rename(path)
    return path


def repeated(source: Path, times: int) -> Path:
    """`source` with its rows written `times` times (a large file without simulating it)."""
    path = source.with_name(f"{source.stem}-x{times}.csv")
    if not path.exists():
        with open(source, "rb") as handle:
            header, body = handle.readline(), handle.read()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(header)
            for _ in range(times):
                out.write(body)
        tmp.rename(path)
    return path


def _peak_rss(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process, measured by a wrapper whose only child it is."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True); "
               "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")
    done = subprocess.run([sys.executable, "-c", wrapper, *argv], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    wall, rss, code = done.stdout.split()
    if int(code) != 0:  # every file here is valid: anything else is a broken measurement
        raise RuntimeError(f"{argv} exited {code}")
    return float(wall), int(rss) / 1024


def run(rows: int = 1_000_000, large_rows: int = 10_000_000) -> dict:
    import pyarrow.csv as pacsv

    big = big_file(rows)
    small = big_file(24)
    n = sum(1 for _ in open(big, "rb")) - 1
    with tempfile.TemporaryDirectory(prefix="prodml-validate-bench-") as tmp:
        out = Path(tmp)
        # the traffic schema caps a file set at 2M rows; the memory run needs a bigger accepted file
        schema = yaml.safe_load(SCHEMA.read_text())
        schema["row_count"] = [1, 10**12]
        schema_path = out / "traffic_unbounded.yaml"
        schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
        cli = [sys.executable, "-m", "ml.validate", "--schema", str(schema_path), "--json"]

        def ours(path, name):
            return _peak_rss(cli + ["--data", str(path), "--quarantine", str(out / name / "q"),
                                    "--accepted", str(out / name / "a")])

        def old(path):
            return _peak_rss([sys.executable, "-c", _GX_WHOLE_FILE, str(schema_path), str(path)])

        ours_small, _ = ours(small, "small")
        ours_big, ours_rss = ours(big, "big")
        accepted = sum(1 for _ in open(next((out / "big" / "a").glob("*.csv")), "rb")) - 1
        old_small, _ = old(small)
        old_big, old_rss = old(big)
        t0 = time.perf_counter()
        pacsv.read_csv(str(big))
        floor = time.perf_counter() - t0
        large = None
        if large_rows:
            large_path = repeated(big, max(1, round(large_rows / n)))
            large_n = sum(1 for _ in open(large_path, "rb")) - 1
            large_s, large_rss = ours(large_path, "large")
            large = {"rows": large_n, "seconds": round(large_s, 1), "peak_rss_mb": round(large_rss)}
    ours_work, old_work = ours_big - ours_small, old_big - old_small
    figures = []
    if ours_work > 0 and old_work > 0:  # at tiny sizes start-up noise swamps the rows' cost
        figures.append(figure("validate work (N rows − 24 rows)", old_work, ours_work, n, aim=10,
                              baseline="same GX suite, GX pandas engine, whole file",
                              ours="ml.validate (compiled Arrow checks)",
                              note=f"every row decided: {accepted:,} accepted of {n:,}"))
    figures.append(figure("validate end to end (CLI process)", old_big, ours_big, n,
                          baseline="GX pandas engine", ours="python -m ml.validate"))
    print_table(f"validate: {n:,} rows x 21 columns ({big.stat().st_size / 1e6:.0f} MB)", figures)
    print(f"  peak RSS: ours {ours_rss:,.0f} MB, GX pandas engine {old_rss:,.0f} MB; "
          f"pyarrow read (floor) {floor:.2f} s; ours {ours_big:.2f} s ({ours_big / floor:.1f}x the floor, "
          f"start-up {ours_small:.2f} s)")
    if large:
        print(f"  {large['rows']:,} rows: {large['seconds']} s, peak RSS {large['peak_rss_mb']:,} MB "
              f"(aim ≤ 1,536 MB: {'ok' if large['peak_rss_mb'] <= 1536 else 'MISS'})")
    result = {"rows": n, "accepted": accepted, "figures": figures, "floor_s": round(floor, 3),
              "ours_s": round(ours_big, 2), "ours_startup_s": round(ours_small, 2), "ours_peak_rss_mb": round(ours_rss),
              "gx_pandas_s": round(old_big, 2), "gx_pandas_startup_s": round(old_small, 2),
              "gx_pandas_peak_rss_mb": round(old_rss), "large": large}
    write_result("validate", result)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.validate_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=10_000_000, help="0: skip the memory run")
    args = parser.parse_args(argv)
    return run(rows=args.rows, large_rows=args.large_rows)


if __name__ == "__main__":
    main()
