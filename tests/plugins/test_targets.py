"""prodml_airflow.targets: the runner kinds read once from the profile, and the Vertex AI machine
specs it accepts (Vertex AI, "Configure compute resources for custom training", TPU section)."""

from __future__ import annotations

import copy

import pytest
from prodml_airflow.targets import (
    Dataflow,
    LocalBeam,
    MachineSpec,
    check_machine,
    transform_runner,
    vertex_trainer,
)

import ml
from ml.config import ConfigError, load


@pytest.fixture()
def gcp(monkeypatch):
    for key, value in {"PRODML_BUCKET": "b", "GCP_PROJECT": "p", "GCP_REGION": "europe-west4"}.items():
        monkeypatch.setenv(key, value)
    for key in ("PRODML_TRAINING_KIND", "PRODML_BEAM_RUNNER"):
        monkeypatch.delenv(key, raising=False)
    return load("gcp")


@pytest.mark.parametrize("spec", [
    MachineSpec("ct5lp-hightpu-1t", tpu_topology="1x1"),
    MachineSpec("ct5lp-hightpu-4t", tpu_topology="2x2"),
    MachineSpec("ct5lp-hightpu-8t", tpu_topology="2x4"),
    MachineSpec("cloud-tpu", "TPU_V2", 8),
    MachineSpec("cloud-tpu", "TPU_V3", 32),
    MachineSpec("a2-highgpu-1g", "NVIDIA_TESLA_A100", 1),
    MachineSpec("n2-standard-8"),
])
def test_specs_vertex_accepts(spec):
    assert check_machine(spec) is spec


@pytest.mark.parametrize(("spec", "message"), [
    (MachineSpec("cloud-tpu", "TPU_V5_LITEPOD", 4), "TPU v5e: machine type ct5lp-hightpu"),  # the old gcp.yaml
    (MachineSpec("ct5lp-hightpu-4t", tpu_topology="2x4"), "topology '2x2'"),
    (MachineSpec("ct5lp-hightpu-4t"), "topology '2x2'"),
    (MachineSpec("ct5lp-hightpu-4t", "TPU_V5_LITEPOD", 4, "2x2"), "leave accelerator_type/count unset"),
    (MachineSpec("cloud-tpu", "TPU_V3", 4), "accelerator_count is 8"),
    (MachineSpec("n2-standard-8", "TPU_V5_LITEPOD", 4), "cannot carry TPU_V5_LITEPOD"),
    (MachineSpec("a2-highgpu-1g", "NVIDIA_TESLA_A100", 0), "together"),
    (MachineSpec("n2-standard-8", tpu_topology="2x2"), "TPU machines only"),
])
def test_specs_vertex_rejects(spec, message):
    with pytest.raises(ConfigError, match=message):
        check_machine(spec)


def test_gcp_profile_runs_on_vertex_and_dataflow(gcp):
    trainer = vertex_trainer(gcp)
    assert trainer.machine == MachineSpec("ct5lp-hightpu-4t", None, 0, "2x2")
    assert trainer.container_uri == f"europe-west4-docker.pkg.dev/p/prodml/trainer:{ml.__version__}"
    assert trainer.env == {"PRODML_DISTRIBUTE": "tpu"} and trainer.schema_uri == "gs://b/include/schemas/traffic.yaml"
    assert trainer.service_account is None and trainer.deferrable
    dataflow = transform_runner(gcp)
    assert isinstance(dataflow, Dataflow)
    assert dataflow.package_uri == f"gs://b/dist/prodml-{ml.__version__}-py3-none-any.whl"
    assert dataflow.options["temp_location"] == "gs://b/dataflow/tmp" and "service_account" not in dataflow.options


def test_the_gcp_profile_keeps_compute_local_on_request(gcp, monkeypatch):
    monkeypatch.setenv("PRODML_TRAINING_KIND", "subprocess")
    monkeypatch.setenv("PRODML_BEAM_RUNNER", "FnApiRunner")
    config = load("gcp")
    assert vertex_trainer(config) is None
    assert transform_runner(config) == LocalBeam("FnApiRunner", {})


def test_unknown_kinds_and_missing_project_are_errors(gcp):
    bad = copy.deepcopy(gcp)
    bad["training"]["kind"] = "tpu"
    with pytest.raises(ConfigError, match="training.kind 'tpu'"):
        vertex_trainer(bad)
    local = load("local")
    local["training"]["kind"] = "vertex"
    with pytest.raises(ConfigError, match="needs the gcp profile"):
        vertex_trainer(local)
    local["beam"]["runner"] = "DataflowRunner"
    with pytest.raises(ConfigError, match="needs the gcp profile"):
        transform_runner(local)
