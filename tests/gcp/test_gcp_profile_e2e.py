"""The gcp profile end to end without a cloud: static_training then batch_prediction (twice) through
real Airflow with PRODML_PROFILE=gcp, Cloud Storage served by the GCS emulator and BigQuery by the
BigQuery emulator; compute stays local through the profile's runner settings (the Beam transform on
FnApiRunner, the trainer as a subprocess), exactly as a user can run it.

Checked: every artefact lands in the emulated bucket and nothing in the local data folder; the
registry lives in the bucket (versions, blessing, drift reference, aliases written by
compare-and-swap); predictions land in the emulated BigQuery table and a rerun adds no rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ml import storage
from tests.gcp import emulators

ROOT = Path(__file__).resolve().parents[2]
SENSORS = 24
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gcp_run(gcs_emulator, bq_emulator, tmp_path_factory):
    from ml import simulate

    work = tmp_path_factory.mktemp("gcp-e2e")
    bucket = f"prodml-e2e-{uuid.uuid4().hex[:8]}"
    emulators.create_bucket(gcs_emulator, bucket)
    simulate.simulate(str(work / "upload"), "2026-11-01", 14, seed=5, sensors=SENSORS, forecast_days=3)
    for folder in ("landing", "forecast"):  # the data lands in the bucket, as producers would put it
        storage.put_dir(work / "upload" / folder, f"gs://{bucket}/{folder}")
    local_data = work / "local-data"
    local_data.mkdir()
    env = {
        **os.environ,
        "PRODML_PROFILE": "gcp",
        "PRODML_BUCKET": bucket,
        "GCP_PROJECT": emulators.PROJECT,
        "GOOGLE_CLOUD_PROJECT": emulators.PROJECT,
        "PRODML_DATA": str(local_data),  # the gcp profile must not write here
        "AIRFLOW_HOME": str(work / "airflow_home"),
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": emulators.airflow_connection(),
        "FSSPEC_GCS_TOKEN": "anon",  # gcsfs: no credential lookup against the emulator
        # compute kept local by the profile's runner settings
        "PRODML_TRAINING_KIND": "subprocess",
        "PRODML_BEAM_RUNNER": "FnApiRunner",
        "PRODML_VERTEX_MIRROR": "false",  # no Vertex here: its requests are tested in test_vertex_mirror.py
        **emulators.gcs_env(gcs_emulator),
        **emulators.bigquery_env(bq_emulator),
    }
    out = work / "result.json"
    proc = subprocess.run([sys.executable, "-m", "tests.gcp.gcp_profile_run", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)
    (work / "run.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0 and out.exists(), (proc.stdout + proc.stderr)[-6000:]
    return {"bucket": bucket, "local_data": local_data, "log": work / "run.log",
            **json.loads(out.read_text())}


def test_static_training_on_the_gcp_profile_keeps_every_artefact_in_the_bucket(gcp_run):
    static = gcp_run["static"]
    assert static["state"] == "success", (static["states"], gcp_run["log"].read_text()[-6000:])
    assert static["states"]["promote"] == "success" and static["states"]["keep"] == "skipped", static["states"]
    assert "vertex_mirror" not in static["states"]  # switched off by the profile's setting
    run = f"gs://{gcp_run['bucket']}/artifacts/static_training/20261115"
    assert storage.glob(f"{run}/transform/train/part-*.tfrecord")
    assert storage.glob(f"{run}/transform/eval/part-*.tfrecord")
    assert storage.exists(f"{run}/candidate/model/saved_model.pb")
    assert json.loads(storage.read_text(f"{run}/candidate/training.json"))["model_dir"] == f"{run}/candidate/model"
    assert storage.glob(f"gs://{gcp_run['bucket']}/validated/dt=*__*.csv")
    assert list(gcp_run["local_data"].iterdir()) == []  # nothing went to a local "bucket"


def test_the_registry_lives_in_the_bucket_and_moved_the_alias_conditionally(gcp_run):
    from ml import registry

    models = registry.connect({"kind": "bucket", "root": f"gs://{gcp_run['bucket']}/registry"})
    champion = models.get("champion")
    assert champion["version"] == "v0001" and champion["metrics"]["auc"] > 0.6
    assert champion["data_range"] == {"start": "2026-11-01", "end": "2026-11-14", "days": 14}
    assert storage.exists(champion["path"] + "/saved_model.pb")
    assert {"blessing", "reference_stats"} <= set(champion["attachments"])
    assert models.read_attachment("champion", "blessing")["decision"] == "pass"
    assert [(h["action"], h["to"]) for h in models.history()] == [("promote", "v0001")]
    aliases = f"gs://{gcp_run['bucket']}/registry/aliases.json"
    generation = storage.generation(aliases)
    with pytest.raises(storage.PreconditionFailed):  # a move based on a stale read is refused
        storage.replace_if(aliases, b"{}", str(int(generation) - 1))
    assert storage.generation(aliases) == generation


def test_batch_prediction_lands_in_bigquery_and_a_rerun_adds_no_rows(gcp_run, bq_emulator):
    assert [p["state"] for p in gcp_run["predict"]] == ["success", "success"], gcp_run["predict"]
    client = emulators.bigquery_client(bq_emulator)
    rows = list(client.query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT CONCAT(sensor_id, '-', CAST(hour AS STRING))) AS keys, "
        "COUNT(DISTINCT model_version) AS versions, MIN(model_version) AS version "
        f"FROM `{emulators.PROJECT}.prodml.predictions` WHERE target_date = DATE '2026-11-16'").result())
    assert len(rows) == 1
    assert rows[0]["n"] == rows[0]["keys"] == SENSORS * 24
    assert rows[0]["versions"] == 1 and rows[0]["version"] == "v0001"
