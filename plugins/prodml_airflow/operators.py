"""Thin operators: `execute` makes one call and returns a URI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from airflow.sdk import BaseOperator


class LocalTrainingOperator(BaseOperator):
    """Run `python -m ml.trainer` in a subprocess (local profile). The gcp profile runs the same
    module as a Vertex AI CustomJob through the Google provider instead."""

    template_fields: Sequence[str] = ("trainer_args", "output_uri")

    def __init__(self, *, trainer_args: dict, output_uri: str, python: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.trainer_args = trainer_args
        self.output_uri = output_uri
        self.python = python or sys.executable

    def execute(self, context) -> str:
        argv = [self.python, "-m", "ml.trainer", "--output", self.output_uri]
        for key, value in self.trainer_args.items():
            if isinstance(value, bool):
                argv += [f"--{key}"] if value else []
            elif value not in (None, ""):
                argv += [f"--{key}", str(value)]
        self.log.info("training: %s", " ".join(argv))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            self.log.info("%s", line.rstrip())
        if proc.wait() != 0:
            raise RuntimeError(f"trainer exited with {proc.returncode}; see the log above")
        return self.output_uri
