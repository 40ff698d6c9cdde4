"""Bad input: each case is a 4xx that names the field, never a 500, and the service answers the
next good request as before."""

from __future__ import annotations

import json

import pytest

from tests.serving.conftest import auth, instance


def _without(name: str) -> dict:
    row = instance()
    del row[name]
    return row


GOOD = {"instances": [instance()]}
CASES = [
    # (case, body (dict → JSON, bytes → raw), status, field, words in the message)
    ("missing feature", {"instances": [_without("road_type")]}, 422, "instances[0].road_type", "missing"),
    ("missing feature, 2nd instance", {"instances": [instance(), _without("lanes")]}, 422, "instances[1].lanes",
     "missing"),
    ("wrong type: string hour", {"instances": [instance(hour="8")]}, 422, "instances[0].hour", "integer"),
    ("wrong type: float hour", {"instances": [instance(hour=8.0)]}, 422, "instances[0].hour", "integer"),
    ("wrong type: bool", {"instances": [instance(is_holiday=True)]}, 422, "instances[0].is_holiday", "integer"),
    ("wrong type: number for a string", {"instances": [instance(sensor_id=1)]}, 422, "instances[0].sensor_id",
     "string"),
    ("wrong type: string for a float", {"instances": [instance(latitude="51.5")]}, 422, "instances[0].latitude",
     "number"),
    ("unknown hour", {"instances": [instance(hour=24)]}, 422, "instances[0].hour", "unknown hour 24"),
    ("negative hour", {"instances": [instance(hour=-1)]}, 422, "instances[0].hour", "unknown hour"),
    ("unknown road type", {"instances": [instance(road_type="boulevard")]}, 422, "instances[0].road_type",
     "unknown road_type"),
    ("out of range", {"instances": [instance(lanes=9)]}, 422, "instances[0].lanes", "outside the range"),
    ("bad sensor id", {"instances": [instance(sensor_id="S12")]}, 422, "instances[0].sensor_id", "does not match"),
    ("bad date", {"instances": [instance(date="20/11/2026")]}, 422, "instances[0].date", "does not match"),
    ("null where presence is 1", {"instances": [instance(district=None)]}, 422, "instances[0].district", "null"),
    ("not finite", b'{"instances": [' + json.dumps(instance()).replace('"latitude": 51.5', '"latitude": NaN')
     .encode() + b"]}", 422, "instances[0].latitude", "finite"),
    ("a feature known only at the event", {"instances": [instance(vehicle_count=120)]}, 422,
     "instances[0].vehicle_count", "event"),
    ("the label", {"instances": [instance(congested=1)]}, 422, "instances[0].congested", "after"),
    ("unknown field", {"instances": [instance(colour="red")]}, 422, "instances[0].colour", "unexpected"),
    ("instance not an object", {"instances": [[1, 2, 3]]}, 422, "instances[0]", "object"),
    ("oversized batch", {"instances": [instance()] * 9}, 413, "instances", "at most 8"),
    ("empty batch", {"instances": []}, 400, "instances", "non-empty"),
    ("instances not a list", {"instances": instance()}, 400, "instances", "list"),
    ("no instances key", {"rows": [instance()]}, 400, "instances", "instances"),
    ("body not an object", [instance()], 400, "instances", "object"),
    ("malformed JSON", b'{"instances": [{"sensor_id": "S0001",', 400, "body", "malformed JSON"),
    ("not UTF-8", b"\xff\xfe\x00", 400, "body", "malformed JSON"),
    ("empty body", b"", 400, "body", "malformed JSON"),
    ("body too large", b'{"instances": [' + b" " * 70_000 + b"]}", 413, "body", "at most"),
]


@pytest.fixture
def client(make_client):
    return make_client(max_instances=8, max_body_bytes=65_536)


@pytest.mark.parametrize(("case", "body", "status", "field", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_naming_the_field_and_the_service_stays_up(client, case, body, status, field, words):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post("/predict", content=raw, headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert words in r.json()["error"]
    after = client.post("/predict", json=GOOD, headers=auth())
    assert after.status_code == 200 and after.json()["predictions"][0]["path"] in ("head", "tail")


def test_optional_features_may_be_null(client):
    """presence < 1 in the schema (the weather forecasts): null is a value the model imputes."""
    row = instance("S0042", forecast_temp_c=None, forecast_precip_mm=None, forecast_wind_kmh=None)
    r = client.post("/predict", json={"instances": [row]}, headers=auth())
    assert r.status_code == 200 and r.json()["predictions"][0]["path"] == "tail"


def test_no_request_in_the_table_made_a_500(client):
    for _, body, *_ in CASES:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        client.post("/predict", content=raw, headers=auth())
    metrics = client.get("/metrics").text
    assert 'status="500"' not in metrics and 'kind="internal"' not in metrics
    bad = [line for line in metrics.splitlines() if line.startswith('prodml_errors_total{kind="bad_input"}')]
    assert bad == [f'prodml_errors_total{{kind="bad_input"}} {float(len(CASES))}']
    assert client.get("/healthz").json()["status"] == "ok"
