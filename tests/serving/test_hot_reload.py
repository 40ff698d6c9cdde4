"""Hot reload: a new champion (and a rollback) while concurrent clients keep sending requests over a
real socket (uvicorn in a thread, httpx.AsyncClient): no request fails, and every request that
starts after the first answer of the new version is answered by the new version."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import uvicorn

from tests.serving.conftest import DAY, FAST, HEAD_KEYS, auth, instance

WORKERS = 16
AFTER_SWAP = 150  # requests per swap once the new version has answered
DEADLINE_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, app):
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(60)


async def _drive(url: str, swaps: list) -> list[dict]:
    """Requests from WORKERS concurrent clients while `swaps` (version, action) run one after the
    other, each once the previous new version has answered AFTER_SWAP times."""
    results: list[dict] = []
    done = asyncio.Event()
    seen: dict[str, int] = {}

    async def worker(w: int, client: httpx.AsyncClient):
        i = 0
        while not done.is_set():
            i += 1
            # Mostly tail misses (the micro-batcher), every 5th a head hit.
            row = instance(*HEAD_KEYS[i % 3]) if i % 5 == 0 else instance(f"S{w:02d}{i % 100:02d}", DAY, i % 24)
            started = time.monotonic()
            try:
                r = await client.post("/predict", json={"instances": [row]})
                out = r.json()["predictions"][0] if r.status_code == 200 else {}
                results.append({"started": started, "ended": time.monotonic(), "status": r.status_code,
                                "version": out.get("model_version"), "path": out.get("path")})
                if out:
                    seen[out["model_version"]] = seen.get(out["model_version"], 0) + 1
            except Exception as exc:  # a dropped connection counts as a failure
                results.append({"started": started, "ended": time.monotonic(), "status": repr(exc),
                                "version": None, "path": None})

    async def conductor():
        deadline = time.monotonic() + DEADLINE_S
        for version, action in swaps:
            before = seen.get(version, 0)
            await asyncio.to_thread(action)
            while seen.get(version, 0) < before + AFTER_SWAP and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        done.set()

    limits = httpx.Limits(max_connections=WORKERS)
    async with httpx.AsyncClient(base_url=url, headers=auth(), timeout=60, limits=limits) as client:
        await asyncio.sleep(0)
        await asyncio.gather(conductor(), *(worker(w, client) for w in range(WORKERS)))
    return results


def test_a_new_champion_and_a_rollback_under_load_drop_no_request(world):
    from ml.serving.__main__ import build

    registry = world["registry"]
    one, two = world["versions"]
    app, _ = build(world["config"], **FAST)
    with _Server(app) as url:
        results = asyncio.run(_drive(url, [(two, lambda: registry.promote(two, "hot reload test")),
                                           (one, lambda: registry.rollback(reason="hot reload test"))]))
        health = httpx.get(f"{url}/healthz").json()
        metrics = httpx.get(f"{url}/metrics").text
    print(f"{len(results)} requests: " + ", ".join(f"{v} {sum(r['version'] == v for r in results)}"
                                                    for v in (one, two)))
    failures = [r for r in results if r["status"] != 200]
    assert not failures, failures[:5]
    assert len(results) > 2 * AFTER_SWAP
    assert health["champion"] == one
    # Answers by the new version start after the promotion, answers by the old one stop: every
    # request that started after the first v2 answer ended was answered by v2, until the rollback.
    first_two = min(r["ended"] for r in results if r["version"] == two)
    back_to_one = min(r["ended"] for r in results if r["version"] == one and r["started"] > first_two)
    between = [r for r in results if first_two < r["started"] and r["ended"] < back_to_one]
    assert between and all(r["version"] == two for r in between)
    assert {r["path"] for r in results} >= {"head", "tail"}
    # v2 wrote no partition: while it was champion, the head keys went to the tail (never v1's rows).
    assert all(r["path"] == "tail" for r in between)
    # Concurrent tail requests were merged: fewer model calls than tail rows. How many rows a call
    # takes depends on how the 2 cores interleave 16 clients (about 2 on a loaded machine, where an
    # earlier `calls < rows / 2` failed at 241 calls for 467 rows); benchmarks/ measures the gain.
    calls = _metric(metrics, "prodml_tail_batch_rows_count")
    rows = _metric(metrics, "prodml_tail_batch_rows_sum")
    assert rows >= sum(r["path"] == "tail" for r in results) and calls < rows


def _metric(text: str, name: str) -> float:
    [line] = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])
