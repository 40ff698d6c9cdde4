"""Session fixtures: the GCS and BigQuery emulators (tests/gcp/emulators.py) and an Airflow
connection to them. Each emulator starts once per session, on a free port, when a test first
asks for it, and stops at the end; the variables below are set for the rest of the session.

- `gcs_emulator`: STORAGE_EMULATOR_HOST=http://127.0.0.1:<port> (and
  GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false, also set when this file is imported: gcsfs reads it at
  import, and otherwise waits 60 s per bucket on a gRPC call the emulator does not serve)
- `bq_emulator`: BIGQUERY_EMULATOR_HOST=http://127.0.0.1:<port>
- `gcs_client`, `bq_client`: google-cloud-storage / -bigquery clients bound to the emulators
- `gcp_conn_id`: AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT (anonymous, project test-project); returns
  "google_cloud_default". Hooks built from it reach the emulators through the two variables
  above (request the emulator fixtures too).
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import SESSION_DIR
from tests.gcp import emulators

os.environ.setdefault(emulators.GCSFS_HNS, "false")


def _running(start, env_of):
    """Start an emulator, set its client variables for the session, stop it at the end."""
    emulator = start(SESSION_DIR / "emulators")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env_of(emulator).items():
            mp.setenv(key, value)
        try:
            yield emulator
        finally:
            emulator.stop()


@pytest.fixture(scope="session")
def gcs_emulator():
    yield from _running(emulators.start_gcs, emulators.gcs_env)


@pytest.fixture(scope="session")
def bq_emulator():
    yield from _running(emulators.start_bigquery, emulators.bigquery_env)


@pytest.fixture(scope="session")
def gcp_conn_id():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", emulators.airflow_connection())
        yield "google_cloud_default"


@pytest.fixture(scope="session")
def gcs_client(gcs_emulator):
    return emulators.storage_client(gcs_emulator)


@pytest.fixture(scope="session")
def bq_client(bq_emulator):
    return emulators.bigquery_client(bq_emulator)
