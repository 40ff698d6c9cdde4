"""scripts/deploy_composer.py against the GCS emulator: the dry run writes nothing, the deployment
copies exactly its plan, the wheel and the schema land where the gcp profile's Dataflow and Vertex
tasks read them, and the deployed dags/ + plugins/ parse as Composer would load them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import ml
from tests.gcp import emulators

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "deploy_composer.py"
DAG_IDS = {p.stem for p in (ROOT / "dags").glob("*.py")}  # one DAG per file, named as its file


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The ml wheel, built as `make dist` builds it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(Path(sys.executable).with_name("uv")), "build", "--wheel", "--no-build-isolation", "-o",
                    str(out)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    [built] = out.glob("*.whl")
    assert built.name == f"prodml-{ml.__version__}-py3-none-any.whl"
    return built


def test_the_wheel_declares_its_runtime_dependencies(wheel):
    import tomllib
    import zipfile

    metadata = zipfile.ZipFile(wheel).read(f"prodml-{ml.__version__}.dist-info/METADATA").decode()
    required = {line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].strip() for r in required}
    assert {d.split("<")[0].split(">")[0].split("=")[0] for d in project["dependencies"]} <= names
    assert any(r.startswith("tensorflow-cpu") for r in required)  # Dataflow workers need TensorFlow's protos
    assert {f"ml/{m}.py" for m in ("trainer", "transform", "distribute", "storage")} <= set(zipfile.ZipFile(wheel).namelist())


@pytest.fixture()
def buckets(gcs_emulator):
    env_bucket, data_bucket = f"composer-{uuid.uuid4().hex[:8]}", f"prodml-{uuid.uuid4().hex[:8]}"
    for name in (env_bucket, data_bucket):
        emulators.create_bucket(gcs_emulator, name)
    return env_bucket, data_bucket


def objects(gcs_emulator, bucket: str) -> set[str]:
    return {f"gs://{bucket}/{b.name}" for b in emulators.storage_client(gcs_emulator).list_blobs(bucket)}


def run_deploy(gcs_emulator, wheel, env_bucket, data_bucket, *extra) -> subprocess.CompletedProcess:
    env = {**os.environ, **emulators.gcs_env(gcs_emulator), "FSSPEC_GCS_TOKEN": "anon",
           "PRODML_BUCKET": data_bucket}
    return subprocess.run([sys.executable, str(SCRIPT), "--bucket", f"gs://{env_bucket}", "--wheel", str(wheel),
                           *extra], env=env, capture_output=True, text=True, timeout=300, check=True)


def test_dry_run_prints_the_copies_and_writes_nothing(gcs_emulator, wheel, buckets):
    env_bucket, data_bucket = buckets
    out = run_deploy(gcs_emulator, wheel, env_bucket, data_bucket, "--dry-run").stdout
    lines = out.splitlines()
    assert f"would copy dags/static_training.py -> gs://{env_bucket}/dags/static_training.py" in lines
    assert f"would copy ml/trainer.py -> gs://{env_bucket}/dags/ml/trainer.py" in lines
    assert f"would copy include/config/gcp.yaml -> gs://{env_bucket}/dags/include/config/gcp.yaml" in lines
    assert f"would copy plugins/prodml_airflow/tasks.py -> gs://{env_bucket}/plugins/prodml_airflow/tasks.py" in lines
    assert any(line.endswith(f"-> gs://{data_bucket}/dist/{wheel.name}") for line in lines)
    assert lines[-1].endswith("to copy (dry run: nothing written)")
    assert "__pycache__" not in out
    assert objects(gcs_emulator, env_bucket) == objects(gcs_emulator, data_bucket) == set()


def test_deploy_copies_the_plan_where_the_gcp_tasks_read(gcs_emulator, wheel, buckets, tmp_path, monkeypatch):
    from prodml_airflow.targets import Dataflow, transform_runner, vertex_trainer

    from ml import storage
    from ml.config import load

    env_bucket, data_bucket = buckets
    out = run_deploy(gcs_emulator, wheel, env_bucket, data_bucket).stdout
    copied = {line.split(" -> ")[1] for line in out.splitlines() if line.startswith("copy ")}
    assert objects(gcs_emulator, env_bucket) | objects(gcs_emulator, data_bucket) == copied

    # the gcp profile's Dataflow and Vertex tasks read the wheel and the schema exactly there
    monkeypatch.setenv("PRODML_BUCKET", data_bucket)
    config = load("gcp")
    dataflow = transform_runner(config)
    assert isinstance(dataflow, Dataflow)
    assert {dataflow.package_uri, dataflow.schema_uri, vertex_trainer(config).schema_uri} <= copied
    client = emulators.storage_client(gcs_emulator)
    assert client.bucket(data_bucket).blob(f"dist/{wheel.name}").download_as_bytes() == wheel.read_bytes()

    # dags/ and plugins/ as Composer syncs them: dags/ on sys.path, PRODML_HOME there, parsed by a DagBag
    with monkeypatch.context() as mp:
        for key, value in emulators.gcs_env(gcs_emulator).items():
            mp.setenv(key, value)
        mp.setenv("FSSPEC_GCS_TOKEN", "anon")
        for folder in ("dags", "plugins"):
            storage.get_dir(f"gs://{env_bucket}/{folder}", tmp_path / folder)
    assert (tmp_path / "dags" / ".airflowignore").read_text().splitlines()[1:] == ["ml/", "include/"]
    probe = (
        "import json, ml\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(tmp_path / 'dags')!r})\n"
        "print(json.dumps({'ml': ml.__file__, 'dags': sorted(bag.dag_ids), 'errors': bag.import_errors,"
        " 'files': sorted(bag.dagbag_stats[i].file for i in range(len(bag.dagbag_stats)))}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PRODML"))}
    env |= {"PYTHONPATH": f"{tmp_path / 'dags'}:{tmp_path / 'plugins'}", "PRODML_HOME": str(tmp_path / "dags"),
            "PRODML_PROFILE": "gcp", "PRODML_BUCKET": data_bucket, "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parsed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == DAG_IDS
    assert parsed["ml"].startswith(str(tmp_path / "dags" / "ml"))  # the deployed package, not this checkout
    assert not any("/ml/" in f or "/include/" in f for f in parsed["files"])  # .airflowignore honoured


def test_deploy_refuses_a_wheel_of_another_version(tmp_path):
    stale = tmp_path / "prodml-0.0.1-py3-none-any.whl"
    stale.write_bytes(b"")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--bucket", "gs://env", "--data-bucket", "gs://data",
                           "--wheel", str(stale), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "run `make dist`" in proc.stderr
