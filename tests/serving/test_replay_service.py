"""The replay's service: `python -m ml.serving` in a child process with generated keys, answering
the replay over real HTTP, following the registry on /admin/reload, logging every prediction, and
stopping cleanly on SIGINT (exit code 0, nothing left in the queue)."""

from __future__ import annotations

import httpx

from ml.serving import replay
from tests.serving.conftest import API_KEY, HEAD_KEYS, instance, prediction_log_rows


def test_the_replay_goes_through_a_child_service_that_follows_the_registry_and_stops_cleanly(world):
    one, two = world["versions"]
    head = [instance(sensor_id=s, date=d, hour=h) for s, d, h in HEAD_KEYS]
    tail = [instance(sensor_id=f"S{n:04d}", hour=h) for n in range(10, 14) for h in range(5)]
    with replay.LocalService(log_path=world["data"] / "serving.log") as service:
        health = service.health()
        assert health["champion"] == one and health["head"]["rows"] == len(HEAD_KEYS)

        result = replay.send(service.url, head + tail, service.api_key, workers=3)
        assert result["errors"] == {}
        assert result["paths"] == {"head": len(head), "tail": len(tail)}
        assert result["versions"] == {one: len(head) + len(tail)}

        # only the generated key opens /predict: the environment's key is not handed to the child
        refused = httpx.post(f"{service.url}/predict", json={"instances": head[:1]},
                             headers={"Authorization": f"Bearer {API_KEY}"})
        assert refused.status_code == 403

        world["registry"].promote(two, "test")
        service.reload()
        assert service.health()["champion"] == two
        after = replay.send(service.url, head, service.api_key, workers=1)
        assert after["versions"] == {two: len(head)} and after["paths"] == {"tail": len(head)}  # no head of `two`
        service.wait_logged(len(head) * 2 + len(tail))
    assert service.returncode == 0
    rows = prediction_log_rows(world["config"])
    assert len(rows) == len(head) * 2 + len(tail)
    assert {r["model_version"] for r in rows} == {one, two}
