"""The kill switch through the CLI and the admin endpoint: every answer comes from the fallback and
says so, the toggle is an alert with who and why, and switching off brings the models back.
The fallback itself: historical congestion rates per sensor and hour from validated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ml import features as F
from ml.config import PROJECT_ROOT
from ml.serving import fallback as FB
from ml.serving import kill_switch as KS
from ml.storage import to_path
from tests.serving.conftest import ADMIN_KEY, DAY, HEAD_KEYS, SCHEMA, auth, instance, warehouse


def _cli(world, *args) -> dict:
    env = {**os.environ, "PRODML_DATA": str(world["data"]), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "ml.serving.kill_switch", *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _alerts(world, client=None) -> list[dict]:
    with warehouse(world["config"], client) as wh:
        return wh.query("SELECT severity, source, message, context FROM prodml.alerts ORDER BY raised_at").to_pylist()


def _validated(world, rows: list[tuple]) -> None:
    """A validated CSV (sensor_id, hour, congested) with the other columns filled in."""
    folder = to_path(world["config"]["storage"]["validated"])
    folder.mkdir(parents=True, exist_ok=True)
    schema = F.load_schema(SCHEMA)
    lines = [",".join(schema.columns)]
    for sensor, hour, congested in rows:
        row = {**instance(sensor, "2026-11-10", hour), "vehicle_count": 1, "avg_speed_kmh": 30.0,
               "occupancy": 0.5, "incident_reports": "", "congested": congested}
        lines.append(",".join(str(row[c]) for c in schema.columns))
    (folder / "dt=2026-11-10__abc.csv").write_text("\n".join(lines) + "\n")


def _wait(client, on: bool, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = client.get("/healthz").json()
        if health["kill_switch"]["on"] is on:
            return health
        time.sleep(0.05)
    raise AssertionError(f"kill switch not {on} after {timeout_s} s")


def test_cli_on_then_off_switches_every_answer_to_the_fallback_and_back(make_client, world):
    _validated(world, [("S0001", 8, 1), ("S0001", 8, 1), ("S0001", 8, 0), ("S0002", 9, 0)])
    client = make_client()
    rows = [instance(*HEAD_KEYS[0]), instance("S0777", DAY, 8)]
    before = client.post("/predict", json={"instances": rows}, headers=auth()).json()
    assert [p["path"] for p in before["predictions"]] == ["head", "tail"] and "kill_switch" not in before

    state = _cli(world, "on", "--who", "alice", "--why", "scores look wrong")
    assert state["on"] is True and state["who"] == "alice"
    _wait(client, True)
    r = client.post("/predict", json={"instances": rows}, headers=auth())
    body = r.json()
    assert r.status_code == 200 and r.headers["X-Prodml-Kill-Switch"] == "on"
    assert [(p["path"], p["model_version"]) for p in body["predictions"]] == [("fallback", "fallback")] * 2
    assert body["kill_switch"]["on"] is True and body["kill_switch"]["why"] == "scores look wrong"
    # S0001 at 8: 2 of 3 congested, pulled towards hour 8's rate by 2 pseudo-rows; an unknown sensor
    # gets hour 8's rate.
    rates = FB.read(client.app.state.service.settings.fallback_uri)
    assert body["predictions"][0]["score"] == rates.by_key["S0001|8"]
    assert body["predictions"][1]["score"] == rates.by_backoff["8"]
    assert 'prodml_kill_switch 1.0' in client.get("/metrics").text

    assert _cli(world, "status")["on"] is True
    _cli(world, "off", "--who", "bob", "--why", "v0001 checked")
    _wait(client, False)
    after = client.post("/predict", json={"instances": rows}, headers=auth()).json()
    assert [p["path"] for p in after["predictions"]] == ["head", "tail"] and "kill_switch" not in after
    alerts = [a for a in _alerts(world, client) if a["source"] == KS.SOURCE]
    assert [a["severity"] for a in alerts] == ["critical", "info"]
    assert "alice" in alerts[0]["message"] and "scores look wrong" in alerts[0]["message"]
    assert json.loads(alerts[1]["context"]) | {"uri": None} == {"on": False, "who": "bob", "why": "v0001 checked",
                                                                "uri": None}


def test_admin_endpoint_toggles_at_once_and_records_who_and_why(make_client, world):
    client = make_client(kill_switch_poll_s=3600)  # no poll: the endpoint applies it itself
    admin = {"X-API-Key": ADMIN_KEY}
    r = client.post("/admin/kill-switch", json={"on": True, "who": "carol", "why": "incident 42"}, headers=admin)
    assert r.status_code == 200 and r.json()["on"] is True and r.json()["alert_recorded"] is True
    out = client.post("/predict", json={"instances": [instance()]}, headers=auth()).json()
    assert out["predictions"][0]["path"] == "fallback" and out["kill_switch"]["who"] == "carol"
    assert KS.read_state(client.app.state.service.settings.kill_switch_uri).on is True  # stored for the others
    r = client.post("/admin/kill-switch", json={"on": False, "who": "carol", "why": "fixed"}, headers=admin)
    assert r.status_code == 200 and r.json()["on"] is False
    assert client.post("/predict", json={"instances": [instance()]}, headers=auth()).json()["predictions"][0][
        "path"] == "head"
    assert [a["severity"] for a in _alerts(world, client) if a["source"] == KS.SOURCE] == ["critical", "info"]


@pytest.mark.parametrize(("body", "field"), [({"on": "yes", "who": "a", "why": "b"}, "on"),
                                             ({"on": True, "why": "b"}, "who"),
                                             ({"on": True, "who": "a", "why": " "}, "why"),
                                             ([True], "body")])
def test_admin_endpoint_refuses_an_incomplete_command(make_client, body, field):
    client = make_client()
    r = client.post("/admin/kill-switch", json=body, headers={"X-API-Key": ADMIN_KEY})
    assert 400 <= r.status_code < 500 and r.json()["field"] == field
    assert client.get("/healthz").json()["kill_switch"]["on"] is False


def test_set_state_needs_who_and_why(tmp_path):
    with pytest.raises(ValueError, match="who and why"):
        KS.set_state((tmp_path / "k.json").as_uri(), True, who="", why="x")
    assert KS.read_state((tmp_path / "k.json").as_uri()) == KS.OFF


def test_fallback_rates_per_sensor_and_hour_with_backoff(world):
    _validated(world, [("S0001", 8, 1)] * 8 + [("S0001", 8, 0)] * 2 + [("S0002", 8, 0)] * 10
               + [("S0002", 9, 1)] * 4)
    rates = FB.build(world["config"]["storage"]["validated"], F.load_schema(SCHEMA), prior_rows=2.0)
    overall = 12 / 24
    hour8 = (8 + 2 * overall) / (20 + 2)
    assert rates.key_columns == ("sensor_id", "hour") and rates.backoff_columns == ("hour",)
    assert rates.overall == pytest.approx(overall)
    assert rates.by_backoff["8"] == pytest.approx(hour8, abs=1e-6)
    assert rates.by_key["S0001|8"] == pytest.approx((8 + 2 * hour8) / 12, abs=1e-6)
    assert rates.rate(instance("S0001", DAY, 8)) == rates.by_key["S0001|8"]
    assert rates.rate(instance("S9999", DAY, 8)) == rates.by_backoff["8"]  # unknown sensor: its hour
    assert rates.rate(instance("S9999", DAY, 23)) == rates.overall  # unknown hour: overall
    assert FB.FallbackRates.from_json(rates.to_json()) == rates
    assert rates.dates == ("2026-11-10",)
