"""Task factories whose operator depends on where the work runs: local operators, or the Google
provider's operators when a Google Cloud target is given (`prodml_airflow.targets`, read once per
DAG file from the profile). Every factory takes the values it uses, never the whole config.

gcp-only imports stay inside the Google branches, so DAG files parse without google.cloud locally.
"""

from __future__ import annotations

from pathlib import Path

from ml.config import PROJECT_ROOT
from prodml_airflow.targets import GoogleCloud, VertexTrainer

TRANSFORM_PY = str(Path(PROJECT_ROOT) / "ml" / "transform.py")


def beam_transform(*, task_id: str, inputs, output: str, schema_path: str, eval_fraction: float, runner: str,
                   num_shards: int, options: dict | None = None, google: GoogleCloud | None = None):
    """The Beam transform (`ml/transform.py`, one `run(argv)`): Dataflow through the Apache Beam
    provider when `google` is given; otherwise the same entry point on `runner` (the pinned
    FnApiRunner) in a subprocess (the provider's module imports the Google hooks, ~1 s, which DAG
    parsing must not pay locally)."""
    from prodml_airflow.operators import PythonModuleOperator

    pipeline_options = {
        "input": inputs,
        "output": output,
        "schema": schema_path,
        "eval_fraction": eval_fraction,
        "num_shards": num_shards,
        **(options or {}),
    }
    if google is not None:
        from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
        from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration

        pipeline_options["setup_file"] = str(Path(PROJECT_ROOT) / "setup.py")  # ships ml/ to the workers
        return BeamRunPythonPipelineOperator(
            task_id=task_id, py_file=TRANSFORM_PY, runner=runner, pipeline_options=pipeline_options,
            dataflow_config=DataflowConfiguration(
                job_name=f"prodml-{task_id}", project_id=google.project, location=google.region,
                gcp_conn_id=google.conn_id, wait_until_finished=True))
    return PythonModuleOperator(task_id=task_id, module="ml.transform",
                                args={**pipeline_options, "runner": runner}, output_uri=output)


def train_model(*, task_id: str, trainer_args: dict, output: str, vertex: VertexTrainer | None = None):
    """Run ml.trainer: a Vertex AI custom Python-package job when `vertex` is given, else a local subprocess."""
    if vertex is not None:
        from airflow.providers.google.cloud.operators.vertex_ai.custom_job import (
            CreateCustomPythonPackageTrainingJobOperator,
        )

        args = [f"--{k}={v}" for k, v in trainer_args.items() if v not in (None, "", False)]
        return CreateCustomPythonPackageTrainingJobOperator(
            task_id=task_id, project_id=vertex.google.project, region=vertex.google.region,
            display_name=f"prodml-{task_id}", python_package_gcs_uri=vertex.package_uri,
            python_module_name="ml.trainer", container_uri=vertex.container_uri,
            args=[*args, f"--output={output}"], machine_type=vertex.machine_type,
            accelerator_type=vertex.accelerator_type, accelerator_count=vertex.accelerator_count,
            gcp_conn_id=vertex.google.conn_id)
    from prodml_airflow.operators import PythonModuleOperator

    return PythonModuleOperator(task_id=task_id, module="ml.trainer", args={**trainer_args, "output": output},
                                output_uri=output)


def file_set_sensor(*, task_id: str, landing_uri: str, timeout, google: GoogleCloud | None = None):
    """Wait for a completed file set (`landing/dt=*/_SUCCESS`): the standard FileSensor locally, the
    Google provider's GCS sensor when `google` is given. Deferrable (no worker slot while waiting);
    on timeout the run is skipped (soft_fail), not failed. Which set is new is decided downstream
    (processed-sets record), so the sensor only answers "has anything landed?"."""
    common = {"task_id": task_id, "timeout": timeout.total_seconds(), "poke_interval": 60,
              "soft_fail": True, "deferrable": True}
    if google is not None:
        from airflow.providers.google.cloud.sensors.gcs import GCSObjectsWithPrefixExistenceSensor

        bucket, _, prefix = landing_uri.removeprefix("gs://").partition("/")
        return GCSObjectsWithPrefixExistenceSensor(bucket=bucket, prefix=f"{prefix}/dt=",
                                                   google_cloud_conn_id=google.conn_id, **common)
    from airflow.providers.standard.sensors.filesystem import FileSensor

    return FileSensor(filepath=landing_uri.removeprefix("file://") + "/dt=*/_SUCCESS", fs_conn_id="fs_default",
                      **common)
