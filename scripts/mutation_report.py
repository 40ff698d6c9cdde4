"""Run mutmut over the critical modules, then print the score, the cost and the surviving mutants of
each group.

    python scripts/mutation_report.py --run [--max-children N] [GLOB ...]   # `make mutate`
    python scripts/mutation_report.py [GLOB ...]                           # report the last run only

Without GLOBs: the groups in `GROUPS` (the default selection, README "Mutation testing"); with
GLOBs (mutant-name patterns, e.g. 'ml.gate.*'): those, as one group. One mutmut run covers every
group, so its stats run (which test covers which function), clean test run and forced-fail run
happen once (they cost about 40 s each time). A group's cost is the sum of its mutants' pytest
seconds, recorded by tests/mutmut_plugin.py (the children run in parallel, so the sum over the
groups is about max-children times the minutes spent on mutants).

Reads mutmut's result files (mutants/**/*.py.meta). Score = caught / (caught + survived), where
caught = killed by a test, a timeout (the mutant made a test hang: a test noticed) or a crash.
"No tests" (no fast-tier test runs the function) counts as a survivor. Exit status 1 when any
mutant of the selection survived, so a release script can gate on it.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import json
import subprocess
import sys
import time
from pathlib import Path

# The functions that decide something, by module (README "Mutation testing" says why the others
# are left out: record assembly and formatting, test hooks, permission bits, listing, BigQuery
# code that needs the emulator, the lock-wait timing, import-time registration, TensorFlow layers).
GROUPS = {
    "ml.gate": ["ml.gate.x__number*", "ml.gate.x__check*", "ml.gate.x_decide*", "ml.gate.x_check_budgets*",
                "ml.gate.x_promote_if_blessed*"],
    "ml.registry": ["ml.registry.x__normalise_version*", "ml.registry.x__version_numbers*", "ml.registry.x__resolve*",
                    "ml.registry.x__read_aliases*", "ml.registry.x__write_temp*", "ml.registry.x__clean_leftovers*",
                    "ml.registry.x_register*", "ml.registry.x_get*", "ml.registry.x__move_champion*",
                    "ml.registry.x__append_history*", "ml.registry.x__recover_history*", "ml.registry.x_promote*",
                    "ml.registry.x_rollback*", "ml.registry.x_attach__*",
                    "ml.registry.x__attach_once*"],
    "ml.landing": ["ml.landing.*"],
    "ml.file_sets": ["ml.file_sets.*"],
    "ml.warehouse": ["ml.warehouse.x__check_ident*", "ml.warehouse.x_render*", "ml.warehouse.x__check_partition*",
                     "ml.warehouse.xǁWarehouseǁread_sql*", "ml.warehouse.xǁWarehouseǁrun_sql_file*",
                     "ml.warehouse.xǁWarehouseǁensure_tables*", "ml.warehouse.xǁDuckDBWarehouseǁ*"],
    "ml.features": ["ml.features.x__parse_feature*", "ml.features.x__check_columns*", "ml.features.x_entity_key*",
                    "ml.features.x_read_header*", "ml.features.x_parse_numbers*", "ml.features.x_read_csv_files*",
                    "ml.features.x_split_bucket*"],
    "ml.validate": ["ml.validate.suite.*", "ml.validate.x__file_level*", "ml.validate.x__column_problem*"],
    "ml.drift.metrics": ["ml.drift.metrics.x_[!m]*", "ml.drift.metrics.xǁPairǁ*"],
    "ml.drift.check": ["ml.drift.check.x_compare*", "ml.drift.check.x__decide*", "ml.drift.check.x__breached*"],
    "ml.drift.config": ["ml.drift.config.*"],
}
DETECTED = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout",
            255: "timeout", -11: "segfault", -9: "segfault"}
SURVIVED = {0: "survived", 5: "no tests", 33: "no tests"}
MUTMUT = str(Path(sys.executable).parent / "mutmut")


def run(groups: dict[str, list[str]], max_children: int) -> float:
    """One mutmut run over every group's patterns (its log: mutants/run.log); its minutes."""
    patterns = [p for group in groups.values() for p in group]
    start = time.monotonic()
    print(f"mutating {', '.join(groups)} ...", flush=True)
    with open(Path("mutants") / "run.log", "w") as log:
        code = subprocess.run([MUTMUT, "run", "--max-children", str(max_children), *patterns],
                              stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        print(f"mutmut failed (exit {code}); its log, mutants/run.log, ends:")
        print(Path(log.name).read_text()[-3000:])
        raise SystemExit(2)
    return (time.monotonic() - start) / 60


def results() -> dict[str, int | None]:
    """{mutant name: exit code or None (not run)} over every mutated file."""
    out = {}
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        out.update(json.loads(meta.read_text())["exit_code_by_key"])
    return out


def mutant_seconds() -> dict[str, float]:
    """{mutant name: seconds of its pytest session} from tests/mutmut_plugin.py's records."""
    path = Path("mutants") / "mutant-seconds.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return {r["mutant"]: r["seconds"] for r in map(json.loads, lines)}


def report(groups: dict[str, list[str]], minutes: float | None = None, children: int = 0) -> int:
    """The table, the run's minutes (when it just ran, with `children` mutants at a time) and the
    survivors; 1 when any survived."""
    codes = results()
    if not codes:
        print("no mutation results under mutants/: run `make mutate`")
        return 1
    seconds = mutant_seconds()
    total = collections.Counter()
    survivors = []
    print(f"{'group':<20} {'mutants':>8} {'caught':>7} {'survived':>9} {'score':>7} {'test min':>9}")
    for name, patterns in groups.items():
        c = collections.Counter()
        for mutant, code in codes.items():
            if not any(fnmatch.fnmatch(mutant, p) for p in patterns):
                continue
            c["seconds"] += seconds.get(mutant, 0.0)
            if code is None:
                c["not run"] += 1
            elif code in DETECTED:
                c["caught"] += 1
            else:
                c["survived"] += 1
                survivors.append((mutant, SURVIVED.get(code, f"exit {code}")))
        total.update(c)
        judged = c["caught"] + c["survived"]
        score = f"{100 * c['caught'] / judged:6.1f}%" if judged else "     -"
        print(f"{name:<20} {judged:>8} {c['caught']:>7} {c['survived']:>9} {score:>7} {c['seconds'] / 60:9.1f}")
    judged = total["caught"] + total["survived"]
    if not judged:
        print("no mutant of the selection was run")
        return 1
    print(f"{'total':<20} {judged:>8} {total['caught']:>7} {total['survived']:>9} "
          f"{100 * total['caught'] / judged:6.1f}% {total['seconds'] / 60:9.1f}")
    if minutes is not None:
        print(f"mutmut run: {minutes:.1f} minutes, {children} mutants at a time "
              "(test min: the mutants' pytest sessions added up)")
    if total["not run"]:
        print(f"({total['not run']} mutants of the selection were not run: interrupted?)")
    if survivors:
        print("\nsurviving mutants (see one with: .venv/bin/mutmut show NAME):")
        for mutant, why in survivors:
            print(f"  {mutant}  [{why}]")
    return 1 if survivors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="store_true", help="run mutmut first (else report the last run)")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("patterns", nargs="*", help="mutant-name globs (default: GROUPS)")
    args = parser.parse_args(argv)
    groups = {"selected": args.patterns} if args.patterns else GROUPS
    minutes = run(groups, args.max_children) if args.run else None
    return report(groups, minutes, args.max_children)


if __name__ == "__main__":
    sys.exit(main())
