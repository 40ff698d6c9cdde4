"""The prediction log: every served prediction reaches `prediction_log` (counted row by row against
the answers), in batches by the background writer, never on the request path, and none is lost
when the warehouse is down for a while or the service shuts down."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time

from ml.features import entity_key
from tests.serving.conftest import DAY, HEAD_KEYS, auth, instance, prediction_log_rows


def _send(client, rows) -> list[dict]:
    out = []
    for row in rows:
        r = client.post("/predict", json={"instances": [row]}, headers=auth())
        assert r.status_code == 200
        out.extend(r.json()["predictions"])
    return out


def _until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_every_prediction_is_logged_in_batches_and_the_rest_at_shutdown(make_client, world):
    started = dt.datetime.now(dt.UTC)
    client = make_client(log_flush_rows=5, log_flush_s=3600)  # only the row count triggers a flush
    service = client.app.state.service
    rows = [instance(*HEAD_KEYS[i % 3]) if i % 2 else instance(f"S07{i:02d}", DAY, i) for i in range(12)]
    served = _send(client, rows)
    # A flush takes every queued row, so how the 12 split into batches depends on when the writer
    # thread runs; what must hold: what is left is under the batch size (it waits for more rows or
    # the shutdown), and nothing is in flight.
    writer = service.log_writer
    _until(lambda: writer.queued < 5 and writer.written + writer.queued == 12)
    client.__exit__(None, None, None)  # shutdown flushes the rest
    logged = {r["prediction_id"]: r for r in prediction_log_rows(world["config"])}
    assert len(logged) == 12 and set(logged) == {p["prediction_id"] for p in served}
    assert service.log_writer.flushes < 12  # batches, not one write per prediction
    for row, answer in zip(rows, served, strict=True):
        entry = logged[answer["prediction_id"]]
        assert (entry["entity_key"], entry["target_date"]) == (entity_key((row["sensor_id"], row["hour"])), row["date"])
        assert (entry["path"], entry["model_version"], entry["score"]) == (answer["path"], answer["model_version"],
                                                                          answer["score"])
        assert json.loads(entry["features"]) == row
        assert entry["features_hash"] == hashlib.sha256(entry["features"].encode()).hexdigest()[:16]
        assert entry["latency_ms"] > 0 and started <= entry["served_at"] <= dt.datetime.now(dt.UTC)
    assert {e["path"] for e in logged.values()} == {"head", "tail"}


def test_the_timer_flushes_a_small_batch(make_client, world):
    client = make_client(log_flush_rows=10_000, log_flush_s=0.2)
    served = _send(client, [instance("S0400", DAY, 1), instance(*HEAD_KEYS[0])])
    _until(lambda: len(prediction_log_rows(world["config"], client)) == 2)
    assert {r["prediction_id"] for r in prediction_log_rows(world["config"], client)} == {
        p["prediction_id"] for p in served}


def test_a_warehouse_outage_delays_the_log_and_never_fails_a_request(make_client, world):
    client = make_client(log_flush_rows=2, log_flush_s=0.1)
    writer = client.app.state.service.log_writer
    real_ship = writer.ship

    def down(entries):
        raise ConnectionError("warehouse unreachable")

    writer.ship = down
    served = _send(client, [instance("S0500", DAY, h) for h in range(6)])
    # The writer retries every 0.1 s, taking the rows out for each try: wait for a moment between tries.
    _until(lambda: writer.failures >= 2 and writer.queued == 6)
    assert writer.written == 0
    assert "ConnectionError" in client.get("/healthz").json()["prediction_log"]["last_error"]
    writer.ship = real_ship
    _until(lambda: writer.written == 6)
    assert {r["prediction_id"] for r in prediction_log_rows(world["config"], client)} == {
        p["prediction_id"] for p in served}


def test_a_long_outage_drops_the_oldest_rows_and_counts_them(make_client, world):
    client = make_client(log_flush_rows=2, log_flush_s=0.1, log_max_queue=3)
    writer = client.app.state.service.log_writer
    real_ship = writer.ship
    writer.ship = lambda entries: (_ for _ in ()).throw(ConnectionError("down"))
    served = _send(client, [instance("S0600", DAY, h) for h in range(5)])
    _until(lambda: writer.dropped == 2)
    assert 'prodml_prediction_log_rows{state="dropped"} 2.0' in client.get("/metrics").text
    writer.ship = real_ship
    _until(lambda: writer.written == 3)
    logged = {r["prediction_id"] for r in prediction_log_rows(world["config"], client)}
    assert logged == {p["prediction_id"] for p in served[2:]}  # the newest three


def test_ctrl_c_on_make_serve_still_flushes_the_log(world):
    """`python -m ml.serving` in its own process group, as a terminal runs `make serve`; Ctrl-C sends
    SIGINT to the whole group, the log process included: the rows still reach the warehouse."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    import httpx

    from ml.config import PROJECT_ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PRODML_SERVE_PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "ml.serving"], cwd=PROJECT_ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        served = []
        for hour in range(3):
            r = httpx.post(f"{url}/predict", json={"instances": [instance("S0800", DAY, hour)]}, headers=auth())
            served += r.json()["predictions"]
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert f"prodml serving on http://127.0.0.1:{port}" in out
    logged = {r["prediction_id"] for r in prediction_log_rows(world["config"])}
    assert logged == {p["prediction_id"] for p in served}
