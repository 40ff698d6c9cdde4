"""The Google provider's operators, subclassed where they fall short for prodml's two heavy steps.

Imported only by the gcp branches of `prodml_airflow.tasks` (the provider costs ~1 s to import).
Each keeps the provider's `execute` (one call through its hook) and adds what the provider does not
do: template the fields that hold templates, and return the output URI the next task reads.

- `VertexTrainingJobOperator(CreateCustomJobOperator)`: `python -m ml.trainer` as a Vertex AI
  CustomJob. The provider templates the CustomJob as one nested dict, so a boolean param renders
  as the string "False" and no flag list is built after rendering; here `args` (a dict) and
  `output_uri` are template fields, and the request is built from their rendered values
  (`to_argv`: booleans become store_true flags). A CustomJob, not the provider's
  CreateCustomPythonPackageTrainingJobOperator: a Python-package job must run in one of Vertex's
  prebuilt images (none has TensorFlow 2.21 / Python 3.11, none exists for TPU v5e) and that
  operator cannot pass the TPU topology a v5e machine needs.
- `BeamModuleOperator(BeamRunPythonPipelineOperator)`: ml/transform.py launched with this
  worker's Python, the folder holding `ml` on the child's PYTHONPATH, returning the output URI.
- `VertexTuningJobOperator(CreateHyperparameterTuningJobOperator)`: a Vertex AI hyperparameter
  tuning job (Vizier) whose trial job is the trainer's CustomJob worker pool (same image, machine,
  environment) running `python -m ml.trial`; `args` and the output folder are template fields, and
  the SDK's parameter specs are built from the plain search space at execute time.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.vertex_ai.custom_job import CreateCustomJobOperator
from airflow.providers.google.cloud.operators.vertex_ai.hyperparameter_tuning_job import (
    CreateHyperparameterTuningJobOperator,
)

from prodml_airflow.operators import child_pythonpath, to_argv
from prodml_airflow.targets import MachineSpec


def worker_pool_spec(*, machine: MachineSpec, container_uri: str, module: str, argv: list[str], env: dict) -> dict:
    """One replica of `python -m <module> <argv>` in `container_uri` on `machine` (a
    google.cloud.aiplatform_v1.WorkerPoolSpec as a dict): the trainer's pool, shared by its CustomJob
    and the trials of a tuning job."""
    machine_spec = {"machine_type": machine.machine_type}
    if machine.accelerator_type:
        machine_spec |= {"accelerator_type": machine.accelerator_type, "accelerator_count": machine.accelerator_count}
    if machine.tpu_topology:
        machine_spec["tpu_topology"] = machine.tpu_topology
    return {
        "machine_spec": machine_spec,
        "replica_count": 1,
        "container_spec": {
            "image_uri": container_uri,
            "command": ["python", "-m", module],
            "args": argv,
            "env": [{"name": k, "value": str(v)} for k, v in sorted(env.items())],
        },
    }


class VertexTrainingJobOperator(CreateCustomJobOperator):
    """Run `python -m <module> <args> --output <output_uri>` in `container_uri` on Vertex AI.

    The job's base output directory is `output_uri`, so Vertex's AIP_MODEL_DIR is
    `<output_uri>/model/`: where the trainer exports the model. Returns `output_uri` (the next task
    reads the model from there), on both the blocking and the deferred path.
    """

    template_fields: Sequence[str] = (*CreateCustomJobOperator.template_fields, "args", "output_uri",
                                      "display_name", "container_uri", "service_account")
    template_fields_renderers = {"args": "json"}
    ui_color = "#e8f0fe"

    def __init__(self, *, module: str, args: dict, output_uri: str, container_uri: str, machine: MachineSpec,
                 display_name: str, service_account: str | None = None, env: dict | None = None,
                 labels: dict | None = None, **kwargs):
        super().__init__(custom_job={}, **kwargs)
        self.module = module
        self.args = args
        self.output_uri = output_uri
        self.container_uri = container_uri
        self.machine = machine
        self.display_name = display_name
        self.service_account = service_account
        self.env = env or {}
        self.labels = labels or {"app": "prodml"}

    def custom_job_request(self) -> dict:
        """The CustomJob (google.cloud.aiplatform_v1.CustomJob as a dict) from the rendered fields."""
        job_spec = {
            "worker_pool_specs": [worker_pool_spec(machine=self.machine, container_uri=self.container_uri,
                                                   module=self.module, env=self.env,
                                                   argv=to_argv({**self.args, "output": self.output_uri}))],
            "base_output_directory": {"output_uri_prefix": self.output_uri},
        }
        if self.service_account:
            job_spec["service_account"] = self.service_account
        return {"display_name": self.display_name, "job_spec": job_spec, "labels": self.labels}

    def execute(self, context) -> str:
        self.custom_job = self.custom_job_request()
        super().execute(context)
        return self.output_uri

    def execute_complete(self, context, event: dict) -> str:
        super().execute_complete(context, event)
        return self.output_uri


class BeamModuleOperator(BeamRunPythonPipelineOperator):
    """`python <module's file> --runner=… <pipeline options>` through the Beam provider's hook
    (on Dataflow when the runner is DataflowRunner), with this worker's interpreter and the folder
    that holds the package on the child's PYTHONPATH. Returns `output_uri`."""

    template_fields: Sequence[str] = (*BeamRunPythonPipelineOperator.template_fields, "output_uri")

    def __init__(self, *, module: str, output_uri: str, **kwargs):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin:
            raise ModuleNotFoundError(f"{module} is not importable here")
        super().__init__(py_file=spec.origin, py_interpreter=sys.executable, **kwargs)
        self.module = module
        self.output_uri = output_uri

    def execute(self, context) -> str:
        # The hook starts the pipeline in a child process that inherits this task's environment
        # (it takes no env argument): the task process is the task's own, so setting it here is local.
        os.environ["PYTHONPATH"] = child_pythonpath(package=self.module.partition(".")[0])
        super().execute(context)
        return self.output_uri


