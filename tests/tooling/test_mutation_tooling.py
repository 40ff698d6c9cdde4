"""`make mutate`'s own parts: the pytest plugin mutmut loads (tests/mutmut_plugin.py) and the report
(scripts/mutation_report.py), on small made-up runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from scripts import mutation_report

ROOT = Path(__file__).resolve().parents[2]
ORDER_TESTS = textwrap.dedent('''
    def _seen(name):
        with open("seen.txt", "a") as out:
            out.write(name + "\\n")

    def test_slow():
        _seen("slow")

    def test_unknown():
        _seen("unknown")

    def test_fast():
        _seen("fast")

    def test_middle():
        _seen("middle")
''')
GIVEN_ORDER = ["slow", "unknown", "fast", "middle"]


def run_with_plugin(folder: Path, mutant: str) -> list[str]:
    """pytest with the plugin, as mutmut runs a mutant: from the folder that holds mutmut-stats.json,
    the tests named in an unsorted order; the names of the tests in the order they ran."""
    (folder / "test_order.py").write_text(ORDER_TESTS)
    calls = {"duration_by_test": {"test_order.py::test_slow": 3.0, "test_order.py::test_fast": 0.01,
                                  "test_order.py::test_middle": 0.5}}
    (folder / "mutmut-stats.json").write_text(json.dumps(calls))
    env = {**os.environ, "MUTANT_UNDER_TEST": mutant, "PYTHONPATH": str(ROOT)}
    ids = [f"test_order.py::test_{name}" for name in GIVEN_ORDER]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.mutmut_plugin",
                           *ids], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return (folder / "seen.txt").read_text().split()


def test_a_mutants_tests_run_fastest_first_and_its_seconds_are_recorded(tmp_path):
    assert run_with_plugin(tmp_path, "ml.gate.x_decide__mutmut_7") == ["fast", "middle", "slow", "unknown"]
    [line] = (tmp_path / "mutant-seconds.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["mutant"] == "ml.gate.x_decide__mutmut_7"
    assert 0 < record["seconds"] < 300


def test_mutmuts_own_runs_keep_their_order_and_record_nothing(tmp_path):
    assert run_with_plugin(tmp_path, "stats") == GIVEN_ORDER
    assert not (tmp_path / "mutant-seconds.jsonl").exists()


def write_run(folder: Path, codes: dict, seconds: dict) -> None:
    meta = folder / "mutants" / "ml" / "gate.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    lines = [json.dumps({"mutant": name, "seconds": s}) + "\n" for name, s in seconds.items()]
    (folder / "mutants" / "mutant-seconds.jsonl").write_text("".join(lines))


def test_the_report_scores_each_group_and_lists_every_survivor(tmp_path, monkeypatch, capsys):
    codes = {"ml.gate.x_decide__mutmut_1": 1,     # killed
             "ml.gate.x_decide__mutmut_2": 36,    # timeout: a test hung, so a test noticed
             "ml.gate.x_decide__mutmut_3": 0,     # survived
             "ml.gate.x_decide__mutmut_4": 33,    # no test runs the function: a survivor
             "ml.gate.x_decide__mutmut_5": None,  # not run
             "ml.gate.x_other__mutmut_1": 0}      # outside the group
    write_run(tmp_path, codes, {"ml.gate.x_decide__mutmut_1": 30, "ml.gate.x_decide__mutmut_2": 60,
                                "ml.gate.x_decide__mutmut_3": 30, "ml.gate.x_other__mutmut_1": 600})
    monkeypatch.chdir(tmp_path)
    assert mutation_report.report({"gate": ["ml.gate.x_decide*"]}, 2.5, 2) == 1
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(("gate ", "total "))}
    assert rows["gate"] == ["4", "2", "2", "50.0%", "2.0"]  # 4 judged, 2 caught, 2 survived, 120 s
    assert rows["total"] == rows["gate"]
    assert "  ml.gate.x_decide__mutmut_3  [survived]" in out
    assert "  ml.gate.x_decide__mutmut_4  [no tests]" in out
    assert "x_other" not in out
    assert "(1 mutants of the selection were not run: interrupted?)" in out
    assert "mutmut run: 2.5 minutes, 2 mutants at a time" in out


def test_the_report_exits_0_when_every_mutant_is_caught(tmp_path, monkeypatch, capsys):
    write_run(tmp_path, {"ml.gate.x_decide__mutmut_1": 1, "ml.gate.x_decide__mutmut_2": -9}, {})
    monkeypatch.chdir(tmp_path)
    assert mutation_report.report({"gate": ["ml.gate.x_decide*"]}, None) == 0
    out = capsys.readouterr().out
    assert "surviving" not in out and "mutmut run:" not in out
