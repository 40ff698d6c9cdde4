"""The serving core, independent of HTTP: what answers each instance, and keeping that up to date.

For each instance of a request, in this order:
1. kill switch on → the fallback rate (path `fallback`, model_version `fallback`);
2. its keys are in the head (the champion's precomputed partition) → that score (path `head`);
3. otherwise a model version chosen by the router (the champion unless a bandit routes between it
   and challengers) scores it through the micro-batcher (path `tail`);
4. no model loaded, or the model call failed → the fallback (path `fallback`), counted as an error.

A poll loop follows the registry (champion, challengers) and the static serving table: a new
champion is loaded and warmed up off the event loop, then swapped in with one assignment, so
requests in flight finish on the model they were routed to and none is dropped. A second, faster
loop follows the kill-switch flag in the bucket (toggles from other replicas and the CLI).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ml import features as F
from ml import predict
from ml import registry as R
from ml import warehouse as W
from ml.serving import fallback as FB
from ml.serving import head as H
from ml.serving import kill_switch as KS
from ml.serving import prediction_log as PL
from ml.serving import tail as T
from ml.serving.auth import KeySource
from ml.serving.inputs import BadInput, InstanceChecker
from ml.serving.metrics import Metrics
from ml.serving.routing import Router, make_router
from ml.serving.settings import Settings

log = logging.getLogger("prodml.serving")


@dataclass(frozen=True)
class Loaded:
    """The model versions answering the tail: champion first. Replaced as a whole, never mutated."""

    versions: tuple[str, ...] = ()
    models: dict = field(default_factory=dict)


class Service:
    def __init__(self, *, schema_path: str, registry_section: dict, warehouse_section: dict, validated_uri: str,
                 settings: Settings, api_keys: KeySource, admin_keys: KeySource, router: Router | None = None):
        self.schema = F.load_schema(schema_path)
        self.settings = settings
        self.registry_section = registry_section
        self.warehouse_section = warehouse_section
        self.validated_uri = validated_uri
        self.api_keys, self.admin_keys = api_keys, admin_keys
        self.checker = InstanceChecker(self.schema, settings.max_instances)
        self.entity_keys, self.partition_column = self.schema.entity_keys, self.schema.partition_column
        self.loaded = Loaded()
        self.head = H.EMPTY
        self.kill = KS.OFF
        self.fallback = FB.FallbackRates(*FB.key_columns(self.schema))
        self._router = router
        self.path_counts: collections.Counter = collections.Counter()
        self.route_counts: collections.Counter = collections.Counter()
        self.log_writer = PL.PredictionLogWriter(PL.ProcessShipper(warehouse_section, self.schema),
                                                 flush_rows=settings.log_flush_rows, flush_s=settings.log_flush_s,
                                                 max_queue=settings.log_max_queue)
        self.metrics = Metrics(self)
        self.batcher = T.MicroBatcher(settings.max_batch, settings.max_wait_ms, on_batch=self._on_batch)
        self._io = ThreadPoolExecutor(2, thread_name_prefix="prodml-io")
        self._warehouse_lock = threading.Lock()
        self._refresh_lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task] = []
        self.started_at = time.time()
        self.last_refresh: dict = {}

    # ------------------------------------------------------------------ lifecycle

    @contextlib.contextmanager
    def warehouse_session(self):
        """A warehouse connection, one at a time in this process. DuckDB 2.0 connections opened
        from two threads of one process while another process holds the file (the log process,
        an Airflow task) can lose the Python client's `python_arrow_scan` ("Table Function ...
        does not exist"): reproduced, and gone when the sessions take turns."""
        with self._warehouse_lock, W.connect(self.warehouse_section) as wh:
            yield wh

    async def _io_call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _prepare_storage(self) -> None:
        try:
            with self.warehouse_session() as wh:
                wh.ensure_tables()
                predict.ensure_predictions_table(wh, self.schema)  # the head reads it before batch prediction wrote it
        except Exception as exc:  # serving goes on; the log writer retries
            self._error("warehouse", f"warehouse not ready at start-up: {exc}")
        try:
            self.fallback = FB.read_or_build(self.settings.fallback_uri, self.validated_uri, self.schema,
                                             window_days=self.settings.fallback_window_days)
        except Exception as exc:
            self._error("fallback", f"fallback rates not available: {exc}")
        self.kill = KS.read_state(self.settings.kill_switch_uri)

    async def start(self) -> None:
        self._refresh_lock = asyncio.Lock()
        await self._io_call(self._prepare_storage)
        self.batcher.start()
        await self._io_call(self.log_writer.start)  # spawns the log process (about a second)
        await self.refresh()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._every(self.settings.poll_s, self.refresh), name="prodml-refresh"),
                       loop.create_task(self._every(self.settings.kill_switch_poll_s, self.refresh_kill_switch),
                                        name="prodml-kill-switch")]
        log.info("serving: champion %s, head %d rows %s, kill switch %s", self.champion, len(self.head),
                 list(self.head.dates), "ON" if self.kill.on else "off")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self.batcher.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.log_writer.stop)
        self._io.shutdown(wait=True)

    async def _every(self, seconds: float, fn) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except Exception as exc:  # a failed poll keeps what is loaded
                self._error("reload", f"{fn.__name__} failed: {exc}")

    def _error(self, kind: str, message: str) -> None:
        self.metrics.errors.labels(kind).inc()
        log.warning("serving %s: %s", kind, message)

    # ------------------------------------------------------------------ following the registry

    @property
    def champion(self) -> str | None:
        return self.loaded.versions[0] if self.loaded.versions else None

    @property
    def versions(self) -> tuple[str, ...]:
        return self.loaded.versions

    def _wanted_versions(self) -> list[tuple[str, str]]:
        """[(version, model path)]: the champion, then the configured challengers."""
        registry = R.connect(self.registry_section)
        try:
            champion = registry.get("champion")
        except R.RegistryError:
            return []
        out = [(champion["version"], champion["path"])]
        for name in self.settings.challengers:
            record = registry.get(name)
            if record["version"] not in {v for v, _ in out}:
                out.append((record["version"], record["path"]))
        return out

    def _load_versions(self, wanted: list[tuple[str, str]], current: Loaded) -> Loaded:
        models = {}
        for version, path in wanted:
            models[version] = current.models.get(version) or T.load(version, path, self.schema,
                                                                    warm_rows=(1, self.settings.max_batch))
        return Loaded(versions=tuple(v for v, _ in wanted), models=models)

    def _read_head(self, champion: str | None, current: H.Head) -> H.Head:
        with self.warehouse_session() as wh:
            parts = H.partitions(wh)
            dates, signature = H.wanted(parts, champion, self.settings.head_days)
            if champion == current.model_version and signature == current.signature:
                return current
            if champion is None:
                return H.EMPTY
            return H.load(wh, partition_column=self.partition_column, model_version=champion, dates=dates,
                          signature=signature)

    async def refresh(self) -> dict:
        """Follow the registry and the static serving table; swap in what changed."""
        async with self._refresh_lock:
            wanted = await self._io_call(self._wanted_versions)
            current = self.loaded
            if tuple(v for v, _ in wanted) != current.versions:
                loaded = await self._io_call(self._load_versions, wanted, current)
                self.loaded = loaded  # the swap: one assignment
                log.info("serving: models %s (were %s)", list(loaded.versions), list(current.versions))
                if len(loaded.versions) > 1 and self._router is None:
                    self._router = make_router(self.settings.bandit)
            try:
                head = await self._io_call(self._read_head, self.champion, self.head)
            except Exception as exc:  # the warehouse is busy or down: keep the head we have if still valid
                self._error("reload", f"head not refreshed: {exc}")
                head = self.head if self.head.model_version == self.champion else H.EMPTY
            if head is not self.head:
                log.info("serving: head %d rows for %s (model %s)", len(head), list(head.dates), head.model_version)
                self.head = head
            self.last_refresh = {"at": time.time(), "versions": list(self.loaded.versions), "head_rows": len(head)}
            return self.last_refresh

    async def refresh_kill_switch(self) -> KS.State:
        state = await self._io_call(KS.read_state, self.settings.kill_switch_uri)
        if state != self.kill:
            log.warning("serving: kill switch %s (by %s: %s)", "ON" if state.on else "off", state.who, state.why)
            self.kill = state
        return state

    async def set_kill_switch(self, on: bool, who: str, why: str) -> dict:
        """The admin endpoint's toggle: store the flag, record the alert, apply it here at once."""
        uri = self.settings.kill_switch_uri

        def toggle() -> dict:
            try:
                with self.warehouse_session() as wh:
                    return {"state": KS.set_state(uri, on, who=who, why=why, warehouse=wh), "alert_recorded": True}
            except Exception as exc:
                self._error("warehouse", f"kill switch alert not recorded in the warehouse: {exc}")
            # The flag matters more than the alert row: store it, the alert goes to the log only.
            return {"state": KS.set_state(uri, on, who=who, why=why, warehouse=None), "alert_recorded": False}

        result = await self._io_call(toggle)
        self.kill = result["state"]
        return {**self.kill.public(), "alert_recorded": result["alert_recorded"]}

    # ------------------------------------------------------------------ answering

    def _on_batch(self, rows: int, seconds: float) -> None:
        self.metrics.batch_rows.observe(rows)

    def route_shares(self) -> dict:
        shares = getattr(self._router, "shares", None)
        if callable(shares):
            value = shares()
            if value:
                return dict(value)
        total = sum(self.route_counts.values())
        return {v: n / total for v, n in self.route_counts.items()} if total else {}

    def _choose(self, versions: tuple[str, ...]) -> str:
        if len(versions) == 1 or self._router is None:
            return versions[0]
        choice = self._router.choose(versions)
        return choice if choice in versions else versions[0]

    async def predict(self, body: bytes) -> dict:
        """A /predict body → the response payload; BadInput for anything wrong with the request."""
        started = time.perf_counter()
        instances = self.checker.parse(body)
        n = len(instances)
        scores: list = [None] * n
        paths: list = [None] * n
        versions: list = [None] * n
        kill = self.kill
        if kill.on:
            for i, inst in enumerate(instances):
                scores[i], paths[i], versions[i] = self.fallback.rate(inst), "fallback", "fallback"
        else:
            head, loaded = self.head, self.loaded
            # Between a champion swap and the head's reload, the old champion's rows are not served.
            champion = loaded.versions[0] if loaded.versions else None
            held = head.scores if head.scores and head.model_version == champion else None
            tail: dict[str, list[int]] = {}
            for i, inst in enumerate(instances):
                score = held.get(H.request_key(inst, self.entity_keys, self.partition_column)) if held else None
                if score is not None:
                    scores[i], paths[i], versions[i] = score, "head", head.model_version
                elif loaded.versions:
                    tail.setdefault(self._choose(loaded.versions), []).append(i)
                else:
                    scores[i], paths[i], versions[i] = self.fallback.rate(inst), "fallback", "fallback"
            if tail:
                groups = list(tail.items())
                results = await asyncio.gather(
                    *(self.batcher.score(loaded.models[v], [instances[i] for i in idx]) for v, idx in groups),
                    return_exceptions=True)
                for (version, idx), result in zip(groups, results, strict=True):
                    if isinstance(result, BaseException):
                        self._error("model", f"model {version} failed, fallback answered: {result!r}")
                        for i in idx:
                            scores[i], paths[i], versions[i] = self.fallback.rate(instances[i]), "fallback", "fallback"
                        continue
                    self.route_counts[version] += len(idx)
                    for i, score in zip(idx, result.tolist(), strict=True):
                        scores[i], paths[i], versions[i] = score, "tail", version
        latency_s = time.perf_counter() - started
        latency_ms = round(latency_s * 1000, 3)
        served_at = PL.now_us()
        predictions, entries, counts = [], [], collections.Counter()
        for i in range(n):
            prediction_id = uuid.uuid4().hex
            score = float(scores[i])
            predictions.append({"score": score, "path": paths[i], "model_version": versions[i],
                                "prediction_id": prediction_id})
            entries.append((prediction_id, served_at, instances[i], versions[i], paths[i], latency_ms, score))
            counts[(paths[i], versions[i])] += 1
        self.log_writer.append(entries)
        for (path, version), count in counts.items():
            self.path_counts[path] += count
            self.metrics.predictions.labels(path, version).inc(count)
        for path in {p for p, _ in counts}:
            self.metrics.prediction_seconds.labels(path).observe(latency_s)
        payload = {"predictions": predictions}
        if kill.on:
            payload["kill_switch"] = kill.public()
        return payload

    def health(self) -> dict:
        writer = self.log_writer
        return {
            "status": "ok",
            "champion": self.champion,
            "versions": list(self.loaded.versions),
            "head": {"rows": len(self.head), "dates": list(self.head.dates), "model_version": self.head.model_version},
            "kill_switch": self.kill.public(),
            "fallback": {"groups": len(self.fallback.by_key), "overall": self.fallback.overall},
            "prediction_log": {"written": writer.written, "queued": writer.queued, "dropped": writer.dropped,
                               "last_error": writer.last_error},
            "uptime_s": round(time.time() - self.started_at, 1),
        }


def dumps(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


__all__ = ["BadInput", "Loaded", "Service", "dumps"]
