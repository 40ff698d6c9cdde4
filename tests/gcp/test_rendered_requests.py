"""The gcp profile's Vertex AI, Dataflow and GCS-sensor tasks, rendered as Airflow renders them and
turned into the exact requests, checked with the client libraries' own types. Nothing calls Google:
each operator's `execute` runs for real up to its hook's call, which is intercepted.

- Vertex AI: the CustomJob the provider's hook sends (`CreateCustomJobRequest`,
  `google.cloud.aiplatform_v1` types: unknown or mistyped fields fail), its machine spec valid for
  its TPU, the trainer image, the output directory in the bucket, and the container's arguments
  parsed by ml.trainer's own argument parser.
- Dataflow: the command line the Beam hook runs, parsed by Beam's PipelineOptions and by
  ml.transform's own parser: runner, project, region, temp/staging, the wheel and the schema in
  the bucket.
- The GCS sensor: a match_glob on `dt=*/_SUCCESS`, deferrable; poked against the GCS emulator.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import re
import sys
from pathlib import Path

import pytest

import ml
from ml.config import PROJECT_ROOT

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "prodml-render-test"
PROJECT, REGION = "render-project", "europe-west4"
GS = f"gs://{BUCKET}"
FILE_SET = "2026-11-17"
LOGICAL = dt.datetime(2026, 11, 16, 3, tzinfo=dt.UTC)
ACCEPTED = [f"{GS}/validated/dt=2026-11-1{i}/part-0.csv" for i in (3, 4)]
CHAMPION = f"{GS}/registry/versions/v0003/model/model.keras"
pytestmark = pytest.mark.usefixtures("gcp_conn_id")  # hooks look their connection up (anonymous here)


class Intercepted(Exception):
    """Raised by a patched hook call: carries what the operator was about to send."""

    def __init__(self, payload):
        super().__init__("intercepted")
        self.payload = payload


def untuned_training_params() -> dict:
    """The XComs of the training DAGs' `training_params` task when tuning never ran (no best.json):
    the gcp profile's `training:` values, as `ml.tuning.training_params` returns them."""
    from ml import config, tuning

    params = tuning.training_params(training=config.load("gcp")["training"], best_uri=None)
    return {("training_params", key): value for key, value in params.items()}


class FakeTI:
    """What template rendering asks of the task instance: XComs of the upstream tasks (by default
    `training_params` as it is before any tuning run)."""

    def __init__(self, xcoms: dict):
        self.xcoms = {**untuned_training_params(), **xcoms}

    def xcom_pull(self, task_ids=None, key="return_value", default=None, **_):
        return self.xcoms.get((task_ids, key), default)


@pytest.fixture(scope="module")
def gcp_dags():
    """The DAG files parsed under the gcp profile with the bucket set (Google runners: Vertex, Dataflow)."""
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"PRODML_PROFILE": "gcp", "PRODML_BUCKET": BUCKET, "GCP_PROJECT": PROJECT,
                           "GCP_REGION": REGION}.items():
            mp.setenv(key, value)
        for key in ("PRODML_TRAINING_KIND", "PRODML_BEAM_RUNNER"):
            mp.delenv(key, raising=False)
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert bag.import_errors == {}
        yield bag.dags


def rendered(dag, task_id: str, xcoms: dict, params: dict | None = None):
    """The task with its template fields rendered the way the task runner renders them
    (`render_template_fields` with the DAG's Jinja environment and a run's context). Rendering
    changes the task in place, so a copy is rendered, as each task instance gets its own."""
    task = copy.deepcopy(dag.get_task(task_id))
    ti = FakeTI(xcoms)
    context = {
        "dag": dag, "task": task, "ti": ti, "task_instance": ti, "run_id": "scheduled__2026-11-16T03:00:00+00:00",
        "logical_date": LOGICAL, "ds": LOGICAL.strftime("%Y-%m-%d"), "ds_nodash": LOGICAL.strftime("%Y%m%d"),
        "ts": LOGICAL.isoformat(), "ts_nodash": LOGICAL.strftime("%Y%m%dT%H%M%S"),
        "params": {**{k: v.value for k, v in dag.params.items()}, **(params or {})},
    }
    task.render_template_fields(context, jinja_env=dag.get_template_env())
    return task, context


