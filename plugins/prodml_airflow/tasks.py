"""Task factories whose operator depends on where the work runs: local operators, or the Google
provider's operators for a Google Cloud target (`prodml_airflow.targets`, the one place that reads
the runner kinds from the profile). Every factory takes the values it uses, never the whole config.

gcp-only imports stay inside the Google branches, so DAG files parse without google.cloud locally.
"""

from __future__ import annotations

from prodml_airflow.targets import Dataflow, GoogleCloud, LocalBeam, VertexTrainer


def beam_transform(*, task_id: str, inputs, output: str, schema_path: str, eval_fraction: float, num_shards: int,
                   runner: LocalBeam | Dataflow):
    """The Beam transform (`ml/transform.py`, one `run(argv)`).

    A `Dataflow` target: the Apache Beam provider's operator launches it on Dataflow. The workers
    install the ml wheel from the bucket (`--extra_package`; pip installs the runtime dependencies
    the wheel declares) and read the schema from the bucket; temp and staging are in the bucket.
    A `LocalBeam` target: the same entry point on the pinned FnApiRunner in a subprocess (the
    provider's module imports the Google hooks, ~1 s, which DAG parsing must not pay locally)."""
    args = {"input": inputs, "output": output, "eval_fraction": eval_fraction, "num_shards": num_shards}
    if isinstance(runner, Dataflow):
        from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration

        from prodml_airflow.google_operators import BeamModuleOperator

        return BeamModuleOperator(
            task_id=task_id, module="ml.transform", runner="DataflowRunner", output_uri=output,
            pipeline_options={**args, "schema": runner.schema_uri, "extra_package": [runner.package_uri],
                              **runner.options},
            dataflow_config=DataflowConfiguration(
                job_name=f"prodml-{task_id}", append_job_name=True, project_id=runner.google.project,
                location=runner.google.region, gcp_conn_id=runner.google.conn_id,
                service_account=runner.service_account, wait_until_finished=True),
            gcp_conn_id=runner.google.conn_id)
    from prodml_airflow.operators import PythonModuleOperator

    return PythonModuleOperator(task_id=task_id, module="ml.transform", output_uri=output,
                                args={**args, "schema": schema_path, "runner": runner.runner, **runner.options})


def train_model(*, task_id: str, trainer_args: dict, output: str, vertex: VertexTrainer | None = None):
    """Run ml.trainer: a Vertex AI CustomJob in the trainer image when `vertex` is given (its output
    directory is `output`, where the trainer writes the model; the schema is read from the bucket),
    else a local subprocess. Either way the task returns `output`, the candidate folder the
    evaluation reads."""
    if vertex is not None:
        from prodml_airflow.google_operators import VertexTrainingJobOperator

        return VertexTrainingJobOperator(
            task_id=task_id, module="ml.trainer", args={**trainer_args, "schema": vertex.schema_uri}, output_uri=output,
            container_uri=vertex.container_uri, machine=vertex.machine, env=vertex.env,
            service_account=vertex.service_account,
            display_name=f"prodml-{{{{ dag.dag_id }}}}-{task_id}-{{{{ ts_nodash }}}}",
            project_id=vertex.google.project, region=vertex.google.region, gcp_conn_id=vertex.google.conn_id,
            deferrable=vertex.deferrable)
    from prodml_airflow.operators import PythonModuleOperator

    return PythonModuleOperator(task_id=task_id, module="ml.trainer", args={**trainer_args, "output": output},
                                output_uri=output)


def file_set_sensor(*, task_id: str, landing_uri: str, timeout, google: GoogleCloud | None = None):
    """Wait for a completed file set (`landing/dt=*/_SUCCESS`): the standard FileSensor locally, the
    Google provider's GCS sensor with the same glob when `google` is given (a match_glob listing,
    so a part file without its marker does not count). Deferrable (no worker slot while waiting);
    on timeout the run is skipped (soft_fail), not failed. Which set is new is decided downstream
    (processed-sets record), so the sensor only answers "has a complete set landed?"."""
    common = {"task_id": task_id, "timeout": timeout.total_seconds(), "poke_interval": 60,
              "soft_fail": True, "deferrable": True}
    if google is not None:
        from airflow.providers.google.cloud.sensors.gcs import GCSObjectExistenceSensor

        bucket, _, prefix = landing_uri.removeprefix("gs://").partition("/")
        return GCSObjectExistenceSensor(bucket=bucket, object=f"{prefix.rstrip('/')}/dt=*/_SUCCESS".lstrip("/"),
                                        use_glob=True, google_cloud_conn_id=google.conn_id, **common)
    from airflow.providers.standard.sensors.filesystem import FileSensor

    return FileSensor(filepath=landing_uri.removeprefix("file://") + "/dt=*/_SUCCESS", fs_conn_id="fs_default",
                      **common)


def train_runs(*, task_id: str, runs, vertex: VertexTrainer | None = None, module: str = "ml.trial",
               max_active: int | None = None):
    """One mapped training task per item of `runs` (an XComArg of a list of {"args": {...,
    "output": uri}, "output_uri": uri}, built at run time): `python -m <module>` in a subprocess, or
    one Vertex AI CustomJob per run in the trainer image when `vertex` is given (the items' `schema`
    must then be `vertex.schema_uri`). Each mapped task returns its run's output folder.
    `max_active`: how many run at once in a DAG run."""
    limit = {"max_active_tis_per_dagrun": max_active} if max_active else {}
    if vertex is not None:
        from prodml_airflow.google_operators import VertexTrainingJobOperator

        return VertexTrainingJobOperator.partial(
            task_id=task_id, module=module, container_uri=vertex.container_uri, machine=vertex.machine,
            env=vertex.env, service_account=vertex.service_account,
            display_name=f"prodml-{{{{ dag.dag_id }}}}-{task_id}-{{{{ ti.map_index }}}}-{{{{ run_id }}}}",
            project_id=vertex.google.project, region=vertex.google.region, gcp_conn_id=vertex.google.conn_id,
            deferrable=vertex.deferrable, **limit).expand_kwargs(runs)
    from prodml_airflow.operators import PythonModuleOperator

    return PythonModuleOperator.partial(task_id=task_id, module=module, **limit).expand_kwargs(runs)


def tuning_job(*, task_id: str, trial_args: dict, output: str, vertex: VertexTrainer, search_space: dict,
               metric: str, trials: int, parallel: int, max_failed_trials: int = 0):
    """A Vertex AI hyperparameter tuning job (Vizier) whose trials run `python -m ml.trial` with
    `trial_args` (the schema read from the bucket) plus the parameters Vizier proposes, on the
    trainer's machine and image; trial folders under `output`. `search_space`:
    `ml.tuning.vertex_parameter_specs`. Returns the finished job (a dict)."""
    from prodml_airflow.google_operators import VertexTuningJobOperator

    return VertexTuningJobOperator(
        task_id=task_id, module="ml.trial", args={**trial_args, "schema": vertex.schema_uri}, base_output_dir=output,
        container_uri=vertex.container_uri, machine=vertex.machine, env=vertex.env,
        service_account=vertex.service_account, search_space=search_space, metric=metric,
        max_trial_count=trials, parallel_trial_count=parallel, max_failed_trial_count=max_failed_trials,
        display_name=f"prodml-{{{{ dag.dag_id }}}}-{task_id}-{{{{ run_id }}}}",
        project_id=vertex.google.project, region=vertex.google.region, gcp_conn_id=vertex.google.conn_id,
        deferrable=vertex.deferrable)
