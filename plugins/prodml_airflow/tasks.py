"""Profile-aware task factories: the same DAG gets local operators or Google provider operators.

gcp-only imports stay inside the gcp branches, so DAG files parse without google.cloud locally.
"""

from __future__ import annotations

from pathlib import Path

from ml.config import PROJECT_ROOT

TRANSFORM_PY = str(Path(PROJECT_ROOT) / "ml" / "transform.py")


def beam_transform(config: dict, *, task_id: str, inputs, output: str):
    """The Beam transform (`ml/transform.py`, one `run(argv)`): Dataflow through the Apache Beam
    provider on gcp; locally the same entry point on the pinned FnApiRunner in a subprocess (the
    provider's module imports the Google hooks, ~1 s, which DAG parsing must not pay locally)."""
    from prodml_airflow.operators import PythonModuleOperator

    beam = config["beam"]
    options = {
        "input": inputs,
        "output": output,
        "schema": config["schema_path"],
        "eval_fraction": config["training"]["eval_fraction"],
        "num_shards": beam["num_shards"],
        **beam.get("options", {}),
    }
    if config["profile"] == "gcp":
        from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
        from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration

        options["setup_file"] = str(Path(PROJECT_ROOT) / "setup.py")  # ships ml/ to the workers
        return BeamRunPythonPipelineOperator(
            task_id=task_id, py_file=TRANSFORM_PY, runner=beam["runner"], pipeline_options=options,
            dataflow_config=DataflowConfiguration(
                job_name=f"prodml-{task_id}", project_id=config["project"], location=config["region"],
                gcp_conn_id=config["gcp_conn_id"], wait_until_finished=True))
    return PythonModuleOperator(task_id=task_id, module="ml.transform",
                                args={**options, "runner": beam["runner"]}, output_uri=output)


def train_model(config: dict, *, task_id: str, trainer_args: dict, output: str):
    """Run ml.trainer: a local subprocess, or a Vertex AI custom Python-package job on gcp."""
    training = config["training"]
    if config["profile"] == "gcp":
        from airflow.providers.google.cloud.operators.vertex_ai.custom_job import (
            CreateCustomPythonPackageTrainingJobOperator,
        )

        args = [f"--{k}={v}" for k, v in trainer_args.items() if v not in (None, "", False)]
        return CreateCustomPythonPackageTrainingJobOperator(
            task_id=task_id, project_id=config["project"], region=config["region"],
            display_name=f"prodml-{task_id}", python_package_gcs_uri=f"{config['storage']['bucket']}/dist/prodml.tar.gz",
            python_module_name="ml.trainer", container_uri=training["container_uri"],
            args=[*args, f"--output={output}"], machine_type=training["machine_type"],
            accelerator_type=training["accelerator_type"], accelerator_count=training["accelerator_count"],
            gcp_conn_id=config["gcp_conn_id"])
    from prodml_airflow.operators import PythonModuleOperator

    return PythonModuleOperator(task_id=task_id, module="ml.trainer", args={**trainer_args, "output": output},
                                output_uri=output)


def file_set_sensor(config: dict, *, task_id: str, timeout):
    """Wait for a completed file set (`landing/dt=*/_SUCCESS`): the standard FileSensor locally, the
    Google provider's GCS sensor on gcp. Deferrable (no worker slot while waiting); on timeout the
    run is skipped (soft_fail), not failed. Which set is new is decided downstream (processed-sets
    record), so the sensor only answers "has anything landed?"."""
    landing = config["storage"]["landing"]
    common = {"task_id": task_id, "timeout": timeout.total_seconds(), "poke_interval": 60,
              "soft_fail": True, "deferrable": True}
    if config["profile"] == "gcp":
        from airflow.providers.google.cloud.sensors.gcs import GCSObjectsWithPrefixExistenceSensor

        bucket, _, prefix = landing.removeprefix("gs://").partition("/")
        return GCSObjectsWithPrefixExistenceSensor(bucket=bucket, prefix=f"{prefix}/dt=",
                                                   google_cloud_conn_id=config["gcp_conn_id"], **common)
    from airflow.providers.standard.sensors.filesystem import FileSensor

    return FileSensor(filepath=landing.removeprefix("file://") + "/dt=*/_SUCCESS", fs_conn_id="fs_default",
                      **common)