def no_templates_left(value) -> None:
    text = json.dumps(value, default=str)
    assert "{{" not in text and "{%" not in text, text


# -- Vertex AI ---------------------------------------------------------------------------------

def custom_job_sent(monkeypatch, dag, xcoms, params=None):
    """Run the train task's execute up to the hook's create_custom_job: (request, its context)."""
    from airflow.providers.google.cloud.hooks.vertex_ai.custom_job import CustomJobHook

    def create_custom_job(self, project_id, region, custom_job, **_):
        raise Intercepted({"project_id": project_id, "region": region, "custom_job": custom_job})

    monkeypatch.setattr(CustomJobHook, "create_custom_job", create_custom_job)
    task, context = rendered(dag, "train", xcoms, params)
    with pytest.raises(Intercepted) as sent:
        task.execute(context)
    return task, sent.value.payload


def trainer_arguments(argv: list[str]) -> argparse.Namespace:
    """argv as ml.trainer's own parser reads it (stopped right after parsing)."""
    from ml import trainer

    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise Intercepted(original(self, args, namespace))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", parse_args)
        with pytest.raises(Intercepted) as parsed:
            trainer.run(argv)
    return parsed.value.payload


@pytest.mark.parametrize("dag_id", ["static_training", "dynamic_training"])
def test_vertex_custom_job_request(gcp_dags, monkeypatch, dag_id):
    from google.cloud import aiplatform_v1
    from prodml_airflow.targets import MachineSpec, check_machine

    dag = gcp_dags[dag_id]
    xcoms = {("champion_checkpoint", "return_value"): CHAMPION, ("pick_file_set", "date"): FILE_SET}
    task, sent = custom_job_sent(monkeypatch, dag, xcoms)
    run_key = FILE_SET if dag_id == "dynamic_training" else "20261116"
    candidate = f"{GS}/artifacts/{dag_id}/{run_key}/candidate"

    # the exact request the hook sends, built with the client library's types
    request = aiplatform_v1.CreateCustomJobRequest(
        parent=aiplatform_v1.JobServiceClient.common_location_path(sent["project_id"], sent["region"]),
        custom_job=sent["custom_job"])
    assert request.parent == f"projects/{PROJECT}/locations/{REGION}"
    job = request.custom_job
    no_templates_left(aiplatform_v1.CustomJob.to_dict(job))
    assert job.display_name == f"prodml-{dag_id}-train-20261116T030000"

    # the staging/output location: the run's candidate folder in the bucket (AIP_MODEL_DIR = <it>/model/)
    assert job.job_spec.base_output_directory.output_uri_prefix == candidate
    [pool] = job.job_spec.worker_pool_specs
    assert pool.replica_count == 1

    # a machine spec Vertex accepts for the TPU: one v5e host, 2x2, no accelerator type
    machine = pool.machine_spec
    assert (machine.machine_type, machine.tpu_topology) == ("ct5lp-hightpu-4t", "2x2")
    assert machine.accelerator_type == aiplatform_v1.AcceleratorType.ACCELERATOR_TYPE_UNSPECIFIED
    assert machine.accelerator_count == 0
    check_machine(MachineSpec(machine.machine_type, None, machine.accelerator_count, machine.tpu_topology))

    # the trainer image (Python 3.11, TensorFlow for TPU, the ml wheel), tagged with the package version
    container = pool.container_spec
    assert container.image_uri == f"{REGION}-docker.pkg.dev/{PROJECT}/prodml/trainer:{ml.__version__}"
    assert list(container.command) == ["python", "-m", "ml.trainer"]
    assert {e.name: e.value for e in container.env} == {"PRODML_DISTRIBUTE": "tpu"}

    # the arguments, as ml.trainer parses them: every URI in the bucket, the model written to the output
    args = trainer_arguments(list(container.args))
    assert args.output == candidate
    assert args.train == f"{GS}/artifacts/{dag_id}/{run_key}/transform/train/part-*.tfrecord"
    assert args.eval == f"{GS}/artifacts/{dag_id}/{run_key}/transform/eval/part-*.tfrecord"
    assert args.stats == f"{GS}/artifacts/{dag_id}/{run_key}/transform/stats.json"
    assert args.schema == f"{GS}/include/schemas/traffic.yaml"  # the container has no Composer folders
    assert args.warm_start == CHAMPION
    assert args.shuffle_labels is False
    assert (args.epochs, args.batch_size, args.hidden_units) == (20, 4096, "256,128")


