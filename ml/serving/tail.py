"""The tail: a registry version's SavedModel scoring raw instances, and the micro-batcher in front.

`LoadedModel.score` turns instances into model inputs the way batch prediction and the gate's
serving child do (`ml.features.to_model_inputs`, then the `serve` signature on raw features: the
transform is inside the model).

`MicroBatcher` merges the tail rows of concurrent requests into one model call: the first waiting
request opens a batch, which takes every row already queued, up to `max_batch`. While the model
is busy (its last call ended less than `max_wait_ms` ago) the batch first stays open that long, or
until `max_batch` rows wait, for more; a request to an idle model is scored at once, so light
traffic pays no wait. The call runs on one
worker thread, and the requests that arrive meanwhile form the next batch, so under load batches
grow by themselves. (A model call costs about the same for 1 row as for 64: ~1 ms on the traffic
model, so batching is where the tail's throughput comes from.) Each queued item
carries the `LoadedModel` it was routed to, so a champion swapped in the middle (hot reload) never
strands a request: the old model finishes the items routed to it, then is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ml import features as F
from ml import predict


@dataclass(eq=False)
class LoadedModel:
    version: str
    path: str
    model: object
    schema: F.Schema

    def score(self, instances: list[dict]) -> np.ndarray:
        import tensorflow as tf

        columns = {f.name: [inst.get(f.name) for inst in instances] for f in self.schema.model_inputs}
        inputs = F.to_model_inputs(self.schema, columns)
        out = self.model.serve({k: tf.constant(v) for k, v in inputs.items()})
        return np.asarray(out, dtype=np.float64).reshape(-1)


def warmup_instance(schema: F.Schema) -> dict:
    """One valid-looking raw instance built from the schema (first vocabulary value, range middle),
    for the warm-up call that traces the model before it takes traffic."""
    row = {}
    for f in schema.model_inputs:
        if f.vocabulary:
            row[f.name] = f.vocabulary[0]
        elif f.range:
            middle = (f.range[0] + f.range[1]) / 2
            row[f.name] = int(middle) if f.type == "int" else float(middle)
        else:
            row[f.name] = "" if f.type == "string" else 0
    return row


def load(version: str, path: str, schema: F.Schema, warm_rows: tuple[int, ...] = (1, 8)) -> LoadedModel:
    """Load a SavedModel and call it once per batch shape in `warm_rows` (blocking: run it off the
    event loop). A model that cannot score raises here, before it replaces anything."""
    loaded = LoadedModel(version=version, path=path, model=predict.load_model(path), schema=schema)
    row = warmup_instance(schema)
    for n in warm_rows:
        scores = loaded.score([row] * n)
        if scores.shape != (n,):
            raise ValueError(f"model {version} returned {scores.shape} scores for {n} rows")
    return loaded


@dataclass(eq=False)
class _Item:
    model: LoadedModel
    instances: list[dict]
    future: asyncio.Future


class MicroBatcher:
    """Batches concurrent `score` calls per model; `stats` counts calls and rows for /metrics."""

    def __init__(self, max_batch: int = 64, max_wait_ms: float = 2.0, on_batch=None):
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_ms)) / 1000
        self.on_batch = on_batch  # callback(rows, seconds) for metrics
        self._queue: asyncio.Queue[_Item] | None = None
        self._full: asyncio.Event | None = None
        self._rows = 0  # rows queued, not yet taken into a batch
        self._held = 0  # rows of the batch being held open
        self._last_done = float("-inf")  # when the model finished its last call
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="prodml-model")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._full = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="prodml-micro-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._executor.shutdown(wait=True)

    async def score(self, model: LoadedModel, instances: list[dict]) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(model, instances, future))
        self._rows += len(instances)
        if self._rows + self._held >= self.max_batch:
            self._full.set()
        return await future

    async def _collect(self) -> list[_Item]:
        first = await self._queue.get()
        self._rows -= len(first.instances)
        busy = time.monotonic() - self._last_done < self.max_wait_s  # an idle model answers at once
        if busy and len(first.instances) + self._rows < self.max_batch:
            # Hold the batch open for more rows: until max_wait, or until max_batch rows are queued.
            self._full.clear()
            self._held = len(first.instances)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.max_wait_s)
            self._held = 0
        else:
            await asyncio.sleep(0)  # let requests the server has already read reach the queue
        batch, rows = [first], len(first.instances)
        while rows < self.max_batch and not self._queue.empty():
            item = self._queue.get_nowait()
            self._rows -= len(item.instances)
            batch.append(item)
            rows += len(item.instances)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            try:
                groups: dict[int, list[_Item]] = {}
                for item in batch:
                    groups.setdefault(id(item.model), []).append(item)
                for items in groups.values():
                    await self._score_group(loop, items)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _score_group(self, loop, items: list[_Item]) -> None:
        instances = [inst for item in items for inst in item.instances]
        started = time.perf_counter()
        try:
            scores = await loop.run_in_executor(self._executor, items[0].model.score, instances)
        except Exception as exc:  # every waiting request gets the error; the batcher keeps going
            self._last_done = time.monotonic()
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self._last_done = time.monotonic()
        if self.on_batch is not None:
            self.on_batch(len(instances), time.perf_counter() - started)
        start = 0
        for item in items:
            n = len(item.instances)
            if not item.future.done():
                item.future.set_result(scores[start:start + n])
            start += n
