"""Fixtures for the serving tests: the real app on real pieces, all tiny.

- two tiny SavedModels of the traffic schema (`tests/ml/tiny_model.py`: the trainer's export shape,
  built in seconds in a child process, no training), different weights so their scores differ;
- a folder registry and a DuckDB warehouse under the test's own PRODML_DATA (the local profile
  as `make serve` reads it), the first model promoted, a few head rows in `predictions`;
- the app through FastAPI's TestClient (lifespan included) with fast polls and flushes.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from ml import predict
from ml.config import PROJECT_ROOT
from ml.features import entity_key, load_schema

SCHEMA = str(PROJECT_ROOT / "include" / "schemas" / "traffic.yaml")
DAY = "2026-11-20"
API_KEY = "test-key-4f1b9c2e7d"
OTHER_KEY = "test-key-second-88aa"
ADMIN_KEY = "admin-key-6c0d2f51"
HEAD_KEYS = [("S0001", DAY, 8), ("S0001", DAY, 9), ("S0002", DAY, 8)]
HEAD_SCORE = 0.123  # no tiny model answers exactly this


def instance(sensor_id: str = "S0001", date: str = DAY, hour: int = 8, **changes) -> dict:
    """One row of the forecast table (the known-ahead features), valid by default."""
    row = {"sensor_id": sensor_id, "date": date, "hour": hour, "day_of_week": 4, "is_holiday": 0,
           "road_type": "arterial", "lanes": 3, "speed_limit_kmh": 50, "latitude": 51.5, "longitude": -0.1,
           "district": "central", "forecast_temp_c": 7.5, "forecast_precip_mm": 0.2, "forecast_wind_kmh": 12.0,
           "scheduled_event": 0, "roadworks": 0}
    row.update(changes)
    return row


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("serving-models")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    code = ("import sys; from tests.ml.tiny_model import build; "
            "build(sys.argv[1] + '/one', sys.argv[3], scale=0.02); build(sys.argv[2] + '/two', sys.argv[3], scale=-0.02)")
    proc = subprocess.run([sys.executable, "-c", code, str(out), str(out), SCHEMA], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"one": out / "one", "two": out / "two"}


def head_rows(model_version: str, keys=HEAD_KEYS, score: float = HEAD_SCORE) -> pa.Table:
    n = len(keys)
    return pa.table({
        "target_date": pa.array([dt.date.fromisoformat(k[1]) for k in keys], pa.date32()),
        "sensor_id": [k[0] for k in keys], "hour": pa.array([k[2] for k in keys], pa.int64()),
        "entity_key": [entity_key((k[0], k[2])) for k in keys], "score": [score] * n, "predicted_congested": pa.array([0] * n, pa.int64()),
        "model_version": [model_version] * n, "run_id": ["test"] * n,
        "predicted_at": pa.array([dt.datetime(2026, 11, 19, tzinfo=dt.UTC)] * n, pa.timestamp("us", tz="UTC")),
    })


@pytest.fixture
def world(tmp_path, monkeypatch, tiny_models) -> dict:
    """A fresh local profile under tmp_path: registry with v0001 (champion) and v0002, head rows."""
    from ml import config as C
    from ml import registry as R
    from ml import warehouse as W

    monkeypatch.setenv("PRODML_DATA", str(tmp_path))
    monkeypatch.setenv("PRODML_API_KEYS", f"{API_KEY},{OTHER_KEY}")
    monkeypatch.setenv("PRODML_ADMIN_KEYS", ADMIN_KEY)
    config = C.load("local")
    registry = R.connect(config["registry"])
    one = registry.register(str(tiny_models["one"]), {})
    two = registry.register(str(tiny_models["two"]), {})
    registry.promote(one, "test")
    with W.connect(config["warehouse"]) as wh:
        wh.ensure_tables()
        predict.ensure_predictions_table(wh, load_schema(SCHEMA))
        wh.replace_partition("predictions", head_rows(one), "target_date", dt.date.fromisoformat(DAY))
    return {"config": config, "registry": registry, "versions": (one, two), "data": Path(tmp_path)}


FAST = {"poll_s": 0.2, "kill_switch_poll_s": 0.2, "log_flush_s": 0.2, "max_wait_ms": 2}


@pytest.fixture
def make_client(world):
    """make_client(**settings) → a started TestClient; stopped (log flushed) at the end of the test."""
    from fastapi.testclient import TestClient

    from ml.serving.__main__ import build

    clients = []

    def make(**overrides):
        app, _ = build(world["config"], **{**FAST, **overrides})
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def auth(key: str = API_KEY) -> dict:
    return {"Authorization": f"Bearer {key}"}


def warehouse(config, client=None):
    """A warehouse session: the running service's own (its sessions take turns within the process,
    see Service.warehouse_session) or a plain connection when no service runs here."""
    from ml import warehouse as W

    return client.app.state.service.warehouse_session() if client is not None else W.connect(config["warehouse"])


def prediction_log_rows(config, client=None) -> list[dict]:
    with warehouse(config, client) as wh:
        return wh.query(f"SELECT * FROM {config['warehouse']['dataset']}.prediction_log").to_pylist()
