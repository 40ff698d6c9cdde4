"""The GCS and BigQuery emulators as subprocesses, for the gcp profile's tests (no cloud here).

Both run from the separate `.emulators/` venv (`make .emulators/.installed`; their pins conflict
with Airflow's), each on a free port, through a launcher in this folder:

- `gcs_emulator.py`: gcp-storage-emulator plus GCS generation preconditions
  (`ifGenerationMatch`...; the registry's compare-and-swap needs them). Clients find it through
  `STORAGE_EMULATOR_HOST` (google-cloud-storage, gcsfs, Beam's GCS filesystem, GCSHook).
- `bq_emulator.py`: bqemulator with its DuckDB `spatial` download disabled (works offline).
  Clients find it through `BIGQUERY_EMULATOR_HOST` (google-cloud-bigquery reads it, so the
  provider's `BigQueryHook.get_client()` does too) or `client_options={"api_endpoint": url}`.

Credentials: anonymous (`AnonymousCredentials`, or the Airflow connection from
`airflow_connection()`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EMULATOR_PYTHON = ROOT / ".emulators" / "bin" / "python"
PROJECT = "test-project"
HOST = "127.0.0.1"
GCSFS_HNS = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"


class EmulatorError(RuntimeError):
    pass


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM the emulator if the test process dies without stopping it."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Emulator:
    name: str
    process: subprocess.Popen
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _start(name: str, launcher: str, args: list[str], port: int, health_path: str,
           log_dir: Path, timeout_s: float) -> Emulator:
    if not EMULATOR_PYTHON.exists():
        raise EmulatorError(f"{EMULATOR_PYTHON} is missing: run `make .emulators/.installed`")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([str(EMULATOR_PYTHON), str(HERE / launcher), *args], cwd=log_dir,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=_die_with_parent)
    emulator = Emulator(name, process, HOST, port, log_path)
    deadline = time.monotonic() + timeout_s
    while not _answers(emulator.url + health_path):
        if process.poll() is not None or time.monotonic() > deadline:
            emulator.stop()
            raise EmulatorError(f"{name} did not start (exit code {process.returncode}); "
                                f"log {log_path}:\n{emulator.log_tail()}")
        time.sleep(0.1)
    return emulator


def start_gcs(log_dir: Path, timeout_s: float = 30.0) -> Emulator:
    """gcp-storage-emulator (in memory, with generation preconditions); serves on `.url`."""
    port = free_port()
    return _start("gcs-emulator", "gcs_emulator.py",
                  ["start", "--host", HOST, "--port", str(port), "--in-memory"],
                  port, "/", log_dir, timeout_s)


def start_bigquery(log_dir: Path, project: str = PROJECT, timeout_s: float = 90.0) -> Emulator:
    """bqemulator (in memory, offline); REST on `.url` (its gRPC port is not used here)."""
    port, grpc_port = free_port(), free_port()
    return _start("bq-emulator", "bq_emulator.py",
                  ["start", "--rest-host", HOST, "--rest-port", str(port), "--grpc-host", HOST,
                   "--grpc-port", str(grpc_port), "--ephemeral", "--project", project, "--no-admin",
                   "--log-level", "warning"],
                  port, "/healthz", log_dir, timeout_s)


def gcs_env(gcs: Emulator) -> dict[str, str]:
    """What GCS clients need: google-cloud-storage, gcsfs, Beam and GCSHook read STORAGE_EMULATOR_HOST.

    gcsfs >= 2026 asks the Storage Control gRPC API for each bucket's layout (hierarchical
    namespace) and waits 60 s per bucket for an answer the emulator cannot give; its
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false turns that off, but is read when gcsfs is imported.
    """
    return {"STORAGE_EMULATOR_HOST": gcs.url, GCSFS_HNS: "false"}


def bigquery_env(bq: Emulator) -> dict[str, str]:
    """What BigQuery clients need: google-cloud-bigquery's Client (so BigQueryHook) reads this."""
    return {"BIGQUERY_EMULATOR_HOST": bq.url}


def airflow_connection(project: str = PROJECT) -> str:
    """An anonymous `google_cloud_platform` connection (as `AIRFLOW_CONN_<ID>` JSON) for the emulators."""
    return json.dumps({"conn_type": "google_cloud_platform",
                       "extra": {"is_anonymous": True, "project": project}})


def create_bucket(gcs: Emulator, name: str, project: str = PROJECT) -> None:
    """Create a bucket in the emulator (idempotent)."""
    request = urllib.request.Request(f"{gcs.url}/storage/v1/b?project={project}", method="POST",
                                     data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise


def storage_client(gcs: Emulator, project: str = PROJECT):
    """A google-cloud-storage client for the emulator, whatever the environment says."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=project, credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": gcs.url})


def bigquery_client(bq: Emulator, project: str = PROJECT):
    """A google-cloud-bigquery client for the emulator, whatever the environment says."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": bq.url})
