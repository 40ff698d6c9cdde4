"""Where the heavy steps run, read once from the profile: the one place that reads the runner kinds.

- `beam.runner`: `DataflowRunner` → a `Dataflow` target (ml/transform.py on Dataflow, the ml wheel
  shipped to the workers); any other runner (the pinned `FnApiRunner`) → a `LocalBeam` target
  (the same entry point in a subprocess on the Airflow worker).
- `training.kind`: `vertex` → a `VertexTrainer` target (a Vertex AI CustomJob); `subprocess` →
  None (`python -m ml.trainer` on the Airflow worker).
- the new-data sensor: the Google provider's GCS sensor on the gcp profile (`google_cloud`).

So a gcp profile can keep compute local (`PRODML_TRAINING_KIND=subprocess`,
`PRODML_BEAM_RUNNER=FnApiRunner`) while storage and the warehouse stay on Google Cloud (or its
emulators). The task factories (`prodml_airflow.tasks`) take these targets and never read the
profile. Nothing here imports the Google provider: DAG files parse light on every profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ml
from ml.config import ConfigError

TRAINING_KINDS = ("subprocess", "vertex")

# Machine specs Vertex AI accepts for TPU training (docs: Vertex AI, "Configure compute resources
# for custom training", TPU section). TPU v2/v3: machine type `cloud-tpu` with the accelerator
# named and 8 cores (32 and multiples for Pod slices). TPU v5e: the `ct5lp-hightpu-*` machine type
# names the chips, with the slice topology of that host and no accelerator type. TPU v6e
# (`ct6e-standard-*`) is left out: Vertex AI does not support TensorFlow training on it.
TPU_V5E_TOPOLOGY = {"ct5lp-hightpu-1t": "1x1", "ct5lp-hightpu-4t": "2x2", "ct5lp-hightpu-8t": "2x4"}
CLOUD_TPU_ACCELERATORS = ("TPU_V2", "TPU_V3")


@dataclass(frozen=True)
class GoogleCloud:
    project: str
    region: str
    conn_id: str


@dataclass(frozen=True)
class LocalBeam:
    """ml/transform.py in a subprocess on the Airflow worker, with this runner."""
    runner: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Dataflow:
    """ml/transform.py on Dataflow: workers install the ml wheel (`package_uri`, with its declared
    runtime dependencies) and read the schema from the bucket; temp and staging in the bucket."""
    google: GoogleCloud
    package_uri: str
    schema_uri: str
    options: dict  # runner options: temp/staging locations, worker machine type, max workers, ...
    service_account: str | None = None


@dataclass(frozen=True)
class MachineSpec:
    machine_type: str
    accelerator_type: str | None = None
    accelerator_count: int = 0
    tpu_topology: str | None = None

    @property
    def is_tpu(self) -> bool:
        return self.machine_type in TPU_V5E_TOPOLOGY or self.machine_type == "cloud-tpu"


@dataclass(frozen=True)
class VertexTrainer:
    """`python -m ml.trainer` as a Vertex AI CustomJob in the trainer image (`container_uri`, which
    holds the ml package). The job's output directory is the run's candidate folder, so Vertex's
    AIP_MODEL_DIR is `<candidate>/model/`, where the trainer exports the model. The job reads the
    schema from the bucket (`schema_uri`): the container has none of the Composer worker's files."""
    google: GoogleCloud
    container_uri: str
    machine: MachineSpec
    schema_uri: str
    service_account: str | None = None
    deferrable: bool = True
    env: dict = field(default_factory=dict)


