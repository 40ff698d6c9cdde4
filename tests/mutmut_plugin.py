"""pytest plugin for `make mutate` only (pyproject.toml `[tool.mutmut] pytest_add_cli_args` loads it).

mutmut forks every mutant's pytest session from one fork server that has collected the tests, so:
- import there, once, the heavy libraries that the tested code imports lazily (TensorFlow/Keras and
  Great Expectations, about 3 s each) instead of in every mutant that reaches them: tests/conftest.py
  does it when this plugin is loaded;
- run each mutant's tests fastest first: mutmut 3.8.1 sorts them by the call times it recorded with
  its other runners, but its fork server passes them in set order, so a mutant that the first fast
  test kills often ran 30-40 others first (8 s instead of 0.1 s);
- record each mutant's seconds (`mutant-seconds.jsonl` in `mutants/`) for the per-group cost that
  scripts/mutation_report.py prints.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

# mutmut runs the tests from inside mutants/, where it keeps its stats
STATS = Path("mutmut-stats.json")
SECONDS = Path("mutant-seconds.jsonl")
_started = 0.0


def _mutant() -> str | None:
    name = os.environ.get("MUTANT_UNDER_TEST", "")
    return name if "__mutmut_" in name else None


@functools.cache
def _call_seconds() -> dict[str, float]:
    """mutmut's recorded call time of each test; read once, in the fork server (its stats are
    written before it starts), and inherited by every mutant it forks."""
    return json.loads(STATS.read_text())["duration_by_test"] if STATS.exists() else {}


def pytest_configure(config):
    global _started
    _started = time.perf_counter()
    if not _mutant():
        _call_seconds()


def pytest_collection_modifyitems(config, items):
    if _mutant():
        items.sort(key=lambda item: (_call_seconds().get(item.nodeid, float("inf")), item.nodeid))


def pytest_unconfigure(config):
    mutant = _mutant()
    if mutant:
        line = json.dumps({"mutant": mutant, "seconds": round(time.perf_counter() - _started, 3)}) + "\n"
        with SECONDS.open("a") as out:  # one short append per mutant: whole lines even from parallel children
            out.write(line)
