"""Replay a day of online traffic: Zipf-peaked requests through the service's HTTP API, then the
day's late labels (what `make demo`'s online part drives; handy for a check by hand too).

- `zipf_requests`: `n` instances from one day of the forecast table, requests per key following
  Zipf(s) over a seeded ranking of the keys. The ranking depends only on the keys and the seed,
  so the same keys are popular every day (as the same arterial roads are), which is what lets a
  head advised from one day's log serve the next day.
- `LocalService`: `python -m ml.serving` (what `make serve` runs) in a child process on a free
  loopback port with freshly generated API and admin keys; ready once `/healthz` answers (the
  service loads its models before it listens); stopped with SIGINT, uvicorn's graceful shutdown,
  which flushes the prediction log.
- `send`: the requests, one instance each, from a few client threads (httpx, one client per
  thread); what answered them (path, model version) and the client-side latency.
- `land_labels`: the day's landed file set (readings and the label) as the simulator makes it,
  copied into the landing area with its `_SUCCESS` marker last: the late labels of that day.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ml import storage
from ml.config import PROJECT_ROOT


def zipf_requests(rows: list[dict], n: int, *, key_columns, s: float, ranking_seed: int, seed: int) -> list[dict]:
    """`n` instances drawn from `rows` (one forecast day, one row per key): the key of rank r is
    requested with probability proportional to r^-s. Ranks: the sorted keys shuffled by
    `ranking_seed`; the draws use `seed`."""
    by_key: dict[tuple, dict] = {}
    for row in rows:
        by_key.setdefault(tuple(row[c] for c in key_columns), row)
    keys = sorted(by_key)
    if not keys or n <= 0:
        return []
    ranking = [keys[i] for i in np.random.default_rng(ranking_seed).permutation(len(keys))]
    pmf = 1.0 / np.arange(1, len(keys) + 1) ** s
    picks = np.random.default_rng(seed).choice(len(keys), size=n, p=pmf / pmf.sum())
    return [by_key[ranking[i]] for i in picks]


def send(url: str, instances: list[dict], api_key: str, *, workers: int = 4, timeout_s: float = 60.0) -> dict:
    """POST each instance to `url`/predict, `workers` requests in flight. Returns the counts of
    answers by path and by model version, HTTP errors by status, and latency percentiles (ms)."""
    import httpx

    slices = [instances[i::workers] for i in range(workers)]
    lock = threading.Lock()
    paths, versions, errors, latencies = collections.Counter(), collections.Counter(), collections.Counter(), []

    def worker(part: list[dict]) -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=timeout_s) as client:
            for instance in part:
                started = time.perf_counter()
                response = client.post("/predict", json={"instances": [instance]})
                seconds = time.perf_counter() - started
                with lock:
                    latencies.append(seconds)
                    if response.status_code != 200:
                        errors[response.status_code] += 1
                        continue
                    for prediction in response.json()["predictions"]:
                        paths[prediction["path"]] += 1
                        versions[prediction["model_version"]] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, slices))  # list(): a worker's exception is raised here
    wall = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {"requests": len(instances), "seconds": wall, "per_second": len(instances) / wall if wall else 0.0,
            "paths": dict(paths), "versions": dict(versions), "errors": dict(errors),
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def land_labels(landing_uri: str, date: str, *, seed: int, sensors: int, schema_path: str | None = None) -> dict:
    """Land `date`'s file set (the simulator's day for `seed` and `sensors`, scenario normal) in
    `landing_uri`/dt=`date`/, `_SUCCESS` last. {"uri", "rows", "label_rate"}."""
    from ml import landing, simulate

    target = storage.join(landing_uri, f"dt={date}")
    with tempfile.TemporaryDirectory(prefix="prodml-labels-") as tmp:
        with contextlib.redirect_stdout(io.StringIO()):  # the simulator's progress line
            truth = simulate.simulate(tmp, date, 1, seed, sensors=sensors, forecast_days=0, schema_path=schema_path)
        source = Path(tmp) / "landing" / f"dt={date}"
        files = sorted(p for p in source.iterdir() if p.name != landing.SUCCESS)
        for path in [*files, source / landing.SUCCESS]:  # the marker last: no marker, no data
            storage.put_file(path, storage.join(target, path.name))
    day = truth["days"][0]
    return {"uri": target, "rows": day["rows"], "label_rate": day["label_rate"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalService:
    """`python -m ml.serving` in a child process (a context manager). `env` adds to this
    process's environment (e.g. the profile's PRODML_DATA, PRODML_SERVE_CHALLENGERS); the keys
    are generated here and handed over in PRODML_API_KEYS / PRODML_ADMIN_KEYS only."""

    def __init__(self, *, log_path: str | Path, env: dict | None = None, start_timeout_s: float = 300.0):
        self.log_path, self.env, self.start_timeout_s = Path(log_path), dict(env or {}), start_timeout_s
        self.api_key, self.admin_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def __enter__(self) -> LocalService:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        env = {**os.environ, **self.env, "PRODML_API_KEYS": self.api_key, "PRODML_ADMIN_KEYS": self.admin_key,
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ml.serving", "--port", str(self.port)],
                                         cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with code {self.proc.returncode}: {self._log_tail()}")
            try:
                self.health()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the service did not answer /healthz in {self.start_timeout_s:.0f} s: "
                                   f"{self._log_tail()}")
            time.sleep(0.5)

    def _log_tail(self, lines: int = 30) -> str:
        return "".join(self.log_path.read_text(errors="replace").splitlines(keepends=True)[-lines:])

    def _call(self, method: str, path: str, admin: bool = False, **kwargs) -> dict:
        import httpx

        headers = {"Authorization": f"Bearer {self.admin_key}"} if admin else {}
        try:
            response = httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)
        except httpx.TransportError as exc:  # not listening (yet)
            raise ConnectionError(str(exc)) from exc
        response.raise_for_status()
        return response.json()

    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def reload(self) -> dict:
        """Follow the registry and the serving table now (POST /admin/reload) instead of at the next poll."""
        return self._call("POST", "/admin/reload", admin=True)

    def metrics(self) -> str:
        import httpx

        return httpx.get(self.url + "/metrics", timeout=60).text

    def route_shares(self) -> dict[str, float]:
        """The tail routing shares the service exports (`prodml_route_share` in /metrics)."""
        from prometheus_client.parser import text_string_to_metric_families

        return {sample.labels["model_version"]: sample.value
                for family in text_string_to_metric_families(self.metrics()) if family.name == "prodml_route_share"
                for sample in family.samples}

    def wait_logged(self, rows: int, timeout_s: float = 120.0) -> dict:
        """Wait until the prediction log has written at least `rows` rows and holds none queued."""
        deadline = time.monotonic() + timeout_s
        while True:
            log = self.health()["prediction_log"]
            if log["written"] >= rows and log["queued"] == 0:
                return log
            if time.monotonic() > deadline:
                raise TimeoutError(f"prediction log: {log} after {timeout_s:.0f} s, expected {rows} rows written")
            time.sleep(0.5)

    def stop(self, timeout_s: float = 90.0) -> int | None:
        """SIGINT (uvicorn shuts down gracefully: requests finish, the log is flushed); the exit code."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        return self.returncode
