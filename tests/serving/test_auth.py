"""API keys: 401 without a key, 403 with a wrong one, both header forms, constant-time comparison,
and no key in any log line, error message or metric."""

from __future__ import annotations

import logging

import pytest

from ml.serving import auth
from tests.serving.conftest import ADMIN_KEY, API_KEY, OTHER_KEY, instance

BODY = {"instances": [instance()]}
WRONG_KEY = "wrong-key-0a9b8c7d6e"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"},
                                     {"X-API-Key": "  "}])
def test_no_key_is_401(make_client, headers):
    client = make_client()
    r = client.post("/predict", json=BODY, headers=headers)
    assert r.status_code == 401
    assert r.json()["field"] == "authorization" and r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {WRONG_KEY}"}, {"X-API-Key": WRONG_KEY},
                                     {"X-API-Key": API_KEY[:-1]}, {"X-API-Key": API_KEY + "x"},
                                     {"Authorization": f"Bearer {ADMIN_KEY}"}])  # an admin key is no API key
def test_wrong_key_is_403(make_client, headers):
    client = make_client()
    r = client.post("/predict", json=BODY, headers=headers)
    assert r.status_code == 403 and r.json() == {"error": "invalid API key", "field": "authorization"}


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {API_KEY}"}, {"authorization": f"bearer {OTHER_KEY}"},
                                     {"X-API-Key": API_KEY}, {"x-api-key": OTHER_KEY}])
def test_either_header_and_every_configured_key_pass(make_client, headers):
    client = make_client()
    r = client.post("/predict", json=BODY, headers=headers)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_admin_routes_need_an_admin_key(make_client):
    client = make_client()
    command = {"on": True, "who": "t", "why": "t"}
    assert client.post("/admin/kill-switch", json=command).status_code == 401
    assert client.post("/admin/kill-switch", json=command, headers={"X-API-Key": API_KEY}).status_code == 403
    assert client.post("/admin/reload", headers={"X-API-Key": API_KEY}).status_code == 403
    assert client.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY}).status_code == 200


def test_health_and_metrics_are_open(make_client):
    client = make_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_keys_never_reach_logs_responses_or_metrics(make_client, caplog, capfd):
    """Every logger at DEBUG, stdout and stderr of the process: none holds a key, right or wrong."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    client = make_client()
    bodies = []
    for headers in ({"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": OTHER_KEY},
                    {"Authorization": f"Bearer {WRONG_KEY}"}, {"X-API-Key": WRONG_KEY},
                    {"X-API-Key": ADMIN_KEY}):
        for body in (BODY, {"instances": [instance(hour=99)]}):
            r = client.post("/predict", json=body, headers=headers)
            bodies.append(r.text + str(dict(r.headers)))
    r = client.post("/admin/kill-switch", json={"on": "yes"}, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 422
    bodies += [r.text, client.get("/metrics").text, client.get("/healthz").text]
    client.__exit__(None, None, None)  # shutdown logs too
    out, err = capfd.readouterr()
    assert caplog.records  # the capture works: the service did log
    text = "\n".join([caplog.text, out, err, *bodies, *(str(r.__dict__) for r in caplog.records)])
    for key in (API_KEY, OTHER_KEY, WRONG_KEY, ADMIN_KEY):
        assert key not in text
    assert "EnvKeys(PRODML_API_KEYS)" == repr(auth.EnvKeys("PRODML_API_KEYS"))


def test_the_comparison_visits_every_key_without_stopping(monkeypatch):
    """hmac.compare_digest against each configured key, even after a match: the time taken does not
    say which key matched."""
    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append(b) or real(a, b))
    keys = (b"k1-aaaa", b"k2-bbbb", b"k3-cccc")
    assert auth.matches("k1-aaaa", keys) and len(calls) == 3
    calls.clear()
    assert not auth.matches("nope", keys) and len(calls) == 3
    assert not auth.matches("anything", ()) and auth.check({"x-api-key": "k"}, auth.EnvKeys("PRODML_UNSET_VAR")) == 403


class _FakeSecretManager:
    def __init__(self):
        self.value, self.calls = "s-one,s-two\n", 0

    def access_secret_version(self, request):
        self.calls += 1
        assert request == {"name": "projects/p/secrets/keys/versions/latest"}

        class Payload:
            data = self.value.encode()

        class Response:
            payload = Payload()

        return Response()


def test_secret_manager_keys_are_cached_for_their_ttl():
    client = _FakeSecretManager()
    source = auth.SecretManagerKeys("projects/p/secrets/keys/versions/latest", ttl_s=3600, client=client)
    assert source.keys() == (b"s-one", b"s-two")
    client.value = "s-three"
    assert source.keys() == (b"s-one", b"s-two") and client.calls == 1  # within the TTL: no call
    source.ttl_s = 0
    assert source.keys() == (b"s-three",) and client.calls == 2  # rotated
    assert "s-one" not in repr(source)
    assert isinstance(auth.key_source({"source": "secret_manager", "secret": "projects/p/secrets/k/versions/1"}),
                      auth.SecretManagerKeys)
    with pytest.raises(ValueError, match="env or secret_manager"):
        auth.key_source({"source": "vault"})
