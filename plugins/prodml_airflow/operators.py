"""Thin operators: `execute` makes one call and returns a URI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow.sdk import BaseOperator

from prodml_airflow.failures import PERMANENT_EXIT_CODES


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


def package_root(package: str = "ml") -> str:
    """The folder that holds `package` (the repository locally, Composer's dags/ folder there), so a
    child Python process can import it wherever it was deployed (the parent's sys.path is not inherited)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not importable here")
    return str(Path(next(iter(spec.submodule_search_locations))).parent)


def child_pythonpath(env: dict | None = None, package: str = "ml") -> str:
    """PYTHONPATH for a child process: the folder that holds `package`, then the current PYTHONPATH."""
    current = (os.environ if env is None else env).get("PYTHONPATH", "")
    root = package_root(package)
    return os.pathsep.join([root, *[p for p in current.split(os.pathsep) if p and p != root]])


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
        env = {**os.environ, "PYTHONPATH": child_pythonpath()}
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:
            self.log.info("%s", line.rstrip())
        if proc.wait() in PERMANENT_EXIT_CODES:  # the child said: a retry cannot fix this
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"python -m {self.module} exited with {proc.returncode} (a schema, "
                                       "configuration or usage error; not retried): see the error above")
        if proc.returncode != 0:
            raise RuntimeError(f"python -m {self.module} exited with {proc.returncode}; see the log above")
        return self.output_uri