class VertexTuningJobOperator(CreateHyperparameterTuningJobOperator):
    """A Vertex AI hyperparameter tuning job: Vizier proposes each trial's parameters from the trials
    so far (`parallel_trial_count` at a time, `max_trial_count` in all) and passes them to the trial
    container as `--<parameter>=<value>` after `args`. The trial container runs `python -m <module>`
    (ml.trial: the trainer, then the eval-split score reported to the tuning service) on the trainer's
    machine, image and environment. Each trial writes under `<base_output_dir>/<trial id>/` (Vertex's
    AIP_MODEL_DIR is its `model/`). Returns the finished job as a dict (the provider's return value).

    `search_space`: `ml.tuning.vertex_parameter_specs` (plain dicts, so the DAG stays serialisable);
    the SDK's parameter spec objects are built at execute time."""

    template_fields: Sequence[str] = (*CreateHyperparameterTuningJobOperator.template_fields, "args",
                                      "base_output_dir", "container_uri", "service_account", "max_trial_count",
                                      "parallel_trial_count")
    template_fields_renderers = {"args": "json"}
    ui_color = "#e8f0fe"

    def __init__(self, *, module: str, args: dict, base_output_dir: str, container_uri: str, machine: MachineSpec,
                 search_space: dict, metric: str, env: dict | None = None, labels: dict | None = None, **kwargs):
        super().__init__(metric_spec={metric: "maximize"}, parameter_spec={}, worker_pool_specs=[],
                         base_output_dir=base_output_dir, hyperparameter_tuning_job_labels=labels or {"app": "prodml"},
                         custom_job_labels=labels or {"app": "prodml"}, **kwargs)
        self.module = module
        self.args = args
        self.container_uri = container_uri
        self.machine = machine
        self.search_space = search_space
        self.env = env or {}

    def parameter_specs(self) -> dict:
        from google.cloud.aiplatform import hyperparameter_tuning as hpt

        specs = {}
        for name, spec in self.search_space.items():
            if spec["kind"] == "categorical":
                specs[name] = hpt.CategoricalParameterSpec(values=spec["values"])
            elif spec["kind"] == "double":
                specs[name] = hpt.DoubleParameterSpec(min=spec["min"], max=spec["max"], scale=spec["scale"])
            else:
                specs[name] = hpt.IntegerParameterSpec(min=spec["min"], max=spec["max"], scale=spec["scale"])
        return specs

    def execute(self, context):
        self.parameter_spec = self.parameter_specs()
        self.worker_pool_specs = [worker_pool_spec(machine=self.machine, container_uri=self.container_uri,
                                                   module=self.module, argv=to_argv(self.args), env=self.env)]
        self.max_trial_count = int(self.max_trial_count)
        self.parallel_trial_count = int(self.parallel_trial_count)
        # The SDK's CustomJob refuses to be built without a staging bucket: the trials' folder
        self.staging_bucket = self.staging_bucket or self.base_output_dir
        return super().execute(context)