def test_vertex_job_takes_the_tuned_parameters(gcp_dags, monkeypatch):
    """After a tuning run, the training_params task returns the stored best parameters: the CustomJob's
    arguments carry them (the tuned learning rate and layers, the profile's epochs)."""
    tuned = {("training_params", "learning_rate"): 0.0123, ("training_params", "hidden_units"): "512,256",
             ("training_params", "batch_size"): 8192}
    _, sent = custom_job_sent(monkeypatch, gcp_dags["static_training"],
                              {("champion_checkpoint", "return_value"): CHAMPION, **tuned})
    args = trainer_arguments(sent["custom_job"]["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"])
    assert (args.learning_rate, args.hidden_units, args.batch_size, args.epochs) == (0.0123, "512,256", 8192, 20)


def test_vertex_job_without_a_champion_and_with_shuffled_labels(gcp_dags, monkeypatch):
    dag = gcp_dags["dynamic_training"]
    xcoms = {("pick_file_set", "date"): FILE_SET}  # no champion yet: champion_checkpoint returned None
    _, sent = custom_job_sent(monkeypatch, dag, xcoms, params={"shuffle_labels": True})
    argv = sent["custom_job"]["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"]
    assert "--shuffle_labels" in argv and "True" not in argv and "False" not in argv
    args = trainer_arguments(argv)
    assert args.shuffle_labels is True and args.warm_start == ""


def test_vertex_train_task_returns_the_candidate_folder(gcp_dags, monkeypatch):
    """Downstream (evaluation) gets the folder the trainer wrote, on the blocking and the deferred path."""
    from airflow.providers.google.cloud.hooks.vertex_ai.custom_job import CustomJobHook
    from google.cloud.aiplatform_v1 import CustomJob

    dag = gcp_dags["static_training"]
    task, context = rendered(dag, "train", {("champion_checkpoint", "return_value"): None})
    job = CustomJob(name=f"projects/{PROJECT}/locations/{REGION}/customJobs/123")
    monkeypatch.setattr(CustomJobHook, "create_custom_job", lambda self, **kw: job)
    monkeypatch.setattr(CustomJobHook, "wait_for_custom_job", lambda self, **kw: job)
    context["ti"].xcom_push = lambda key, value: None
    task.deferrable = False
    candidate = f"{GS}/artifacts/static_training/20261116/candidate"
    assert task.execute(context) == candidate
    event = {"status": "success", "message": "done", "custom_job": CustomJob.to_dict(job)}
    assert task.execute_complete(context, event) == candidate


# -- Dataflow ----------------------------------------------------------------------------------

def dataflow_command(monkeypatch, dag, xcoms) -> list[str]:
    """Run the transform task's execute up to the Beam hook's subprocess: the command it would run."""
    from airflow.providers.apache.beam.hooks import beam as beam_hooks

    def run_beam_command(cmd, **_):
        raise Intercepted(cmd)

    monkeypatch.setattr(beam_hooks, "run_beam_command", run_beam_command)
    monkeypatch.setenv("PYTHONPATH", "")  # execute sets the child's PYTHONPATH; keep the test's own
    task, context = rendered(dag, "transform", xcoms)
    with pytest.raises(Intercepted) as sent:
        task.execute(context)
    return sent.value.payload


def transform_arguments(argv: list[str]):
    """argv as ml.transform's own parser reads it: (its arguments, the Beam arguments left over)."""
    from ml import transform

    original = argparse.ArgumentParser.parse_known_args

    def parse_known_args(self, args=None, namespace=None):
        raise Intercepted(original(self, args, namespace))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_known_args", parse_known_args)
        with pytest.raises(Intercepted) as parsed:
            transform.run(argv)
    return parsed.value.payload


