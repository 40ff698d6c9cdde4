"""What a new user types: `make airflow` (port from the environment, Ctrl-C stops everything),
`make shell` (the README's CLI commands work in it) and `airflow ... -o json` (parseable)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
# `-o`: never rebuild the venv from a test, even if requirements.txt is newer than its stamp
MAKE = ["make", "-s", "--no-print-directory", "-o", ".venv/.installed"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def test_make_shell_has_the_project_airflow_environment(tmp_path):
    # a ~/.bashrc that puts another python first on PATH, as pyenv's or conda's set-up does
    (tmp_path / "other-bin").mkdir()
    (tmp_path / ".bashrc").write_text(f'export PATH="{tmp_path}/other-bin:$PATH"\n')
    for tool in ("python", "airflow"):
        (tmp_path / "other-bin" / tool).write_text("#!/bin/sh\necho not the venv\n")
        (tmp_path / "other-bin" / tool).chmod(0o755)
    result = subprocess.run(
        [*MAKE, "shell", f"AIRFLOW_HOME={tmp_path}/home"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        input='echo "home=$AIRFLOW_HOME dags=$AIRFLOW__CORE__DAGS_FOLDER"; command -v airflow python\n',
        env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert f"home={tmp_path}/home dags={ROOT}/dags" in result.stdout
    assert f"{ROOT}/.venv/bin/airflow\n{ROOT}/.venv/bin/python\n" in result.stdout


def test_list_runs_as_json_prints_only_json(airflow_db):
    subprocess.run([AIRFLOW, "dags", "reserialize"], check=True, capture_output=True, timeout=180)
    result = subprocess.run([AIRFLOW, "dags", "list-runs", "rollback", "-o", "json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list), result.stdout[:300]


def _title(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # exited (or a zombie) meanwhile
        return ""


def _env(process: psutil.Process, name: str) -> str | None:
    try:
        return process.environ().get(name)
    except psutil.Error:  # a short-lived child (a DAG-parsing fork) exited after the listing
        return None


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("started", ["in a terminal", "as `make airflow &` from a script"])
def test_make_airflow_takes_the_port_from_the_environment_and_ctrl_c_stops_everything(tmp_path, started):
    port = _free_port()
    env = {k: v for k, v in os.environ.items()  # under `make test` the outer make exported its own URL
           if k != "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"}
    env |= {"AIRFLOW__API__PORT": str(port), "PRODML_DATA": str(tmp_path / "data"),
           # log servers off the defaults, so a `make airflow` already running here does not clash
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port())}
    log_path = tmp_path / "make-airflow.log"
    everything: list[psutil.Process] = []
    with open(log_path, "w") as log:
        # its own process group, as a terminal's foreground job: Ctrl-C signals that whole group
        # (a script's `cmd &` starts with SIGINT ignored, and so do make and Python under it)
        make = subprocess.Popen([*MAKE, "airflow", f"AIRFLOW_HOME={tmp_path}/home"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_ignore_sigint if started.startswith("as") else None)
        try:
            deadline = time.monotonic() + 240
            while not _healthy(port):
                assert make.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(2)
            # the scheduler forks its LocalExecutor workers (they are what used to be left behind):
            # wait until one shows its process title, not for a fixed time
            while not any("LocalExecutor" in _title(p) for p in psutil.Process(make.pid).children(recursive=True)):
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.2)
            everything = psutil.Process(make.pid).children(recursive=True)
            assert len(everything) >= 5  # wrapper, standalone, api-server, scheduler, dag-processor, ...
            # task processes reach the execution API on the same port
            urls = {_env(p, "AIRFLOW__CORE__EXECUTION_API_SERVER_URL") for p in everything} - {None}
            assert urls == {f"http://127.0.0.1:{port}/execution/"}
            os.killpg(make.pid, signal.SIGINT)  # Ctrl-C
            make.wait(timeout=120)
            deadline = time.monotonic() + 30  # until every process has exited, not a fixed pause
            while (left := [p for p in everything if _alive(p)]) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not left, [(p.pid, _title(p)) for p in left]
        finally:
            for p in [psutil.Process(make.pid), *everything] if make.poll() is None else everything:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
    banner = log_path.read_text()
    assert f"http://127.0.0.1:{port}" in banner and ":8080" not in banner.split("\n")[0]