def check_machine(spec: MachineSpec) -> MachineSpec:
    """Raise ConfigError unless Vertex AI accepts `spec` for training (the TPU table above; GPUs
    need an accelerator type and count; a CPU machine has neither)."""
    where = f"training.vertex: machine_type {spec.machine_type!r}"
    if spec.machine_type in TPU_V5E_TOPOLOGY:
        want = TPU_V5E_TOPOLOGY[spec.machine_type]
        if spec.tpu_topology != want:
            raise ConfigError(f"{where} is one TPU v5e host with topology {want!r}, not {spec.tpu_topology!r}")
        if spec.accelerator_type or spec.accelerator_count:
            raise ConfigError(f"{where} names its TPU v5e chips itself: leave accelerator_type/count unset")
    elif spec.machine_type == "cloud-tpu":
        if spec.accelerator_type not in CLOUD_TPU_ACCELERATORS:
            raise ConfigError(f"{where} takes accelerator_type {' or '.join(CLOUD_TPU_ACCELERATORS)}, "
                              f"not {spec.accelerator_type!r} (TPU v5e: machine type ct5lp-hightpu-*)")
        if not (spec.accelerator_count == 8 or (spec.accelerator_count and spec.accelerator_count % 32 == 0)):
            raise ConfigError(f"{where}: accelerator_count is 8 (one TPU) or a multiple of 32 (a Pod slice), "
                              f"not {spec.accelerator_count}")
        if spec.tpu_topology:
            raise ConfigError(f"{where}: no tpu_topology for TPU v2/v3")
    elif (spec.accelerator_type or "").startswith("TPU"):
        raise ConfigError(f"{where} cannot carry {spec.accelerator_type} (TPU v5e: ct5lp-hightpu-*; "
                          f"v2/v3: cloud-tpu)")
    elif bool(spec.accelerator_type) != bool(spec.accelerator_count):
        raise ConfigError(f"{where}: give accelerator_type and accelerator_count together")
    elif spec.tpu_topology:
        raise ConfigError(f"{where}: tpu_topology is for TPU machines only")
    return spec


def google_cloud(config: dict) -> GoogleCloud | None:
    """The Google Cloud project the gcp profile runs on (the GCS sensor); None on the local profile."""
    if config["profile"] != "gcp":
        return None
    return GoogleCloud(project=config["project"], region=config["region"],
                       conn_id=config.get("gcp_conn_id", "google_cloud_default"))


def package_uri(bucket_uri: str) -> str:
    """The ml wheel in the bucket (uploaded by scripts/deploy_composer.py, built by `make dist`)."""
    return f"{bucket_uri.rstrip('/')}/dist/{wheel_name()}"


def wheel_name(version: str = ml.__version__) -> str:
    return f"prodml-{version}-py3-none-any.whl"


def schema_uri(config: dict) -> str:
    """The schema file in the bucket, at the same relative path as in the repository (deploy uploads it)."""
    return f"{config['storage']['bucket'].rstrip('/')}/{config['schema']}"


def transform_runner(config: dict) -> LocalBeam | Dataflow:
    """Where ml/transform.py runs: Dataflow when `beam.runner` is DataflowRunner, else a subprocess."""
    beam = config["beam"]
    if beam["runner"] != "DataflowRunner":
        return LocalBeam(runner=beam["runner"], options=dict(beam.get("options") or {}))
    google = _google(config, "beam.runner: DataflowRunner")
    dataflow = dict(beam.get("dataflow") or {})
    service_account = dataflow.pop("service_account", None) or None
    return Dataflow(google=google, package_uri=package_uri(config["storage"]["bucket"]),
                    schema_uri=schema_uri(config), options={**(beam.get("options") or {}), **dataflow},
                    service_account=service_account)


def vertex_trainer(config: dict) -> VertexTrainer | None:
    """The Vertex AI job that runs ml.trainer when `training.kind` is vertex; None for a subprocess."""
    training = config["training"]
    kind = training.get("kind", "subprocess")
    if kind not in TRAINING_KINDS:
        raise ConfigError(f"training.kind {kind!r}: expected one of {', '.join(TRAINING_KINDS)}")
    if kind == "subprocess":
        return None
    google = _google(config, "training.kind: vertex")
    vertex = training["vertex"]
    machine = check_machine(MachineSpec(
        machine_type=vertex["machine_type"], accelerator_type=vertex.get("accelerator_type") or None,
        accelerator_count=int(vertex.get("accelerator_count") or 0), tpu_topology=vertex.get("tpu_topology") or None))
    return VertexTrainer(
        google=google, container_uri=f"{vertex['container_image']}:{ml.__version__}", machine=machine,
        schema_uri=schema_uri(config),
        service_account=vertex.get("service_account") or None, deferrable=bool(vertex.get("deferrable", True)),
        # the trainer's strategy: a TPU job declares its TPU (ml.distribute), whatever the VM exposes
        env={"PRODML_DISTRIBUTE": "tpu"} if machine.is_tpu else {})


def _google(config: dict, what: str) -> GoogleCloud:
    google = google_cloud(config)
    if google is None:
        raise ConfigError(f"{what} needs the gcp profile (project, region, connection)")
    return google
