"""Fixtures for the ml tests. Expensive ones are session-scoped and only built when a test asks."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def trained_model(static_training_run, config) -> dict:
    """The session's one trained model (static_training through Airflow: simulate → Beam transform →
    trainer); held-out landed rows of its first day serve as canaries."""
    from ml.storage import to_path

    run_dir = to_path(static_training_run["run_dir"])
    assert (run_dir / "candidate" / "model" / "saved_model.pb").exists()
    return {"model_dir": str(run_dir / "candidate" / "model"),
            "landing": str(to_path(config["storage"]["landing"]) / "dt=2026-11-01"),
            "eval_pattern": str(run_dir / "transform" / "eval" / "part-*"), "schema_path": config["schema_path"]}
