"""The gcp profile's tuning and ablation DAGs, rendered as Airflow renders them and turned into the exact
Vertex AI requests, checked with `google.cloud.aiplatform_v1` types. Nothing calls Google.

- tuning: the HyperparameterTuningJob the provider's hook builds (the operator's `execute` runs for
  real through the hook and the Vertex SDK up to the job's `run`): the study spec from the profile's
  search space, the budget, and the trial job = the trainer's worker pool (machine, image, environment
  of `targets.VertexTrainer`) running `python -m ml.trial`, whose arguments, with the parameters Vizier
  appends, parse with ml.trial's and ml.trainer's own parsers.
- ablation: one mapped CustomJob per planned run, in the same worker pool.
"""

from __future__ import annotations

import pytest

from ml import trial
from ml.config import load
from tests.gcp import test_rendered_requests as rendered_requests
from tests.gcp.test_rendered_requests import (
    BUCKET,
    GS,
    PROJECT,
    REGION,
    FakeTI,
    Intercepted,
    custom_job_sent,
    no_templates_left,
    rendered,
    trainer_arguments,
)

pytestmark = pytest.mark.usefixtures("gcp_conn_id")
gcp_dags = rendered_requests.gcp_dags  # the DAG files parsed under the gcp profile (a module fixture there)
RUN_ID = "scheduled__2026-11-16T03:00:00+00:00"  # the run id `rendered` gives the context
DATA = f"{GS}/artifacts/static_training/20261116/transform"
TRIALS = f"{GS}/artifacts/tuning/manual__2026-11-27T10_00_00_00_00/trials"
PREPARED = {"train": f"{DATA}/train/part-*.tfrecord", "eval": f"{DATA}/eval/part-*.tfrecord",
            "stats": f"{DATA}/stats.json", "version": "v0003", "study": "tuning-x", "output_root": TRIALS}


@pytest.fixture(scope="module")
def gcp_config():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRODML_BUCKET", BUCKET)
        yield load("gcp")


def tuning_job_sent(monkeypatch, dag, params=None):
    """The tune task's execute, through the provider's hook and the Vertex SDK, up to the job's run:
    (the HyperparameterTuningJob resource, the run's keyword arguments, the task)."""
    from google.cloud import aiplatform

    def run(self, **kwargs):
        raise Intercepted({"job": self._gca_resource, "parent": self._parent, "run": kwargs})

    monkeypatch.setattr(aiplatform.HyperparameterTuningJob, "run", run)
    xcoms = {("prepare", key): value for key, value in PREPARED.items()}
    task, context = rendered(dag, "tune", xcoms, params)
    with pytest.raises(Intercepted) as sent:
        task.execute(context)
    return sent.value.payload, task


def test_vertex_tuning_job_request(gcp_dags, gcp_config, monkeypatch):
    from google.cloud import aiplatform_v1 as v1

    sent, task = tuning_job_sent(monkeypatch, gcp_dags["tuning"], params={"trials": 5})
    request = v1.CreateHyperparameterTuningJobRequest(
        parent=sent["parent"], hyperparameter_tuning_job=v1.HyperparameterTuningJob.to_dict(sent["job"]))
    assert request.parent == f"projects/{PROJECT}/locations/{REGION}"
    job = request.hyperparameter_tuning_job
    no_templates_left(v1.HyperparameterTuningJob.to_dict(job))
    tuning = gcp_config["tuning"]

    # the budget: the run's trials param, the profile's parallelism and failure allowance
    assert (job.max_trial_count, job.parallel_trial_count, job.max_failed_trial_count) == (5, tuning["parallel"], 3)
    # the study: maximise the metric ml.trial reports, over the profile's search space
    [metric] = job.study_spec.metrics
    assert (metric.metric_id, metric.goal) == ("auc", v1.StudySpec.MetricSpec.GoalType.MAXIMIZE)
    params = {p.parameter_id: p for p in job.study_spec.parameters}
    assert set(params) == set(tuning["search_space"])
    lr = params["learning_rate"]
    assert (lr.double_value_spec.min_value, lr.double_value_spec.max_value) == (0.0003, 0.03)
    assert lr.scale_type == v1.StudySpec.ParameterSpec.ScaleType.UNIT_LOG_SCALE
    assert list(params["hidden_units"].categorical_value_spec.values) == tuning["search_space"]["hidden_units"]["choices"]
    assert list(params["batch_size"].categorical_value_spec.values) == ["2048", "4096", "8192"]

    # the trial job: the trainer's worker pool (same machine, image, environment), running ml.trial
    spec = job.trial_job_spec
    assert spec.base_output_directory.output_uri_prefix == TRIALS
    [pool] = spec.worker_pool_specs
    [train_pool] = v1.CustomJob(custom_job_sent(monkeypatch, gcp_dags["static_training"], {})[1]["custom_job"]
                                ).job_spec.worker_pool_specs
    assert pool.machine_spec == train_pool.machine_spec
    assert (pool.machine_spec.machine_type, pool.machine_spec.tpu_topology) == ("ct5lp-hightpu-4t", "2x2")
    assert pool.container_spec.image_uri == train_pool.container_spec.image_uri
    assert pool.container_spec.env == train_pool.container_spec.env
    assert list(pool.container_spec.command) == ["python", "-m", "ml.trial"]
    assert job.display_name == f"prodml-tuning-tune-{RUN_ID}"

    # the container's arguments plus what Vizier appends for a trial, as ml.trial and ml.trainer read them
    vizier = ["--learning_rate=0.0042", "--hidden_units=256,128", "--batch_size=4096"]
    own, rest = trial.parse_args([*pool.container_spec.args, *vizier])
    assert (own.schema, own.eval, own.metric, own.output) == (f"{GS}/include/schemas/traffic.yaml",
                                                              PREPARED["eval"], "auc", "")
    assert trial.trial_folder(own.output, {"AIP_MODEL_DIR": f"{TRIALS}/7/model/"}) == f"{TRIALS}/7"
    args = trainer_arguments([*rest, "--schema", own.schema, "--eval", own.eval, "--output", f"{TRIALS}/7"])
    assert (args.train, args.stats) == (PREPARED["train"], PREPARED["stats"])
    assert (args.learning_rate, args.hidden_units, args.batch_size) == (0.0042, "256,128", 4096)
    assert args.epochs == tuning["trial_epochs"] and args.seed == tuning["seed"]


