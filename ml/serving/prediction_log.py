"""The prediction log: every served prediction, written to the warehouse in batches, off the request path.

A request only appends its rows to an in-memory queue (a deque append: no I/O, no hashing). A
background thread takes the queue every `flush_rows` rows or `flush_s` seconds, whichever comes
first, and once more on shutdown, and hands it to a shipper. `ProcessShipper` pickles the rows in
small chunks and sends them to a child process, which builds the Arrow table (the features'
JSON and hash) and bulk-loads it into `prediction_log` (`include/sql/create_prediction_log.sql`).
The serving process does no JSON, no hashing and no warehouse I/O for the log, so a flush cannot
hold the GIL away from the event loop; B5 measures what is left.

A warehouse that is down (or a DuckDB file locked by an Airflow task) delays the rows, it does not
lose them, up to `max_queue` queued rows; beyond that the oldest are dropped and counted.

Late labels join on `prediction_id` (monitoring: residuals, AUC by slice; bandit rewards).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import multiprocessing
import pickle
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pyarrow as pa

log = logging.getLogger(__name__)

SCHEMA = pa.schema([
    ("prediction_id", pa.string()),
    ("served_at", pa.timestamp("us", tz="UTC")),
    ("entity_key", pa.string()),
    ("target_date", pa.string()),
    ("features_hash", pa.string()),
    ("features", pa.string()),
    ("model_version", pa.string()),
    ("path", pa.string()),
    ("latency_ms", pa.float64()),
    ("score", pa.float64()),
])


def features_json(instance: dict) -> str:
    return json.dumps(instance, sort_keys=True, separators=(",", ":"))


def features_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_table(entries: list[tuple], keys: tuple[tuple[str, ...], str | None], chunk: int = 64,
             pause_s: float = 0.0002) -> pa.Table:
    """(prediction_id, served_at_us, instance, model_version, path, latency_ms, score) tuples → rows;
    `keys`: (the schema's entity keys, its partition column), for the `entity_key` and
    `target_date` columns;
    `served_at_us`: microseconds since the epoch (UTC), cheaper to take on the request path than a
    datetime. Built `chunk` rows at a time (under a millisecond of Python), sleeping `pause_s` in
    between: the sleep hands the GIL to the event loop thread, which would otherwise wait up to
    Python's 5 ms switch interval behind a flush (measured: p99 of head hits ×4 at 1000/s)."""
    from ml.features import entity_key

    entity_keys, partition_column = keys
    tables = []
    for start in range(0, len(entries), chunk):
        ids, served, instances, versions, paths, latencies, scores = zip(*entries[start:start + chunk], strict=True)
        texts = [features_json(inst) for inst in instances]
        tables.append(pa.table([
            pa.array(ids, pa.string()),
            pa.array(served, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array([entity_key(inst.get(k) for k in entity_keys) for inst in instances], pa.string()),
            pa.array([inst.get(partition_column) if partition_column else None for inst in instances], pa.string()),
            pa.array([features_hash(t) for t in texts], pa.string()),
            pa.array(texts, pa.string()),
            pa.array(versions, pa.string()),
            pa.array(paths, pa.string()),
            pa.array(latencies, pa.float64()),
            pa.array(scores, pa.float64()),
        ], schema=SCHEMA))
        if pause_s:
            time.sleep(pause_s)
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def _ignore_stop_signals() -> None:
    """In the log process: Ctrl-C in a terminal (SIGINT to the whole process group) or a SIGTERM
    to the group must not kill it before the service's shutdown flush; the service stops it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def load_pickled(warehouse_section: dict, table_name: str, keys: tuple, blobs: list[bytes]) -> int:
    """In the log process: pickled chunks of entries → one Arrow table → one warehouse load."""
    from ml import warehouse as W

    entries = [entry for blob in blobs for entry in pickle.loads(blob)]
    table = to_table(entries, keys, pause_s=0)
    with W.connect(warehouse_section) as wh:
        wh.load_arrow(table_name, table)
    return table.num_rows


class ProcessShipper:
    """Ships rows to one child process (spawned: TensorFlow in the parent is not fork-safe), which
    opens the warehouse for each load and closes it after (a DuckDB file is not held between
    flushes: Airflow tasks write it too). Pickling happens here, `chunk` rows at a time with a
    short sleep in between, so the event loop thread gets the GIL back within a millisecond."""

    def __init__(self, warehouse_section: dict, schema, table: str = "prediction_log", chunk: int = 256):
        self.warehouse_section, self.table, self.chunk = warehouse_section, table, chunk
        self.keys = (tuple(schema.entity_keys), schema.partition_column)
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        self._get_pool().submit(int).result()  # the child starts now, not at the first flush

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_ignore_stop_signals)
        return self._pool

    def __call__(self, entries: list[tuple]) -> None:
        blobs = []
        for start in range(0, len(entries), self.chunk):
            blobs.append(pickle.dumps(entries[start:start + self.chunk], protocol=pickle.HIGHEST_PROTOCOL))
            time.sleep(0.0002)
        try:
            self._get_pool().submit(load_pickled, self.warehouse_section, self.table, self.keys, blobs).result()
        except BrokenProcessPool:  # the child died: a new one for the retry
            self._pool = None
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class PredictionLogWriter:
    """Queue + one flushing thread; `ship(entries)` writes a batch or raises (the rows are kept)."""

    def __init__(self, ship, *, flush_rows: int = 2000, flush_s: float = 5.0, max_queue: int = 200_000):
        self.ship = ship
        self.flush_rows = max(1, int(flush_rows))
        self.flush_s = float(flush_s)
        self.max_queue = int(max_queue)
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self.flushes = 0
        self.failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if hasattr(self.ship, "start"):
            self.ship.start()
        self._thread = threading.Thread(target=self._run, name="prodml-prediction-log", daemon=True)
        self._thread.start()

    def append(self, entries: list[tuple]) -> None:
        """Called on the request path: O(rows) appends, nothing else."""
        self._queue.extend(entries)
        if len(self._queue) >= self.flush_rows:
            self._wake.set()
            overflow = len(self._queue) - self.max_queue
            if overflow > 0:  # the warehouse has been unreachable for long: drop the oldest rows
                self._drop(overflow)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Flush everything queued, then stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if hasattr(self.ship, "close"):
            self.ship.close()

    def _drop(self, n: int) -> None:
        dropped = len(self._take(n))
        self.dropped += dropped
        log.warning("prediction log: %d oldest rows dropped (queue over %d rows)", dropped, self.max_queue)

    def _take(self, n: int) -> list[tuple]:
        out = []
        try:
            for _ in range(n):
                out.append(self._queue.popleft())
        except IndexError:
            pass
        return out

    def _run(self) -> None:
        deadline = time.monotonic() + self.flush_s
        while True:
            self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            stopping = self._stop.is_set()
            if stopping or len(self._queue) >= self.flush_rows or time.monotonic() >= deadline:
                self.flush()
                if stopping and self._queue:  # one more try at shutdown (e.g. a new log process)
                    self.flush()
                deadline = time.monotonic() + self.flush_s
            if stopping:
                if self._queue and self.failures and self.last_error:
                    log.error("prediction log: %d rows not written at shutdown (%s)", len(self._queue),
                              self.last_error)
                return

    def flush(self) -> int:
        """Ship everything queued now as one batch; if that fails, the rows go back to the head of
        the queue for the next flush."""
        entries = self._take(len(self._queue))
        if not entries:
            return 0
        try:
            self.ship(entries)
        except Exception as exc:  # the service stays up; the rows wait for the next flush
            self._queue.extendleft(reversed(entries))  # back first: a counted failure has its rows queued
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("prediction log: flush of %d rows failed, kept for the next one: %s", len(entries),
                        self.last_error)
            overflow = len(self._queue) - self.max_queue
            if overflow > 0:
                self._drop(overflow)
            return 0
        self.written += len(entries)
        self.flushes += 1
        return len(entries)


def now_us() -> int:
    return time.time_ns() // 1000