@pytest.mark.parametrize("dag_id", ["static_training", "dynamic_training"])
def test_dataflow_pipeline_options(gcp_dags, monkeypatch, dag_id):
    from apache_beam.options.pipeline_options import (
        GoogleCloudOptions,
        PipelineOptions,
        SetupOptions,
        StandardOptions,
        WorkerOptions,
    )

    dag = gcp_dags[dag_id]
    xcoms = {("validate", "accepted"): ACCEPTED, ("training_window", "files"): ACCEPTED,
             ("pick_file_set", "date"): FILE_SET}
    cmd = dataflow_command(monkeypatch, dag, xcoms)
    no_templates_left(cmd)
    run_key = FILE_SET if dag_id == "dynamic_training" else "20261116"

    # this worker's Python runs ml/transform.py (the child imports ml from where it is deployed)
    assert cmd[0] == sys.executable
    assert Path(cmd[1]) == Path(ml.__file__).parent / "transform.py"
    assert sys.modules["os"].environ["PYTHONPATH"].split(":")[0] == str(Path(ml.__file__).parents[1])

    # the transform's own arguments
    args, beam_args = transform_arguments(cmd[2:])
    assert args.input == ACCEPTED
    assert args.output == f"{GS}/artifacts/{dag_id}/{run_key}/transform"
    assert args.schema == f"{GS}/include/schemas/traffic.yaml"  # workers read the schema from the bucket
    assert (args.eval_fraction, args.num_shards) == (0.2, 32)

    # the runner's options, as Beam reads them
    options = PipelineOptions(beam_args)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    cloud = options.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region) == (PROJECT, REGION)
    assert cloud.temp_location == f"{GS}/dataflow/tmp"
    assert cloud.staging_location == f"{GS}/dataflow/staging"
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", cloud.job_name), cloud.job_name
    assert cloud.job_name.startswith("prodml-transform-")
    assert options.view_as(SetupOptions).extra_packages == [f"{GS}/dist/prodml-{ml.__version__}-py3-none-any.whl"]
    assert options.view_as(SetupOptions).setup_file is None  # the wheel, not a source tree, is shipped
    workers = options.view_as(WorkerOptions)
    assert (workers.machine_type, workers.max_num_workers) == ("n2-standard-4", 20)


# -- GCS sensor --------------------------------------------------------------------------------

def test_gcs_sensor_waits_for_a_success_marker(gcp_dags, gcs_emulator, gcp_conn_id):
    from airflow.providers.google.cloud.sensors.gcs import GCSObjectExistenceSensor

    from tests.gcp import emulators

    sensor, context = rendered(gcp_dags["dynamic_training"], "wait_for_file_set", {})
    assert isinstance(sensor, GCSObjectExistenceSensor)
    assert (sensor.bucket, sensor.object, sensor.use_glob) == (BUCKET, "landing/dt=*/_SUCCESS", True)
    assert sensor.deferrable and sensor.soft_fail and sensor.google_cloud_conn_id == gcp_conn_id

    emulators.create_bucket(gcs_emulator, BUCKET)
    bucket = emulators.storage_client(gcs_emulator).bucket(BUCKET)
    bucket.blob(f"landing/dt={FILE_SET}/part-00000.csv").upload_from_string("a,b\n1,2\n")
    bucket.blob("landing/dt=2026-11-18/_SUCCESS.tmp").upload_from_string("")
    bucket.blob("landing/other/_SUCCESS").upload_from_string("")
    assert sensor.poke(context) is False  # data without its marker is not a file set yet
    bucket.blob(f"landing/dt={FILE_SET}/_SUCCESS").upload_from_string("")
    assert sensor.poke(context) is True


def test_local_profile_keeps_the_local_runners(monkeypatch):
    from prodml_airflow.targets import LocalBeam, transform_runner, vertex_trainer

    from ml.config import load

    monkeypatch.setenv("PRODML_PROFILE", "local")
    config = load()
    assert transform_runner(config) == LocalBeam(runner="FnApiRunner", options={})
    assert vertex_trainer(config) is None
    assert (PROJECT_ROOT / config["schema"]).exists()
