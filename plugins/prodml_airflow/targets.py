"""Where the heavy steps run, read once from the profile: the one place the task factories' choice
of operator comes from. None means "local" (subprocess runners, filesystem sensor)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GoogleCloud:
    project: str
    region: str
    conn_id: str


@dataclass(frozen=True)
class VertexTrainer:
    google: GoogleCloud
    package_uri: str  # the ml package (sdist) the custom job installs
    container_uri: str
    machine_type: str
    accelerator_type: str
    accelerator_count: int


def google_cloud(config: dict) -> GoogleCloud | None:
    """The Google Cloud project the gcp profile runs on; None on the local profile."""
    if config["profile"] != "gcp":
        return None
    return GoogleCloud(project=config["project"], region=config["region"],
                       conn_id=config.get("gcp_conn_id", "google_cloud_default"))


def vertex_trainer(config: dict) -> VertexTrainer | None:
    """The Vertex AI custom job that runs ml.trainer on the gcp profile; None on the local profile."""
    google = google_cloud(config)
    if google is None:
        return None
    training = config["training"]
    return VertexTrainer(google=google, package_uri=f"{config['storage']['bucket']}/dist/prodml.tar.gz",
                         container_uri=training["container_uri"], machine_type=training["machine_type"],
                         accelerator_type=training["accelerator_type"],
                         accelerator_count=training["accelerator_count"])
