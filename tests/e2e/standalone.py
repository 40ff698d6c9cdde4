"""Drive `airflow standalone` from a test: start it, wait until healthy, run a CLI, stop it.

Used for what only the scheduler does (backfills); everything else uses dag.test(). Started and
stopped as `make airflow` does (scripts/standalone.py): only the standalone process gets SIGINT,
then nothing of its session is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from scripts import standalone

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _cli(*args: str, timeout: int = 120, attempts: int = 6) -> str:
    """Run an airflow CLI command; retry while SQLite is locked by the running scheduler
    (SQLite has one writer at a time: a local-profile limit, not a problem on Composer's Postgres)."""
    for attempt in range(attempts):
        result = subprocess.run([AIRFLOW, *args], capture_output=True, text=True, timeout=timeout)
        if result.returncode == 0:
            return result.stdout
        if "database is locked" not in result.stderr or attempt == attempts - 1:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        time.sleep(2 * (attempt + 1))
    raise AssertionError("unreachable")


def _backfill_runs(dag_id: str) -> list[tuple[str, str]]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_type == DagRunType.BACKFILL_JOB)
        return [(r.run_id, str(r.state)) for r in runs]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_backfill(dag_id: str, from_date: str, to_date: str, log_dir: Path, port: int = 8089,
                 timeout: int = 420) -> list[tuple[str, str]]:
    env = {**os.environ, "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__HOST": "127.0.0.1",
           # task processes report to the execution API: it must name the port we picked
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           # its log servers away from the defaults (8793/8794) that a running `make airflow` holds
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
           "AIRFLOW__CORE__PARALLELISM": "2", "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5"}
    # Create the backfill before the scheduler starts: SQLite has one writer, and a CLI write racing
    # the scheduler can fail half-way ("database is locked"). Queued backfill runs wait for it.
    _cli("dags", "reserialize")
    _cli("dags", "unpause", dag_id)
    before = {r for r, _ in _backfill_runs(dag_id)}
    _cli("backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date,
         "--max-active-runs", "1", "--reprocess-behavior", "completed")
    log = open(log_dir / "standalone.log", "w")  # noqa: SIM115 - closed in finally
    proc = standalone.start(env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            runs = [r for r in _backfill_runs(dag_id) if r[0] not in before]
            if runs and all(state in ("success", "failed") for _, state in runs):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise TimeoutError(f"backfill runs not done: {runs}; see {log_dir / 'standalone.log'}")
            time.sleep(3)
        failed = [r for r in runs if r[1] != "success"]
        if failed:
            raise RuntimeError(f"backfill runs failed: {failed}; see {log_dir}")
        return runs
    finally:
        _cli("dags", "pause", dag_id)
        standalone.stop(proc)  # SIGINT to standalone alone, then nothing of its session is left
        log.close()
