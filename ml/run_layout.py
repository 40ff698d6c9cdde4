"""Where one training run keeps its artefacts: the run folder's layout, spelled once.

`<artifacts>/<dag_id>/<run_key>/`
    validation/                    GX's validation result per file
    drift_report.html              the drift check's HTML report
    transform/train/part-*.tfrecord, transform/eval/part-*.tfrecord, transform/stats.json
    candidate/                     the trainer's output: model/ (SavedModel), training.json

Plain string joins, so the same layout works for `file://` and `gs://` URIs and for a root that
is still a Jinja template at DAG-parse time (`…/{{ ds_nodash }}`): this module imports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

CANDIDATE = "candidate"


@dataclass(frozen=True)
class RunLayout:
    root: str

    @classmethod
    def for_run(cls, artifacts_uri: str, dag_id: str, run_key: str) -> RunLayout:
        """`<artifacts>/<dag_id>/<run_key>`: a rerun with the same key overwrites its own outputs only."""
        return cls(f"{artifacts_uri}/{dag_id}/{run_key}")

    @classmethod
    def of_candidate(cls, candidate_uri: str) -> RunLayout:
        """The run folder that holds `candidate_uri` (the `train` task's output)."""
        head, _, tail = candidate_uri.rstrip("/").rpartition("/")
        if tail != CANDIDATE or not head:
            raise ValueError(f"{candidate_uri!r} is not a run folder's {CANDIDATE}/")
        return cls(head)

    @property
    def validation(self) -> str:
        return f"{self.root}/validation"

    @property
    def drift_report(self) -> str:
        return f"{self.root}/drift_report.html"

    @property
    def transform(self) -> str:
        return f"{self.root}/transform"

    @property
    def train_files(self) -> str:
        return f"{self.transform}/train/part-*.tfrecord"

    @property
    def eval_files(self) -> str:
        return f"{self.transform}/eval/part-*.tfrecord"

    @property
    def stats(self) -> str:
        return f"{self.transform}/stats.json"

    @property
    def candidate(self) -> str:
        return f"{self.root}/{CANDIDATE}"

    @property
    def model(self) -> str:
        """The candidate's exported SavedModel."""
        return f"{self.candidate}/model"

    @property
    def training_report(self) -> str:
        """The trainer's bottleneck report (`ml.trainer` writes it next to the model)."""
        return f"{self.candidate}/training.json"