def test_vertex_ablation_runs_are_custom_jobs_in_the_trainer_pool(gcp_dags, gcp_config, monkeypatch):
    """The mapped `retrain` task, expanded with one planned run (ml.ablation.plan on the gcp profile):
    a CustomJob in the trainer's pool running ml.trial without the feature, reading the bucket's schema."""
    from airflow.providers.google.cloud.hooks.vertex_ai.custom_job import CustomJobHook
    from google.cloud import aiplatform_v1 as v1

    from ml import ablation, tuning

    dag = gcp_dags["ablation"]
    mapped = dag.get_task("retrain")
    runs = ablation.plan(data=PREPARED, schema_path=gcp_config["schema_path"],
                         schema_arg=f"{GS}/include/schemas/traffic.yaml", features=["lanes"], seeds=[1],
                         trainer_params=tuning.training_params(training=gcp_config["training"], best_uri=None),
                         epochs=gcp_config["ablation"]["epochs"], evaluation=gcp_config["evaluation"],
                         output_root=f"{GS}/artifacts/ablation/r/runs")
    task = mapped.operator_class(task_id="retrain", **mapped.partial_kwargs, **runs[1])  # what map index 1 runs
    ti = FakeTI({})
    ti.map_index = 1
    task.render_template_fields({"ti": ti, "task_instance": ti, "run_id": RUN_ID, "dag": dag, "task": task,
                                 "params": {}}, jinja_env=dag.get_template_env())

    def create_custom_job(self, project_id, region, custom_job, **_):
        raise Intercepted(custom_job)

    monkeypatch.setattr(CustomJobHook, "create_custom_job", create_custom_job)
    with pytest.raises(Intercepted) as sent:
        task.execute({"ti": ti})
    job = v1.CustomJob(sent.value.payload)
    no_templates_left(v1.CustomJob.to_dict(job))
    assert job.display_name == f"prodml-ablation-retrain-1-{RUN_ID}"
    [pool] = job.job_spec.worker_pool_specs
    assert (pool.machine_spec.machine_type, list(pool.container_spec.command)) == ("ct5lp-hightpu-4t",
                                                                                  ["python", "-m", "ml.trial"])
    assert job.job_spec.base_output_directory.output_uri_prefix == f"{GS}/artifacts/ablation/r/runs/lanes/seed-1"
    own, rest = trial.parse_args(list(pool.container_spec.args))
    assert (own.drop_features, own.schema) == ("lanes", f"{GS}/include/schemas/traffic.yaml")
    args = trainer_arguments([*rest, "--schema", own.schema, "--eval", own.eval, "--output", own.output])
    assert (args.seed, args.epochs, args.hidden_units) == (1, gcp_config["ablation"]["epochs"], "256,128")
