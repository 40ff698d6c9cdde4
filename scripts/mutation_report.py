"""Print the mutation score per module and the surviving mutants of the last `mutmut run`.

    python scripts/mutation_report.py [MUTANT-NAME GLOBS ...]   # run by `make mutate`

Reads mutmut's result files (mutants/**/*.py.meta). Score = detected / (detected + survived), where
detected = killed by a test, a timeout (the mutant made a test hang: a test noticed) or a crash.
"No tests" (no fast-tier test runs the function) counts as a survivor. Exit status 1 when any
mutant of the selection survived, so a release script can gate on it.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import sys
from pathlib import Path

DETECTED = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout",
            255: "timeout", -11: "segfault", -9: "segfault"}
SURVIVED = {0: "survived", 5: "no tests", 33: "no tests"}


def main(patterns: list[str]) -> int:
    root = Path("mutants")
    metas = sorted(root.rglob("*.py.meta"))
    if not metas:
        print("no mutation results under mutants/: run `make mutate`")
        return 1
    counts = collections.defaultdict(collections.Counter)
    survivors = []
    for meta in metas:
        module = str(meta.relative_to(root)).removesuffix(".py.meta").replace("/", ".")
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            if code is None:
                counts[module]["not run"] += 1
            elif code in DETECTED:
                counts[module]["detected"] += 1
            else:
                counts[module]["survived"] += 1
                survivors.append((name, SURVIVED.get(code, f"exit {code}")))
    total = collections.Counter()
    print(f"{'module':<28} {'mutants':>8} {'killed':>8} {'survived':>9} {'score':>7}")
    for module, c in sorted(counts.items()):
        judged = c["detected"] + c["survived"]
        if not judged:
            continue
        total.update(c)
        print(f"{module:<28} {judged:>8} {c['detected']:>8} {c['survived']:>9} {100 * c['detected'] / judged:>6.1f}%")
    judged = total["detected"] + total["survived"]
    if not judged:
        print("no mutant of the selection was run")
        return 1
    print(f"{'total':<28} {judged:>8} {total['detected']:>8} {total['survived']:>9} "
          f"{100 * total['detected'] / judged:>6.1f}%")
    if total["not run"]:
        print(f"({total['not run']} mutants of the selection were not run: interrupted?)")
    if survivors:
        print("\nsurviving mutants (see one with: .venv/bin/mutmut show NAME):")
        for name, why in survivors:
            print(f"  {name}  [{why}]")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
