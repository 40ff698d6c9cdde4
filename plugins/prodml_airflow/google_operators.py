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
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.vertex_ai.custom_job import CreateCustomJobOperator

from prodml_airflow.operators import child_pythonpath, to_argv
from prodml_airflow.targets import MachineSpec


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
        machine_spec = {"machine_type": self.machine.machine_type}
        if self.machine.accelerator_type:
            machine_spec |= {"accelerator_type": self.machine.accelerator_type,
                             "accelerator_count": self.machine.accelerator_count}
        if self.machine.tpu_topology:
            machine_spec["tpu_topology"] = self.machine.tpu_topology
        job_spec = {
            "worker_pool_specs": [{
                "machine_spec": machine_spec,
                "replica_count": 1,
                "container_spec": {
                    "image_uri": self.container_uri,
                    "command": ["python", "-m", self.module],
                    "args": to_argv({**self.args, "output": self.output_uri}),
                    "env": [{"name": k, "value": str(v)} for k, v in sorted(self.env.items())],
                },
            }],
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
