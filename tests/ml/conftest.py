"""Fixtures for the ml tests. Expensive ones are session-scoped and only built when a test asks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "include/schemas/traffic.yaml"


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> dict:
    """A real SavedModel from the real pipeline on tiny data (simulate → Beam transform → trainer,
    3 days x 20 sensors, 1 epoch; ~35 s). Held-out (eval-split) landed rows serve as canaries."""
    work = tmp_path_factory.mktemp("trained_model")
    sim, transformed, trained = work / "sim", work / "transformed", work / "candidate"
    py = sys.executable
    _run([py, "-m", "ml.simulate", "--out", str(sim), "--start-date", "2026-11-01", "--days", "3",
          "--seed", "5", "--sensors", "20"])
    _run([py, "ml/transform.py", "--input", f"{sim}/landing/dt=*/part-*.csv", "--output", str(transformed),
          "--schema", str(SCHEMA), "--runner=FnApiRunner"])
    _run([py, "-m", "ml.trainer", "--train", f"{transformed}/train/part-*", "--eval",
          f"{transformed}/eval/part-*", "--stats", f"{transformed}/stats.json", "--schema", str(SCHEMA),
          "--output", str(trained), "--epochs", "1"])
    assert (trained / "model" / "saved_model.pb").exists()
    return {"model_dir": str(trained / "model"), "landing": str(sim / "landing"),
            "eval_pattern": f"{transformed}/eval/part-*", "schema_path": str(SCHEMA)}
