"""B3 DAG parsing: every file in dags/ vs a naive twin that imports tensorflow and apache_beam at
top level.

Each measurement is a fresh Python process (so no module cache hides an import): it sets up the
Airflow environment (scripts/airflow_env.apply on a temporary home), imports airflow and its
DagBag (untimed: the DAG processor has them loaded), then times `DagBag(dag_folder=<file>)` — the
parse Airflow itself does. The twin is the same file with `import tensorflow` and
`import apache_beam` inserted after its `from __future__` line, in a temporary folder.
Cross-check: `airflow dags report` over dags/ and over the twins' folder (--no-report skips it).

    python -m benchmarks.dag_parsing [--repeat 3] [--twin-repeat 1] [--no-report]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, figure, print_table, write_result

DAGS = ROOT / "dags"
HEAVY = "import tensorflow  # naive twin\nimport apache_beam  # naive twin\n"

_PROBE = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from scripts import airflow_env
airflow_env.apply(airflow_home={home!r}, data_dir={data!r})
import airflow, airflow.sdk  # noqa: F401  (already imported in a DAG processor)
from airflow.dag_processing.dagbag import DagBag
t0 = time.perf_counter()
bag = DagBag(dag_folder={path!r})
elapsed = time.perf_counter() - t0
print("PARSE_RESULT " + json.dumps({{"s": elapsed, "dags": sorted(bag.dag_ids),
      "errors": {{k: str(v)[:300] for k, v in bag.import_errors.items()}}}}))
"""


def make_twin(src: Path, folder: Path) -> Path:
    """The DAG file with heavy imports at top level (after `from __future__`, which must stay first)."""
    lines = src.read_text().splitlines(keepends=True)
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("from __future__")), 0)
    twin = folder / src.name
    twin.write_text("".join(lines[:at]) + HEAVY + "".join(lines[at:]))
    return twin


def parse_once(path: Path, tmp: Path) -> dict:
    code = _PROBE.format(root=str(ROOT), home=str(tmp / "airflow_home"), data=str(tmp / "data"), path=str(path))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1",
           "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300"}  # measure the twin, do not cap it
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    for line in proc.stdout.splitlines():
        if line.startswith("PARSE_RESULT "):
            out = json.loads(line.removeprefix("PARSE_RESULT "))
            if out["errors"] or not out["dags"]:
                raise RuntimeError(f"{path} did not parse: {out}")
            return out
    raise RuntimeError(f"parse probe failed for {path} (rc {proc.returncode}):\n{proc.stderr[-2000:]}")


def dags_report(dags_folder: Path, tmp: Path) -> dict:
    """`airflow dags report -o json` for a folder: {file name: duration seconds}."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300"}
    setup = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from scripts import airflow_env; "
             f"airflow_env.apply(airflow_home={str(tmp / 'airflow_home')!r}, data_dir={str(tmp / 'data')!r}); "
             "airflow_env.init_db(); "
             f"import os; os.environ['AIRFLOW__CORE__DAGS_FOLDER'] = {str(dags_folder)!r}; "
             "from airflow.__main__ import main; sys.argv = ['airflow', 'dags', 'report', '-o', 'json']; main()")
    proc = subprocess.run([sys.executable, "-c", setup], capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[{")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr or proc.stdout)[-1000:]}
    rows = json.loads(lines[-1])
    out = {}
    for row in rows:
        name = Path(str(row.get("file", ""))).name
        duration = str(row.get("duration", ""))
        out[name] = _seconds(duration)
    return out


def _seconds(text: str) -> float | None:
    """'0:00:00.123456' or '0.12' → seconds."""
    try:
        if ":" in text:
            h, m, s = text.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
        return float(text)
    except ValueError:
        return None


def run(repeat: int = 3, report: bool = True, files: list[Path] | None = None, twin_repeat: int = 1) -> dict:
    files = files or sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
    figures, details = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-dags-") as tmp:
        tmp = Path(tmp)
        twins = tmp / "twins"
        twins.mkdir()
        for src in files:
            twin = make_twin(src, twins)
            ours = [parse_once(src, tmp) for _ in range(repeat)]
            naive = [parse_once(twin, tmp) for _ in range(twin_repeat)]
            ours_s = statistics.median(r["s"] for r in ours)
            naive_s = statistics.median(r["s"] for r in naive)
            f = figure(f"B3 parse {src.name}", naive_s, ours_s, None, aim=10,
                       baseline="twin with top-level tensorflow + apache_beam", ours=f"dags/{src.name}",
                       note=f"ours {ours_s:.3f} s {'<' if ours_s < 0.5 else '>='} 0.5 s budget")
            f["under_half_second"] = ours_s < 0.5
            f["ours_all_s"] = [round(r["s"], 4) for r in ours]
            f["baseline_all_s"] = [round(r["s"], 4) for r in naive]
            figures.append(f)
            details[src.name] = {"dags": ours[0]["dags"]}
        cross = {}
        if report:
            cross = {"ours": dags_report(DAGS, tmp), "twins": dags_report(twins, tmp)}
    result = {"repeat": repeat, "twin_repeat": twin_repeat, "figures": figures, "files": details, "dags_report": cross,
              "all_under_half_second": all(f["under_half_second"] for f in figures)}
    print_table("B3 DAG parsing (fresh process each; airflow pre-imported; DagBag per file)", figures)
    if cross:
        print(f"  airflow dags report (s): ours {cross['ours']}  twins {cross['twins']}")
    write_result("dag_parsing", result)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dag_parsing", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--twin-repeat", type=int, default=1,
                        help="the twin takes seconds (tensorflow import): one sample is plenty for the ratio")
    parser.add_argument("--no-report", action="store_true", help="skip the `airflow dags report` cross-check")
    args = parser.parse_args(argv)
    return run(args.repeat, not args.no_report, twin_repeat=args.twin_repeat)


if __name__ == "__main__":
    main()
