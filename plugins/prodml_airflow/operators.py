"""Thin operators: `execute` makes one call and returns a URI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from airflow.sdk import BaseOperator


def to_argv(args: dict) -> list[str]:
    """{"input": [a, b], "epochs": 3, "shuffle_labels": True} → ["--input", a, "--input", b, ...]."""
    argv = []
    for key, value in args.items():
        if value in ("True", "False"):  # a Jinja-rendered boolean param ("{{ params.flag }}")
            value = value == "True"
        if isinstance(value, bool):
            argv += [f"--{key}"] if value else []
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [f"--{key}", str(item)]
        elif value not in (None, ""):
            argv += [f"--{key}", str(value)]
    return argv


class PythonModuleOperator(BaseOperator):
    """Run `python -m <module> <args>` in a subprocess and stream its output to the task log.

    The local profile's runner for the `run(argv)` entry points that the gcp profile hands to
    Google services instead: `ml.transform` (Dataflow through the Beam provider) and `ml.trainer`
    (a Vertex AI custom job). A subprocess keeps TensorFlow and Beam out of the worker process.
    """

    template_fields: Sequence[str] = ("args", "output_uri")
    ui_color = "#e8f0fe"

    def __init__(self, *, module: str, args: dict, output_uri: str, python: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.module = module
        self.args = args
        self.output_uri = output_uri
        self.python = python or sys.executable

    def execute(self, context) -> str:
        argv = [self.python, "-m", self.module, *to_argv(self.args)]
        self.log.info("running: %s", " ".join(argv))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            self.log.info("%s", line.rstrip())
        if proc.wait() != 0:
            raise RuntimeError(f"python -m {self.module} exited with {proc.returncode}; see the log above")
        return self.output_uri
