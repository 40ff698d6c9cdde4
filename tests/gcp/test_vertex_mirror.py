"""The Vertex AI Model Registry mirror of the bucket registry: the exact requests (client library
types) against a stand-in for the Vertex service that keeps Vertex's alias rules (an alias is unique
within a model; adding it to a version moves it)."""

from __future__ import annotations

import uuid

import pytest
from google.api_core.exceptions import NotFound
from google.cloud.aiplatform_v1.types import (
    ListModelVersionsRequest,
    MergeVersionAliasesRequest,
    UploadModelRequest,
)
from prodml_airflow.vertex_mirror import VertexMirrorOperator

from ml import registry
from tests.gcp import emulators

MODEL = "projects/p/locations/europe-west4/models/prodml-traffic"


class FakeVertex:
    """In-memory Model Registry: versions numbered 1, 2, ... by the service, aliases unique."""

    def __init__(self):
        self.versions: dict[str, list[str]] | None = None
        self.requests: list = []

    def list_model_versions(self, request: ListModelVersionsRequest):
        assert request.name == MODEL
        if self.versions is None:
            raise NotFound("no model")
        return [type("M", (), {"version_id": v, "version_aliases": a}) for v, a in self.versions.items()]

    def upload_model(self, request: UploadModelRequest):
        self.requests.append(request)
        if self.versions is None:
            assert request.model_id == "prodml-traffic" and not request.parent_model
            self.versions = {}
        else:
            assert request.parent_model == MODEL and not request.model_id
        version = str(len(self.versions) + 1)
        self.versions[version] = list(request.model.version_aliases)
        result = type("R", (), {"model_version_id": version})
        return type("Op", (), {"result": lambda self: result})()

    def merge_version_aliases(self, request: MergeVersionAliasesRequest):
        self.requests.append(request)
        model, _, alias_of_target = request.name.partition("@")
        assert model == MODEL
        target = next(v for v, a in self.versions.items() if alias_of_target in a)
        for alias in request.version_aliases:
            for aliases in self.versions.values():
                if alias in aliases:
                    aliases.remove(alias)  # Vertex moves an alias that another version carries
            self.versions[target].append(alias)

    def aliases(self) -> dict:
        return {alias: next(a for a in aliases if a.startswith("v"))
                for aliases in self.versions.values() for alias in aliases if not alias.startswith("v")}


@pytest.fixture
def bucket_registry(tmp_path, gcs_emulator):
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"graph")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    emulators.create_bucket(gcs_emulator, bucket)
    section = {"kind": "bucket", "root": f"gs://{bucket}/registry"}
    models = registry.connect(section)
    return section, models, [models.register(str(model), {"metrics": {"auc": 0.8 + i / 100}}) for i in range(3)]


def _operator(section):
    return VertexMirrorOperator(task_id="vertex_mirror", registry_config=section, project_id="p",
                                region="europe-west4", model_id="prodml-traffic",
                                serving_image_uri="europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest")


def test_the_mirror_uploads_served_versions_and_moves_aliases_like_the_bucket(bucket_registry):
    section, models, (v1, v2, v3) = bucket_registry
    vertex = FakeVertex()
    op = _operator(section)
    models.promote(v1, "first")
    models.promote(v2, "better")  # v3 never served: the gate refused it, Vertex never sees it
    from ml import vertex_registry as vr

    vr.send(vertex, op.plan(vertex))
    uploads = [r for r in vertex.requests if isinstance(r, UploadModelRequest)]
    assert [list(u.model.version_aliases) for u in uploads] == [[v1], [v2]]
    assert all(u.model.artifact_uri == models.get(v)["model_uri"] for u, v in zip(uploads, (v1, v2), strict=True))
    assert all(u.model.artifact_uri.startswith(section["root"] + "/models/") for u in uploads)
    assert uploads[0].model_id == "prodml-traffic" and uploads[1].parent_model == MODEL
    assert '"auc": 0.81' in uploads[1].model.version_description
    merges = [r for r in vertex.requests if isinstance(r, MergeVersionAliasesRequest)]
    assert [(m.name, list(m.version_aliases)) for m in merges] == [
        (f"{MODEL}@{v1}", ["previous"]), (f"{MODEL}@{v2}", ["champion"])]
    assert vertex.aliases() == {"champion": v2, "previous": v1}

    assert op.plan(vertex) == []  # in sync: nothing to send

    models.rollback(reason="bad model")
    moves = op.plan(vertex)
    assert all(isinstance(r, MergeVersionAliasesRequest) for r in moves)  # no upload for a rollback
    vr.send(vertex, moves)
    assert vertex.aliases() == {"champion": v1, "previous": v2} == {
        k: v for k, v in models.aliases().items()}


def test_the_first_promotion_creates_the_model_without_a_previous_alias(bucket_registry):
    section, models, (v1, _, _) = bucket_registry
    vertex = FakeVertex()
    models.promote(v1, "first")
    plan = _operator(section).plan(vertex)
    assert [type(r).__name__ for r in plan] == ["UploadModelRequest", "MergeVersionAliasesRequest"]
    assert plan[1].version_aliases == ["champion"]


def test_gcp_dags_mirror_after_every_alias_move_and_local_ones_do_not(tmp_path):
    import json
    import os
    import subprocess
    import sys

    probe = ("import json; from scripts import airflow_env; airflow_env.apply(airflow_home={!r});"
             "out = {{}}\n"
             "for d in ('static_training', 'dynamic_training', 'rollback', 'monitoring'):\n"
             "    from airflow.dag_processing.dagbag import DagBag\n"
             "    bag = DagBag(dag_folder=str(airflow_env.ROOT / 'dags' / (d + '.py')))\n"
             "    assert not bag.import_errors, bag.import_errors\n"
             "    dag = bag.dags[d]\n"
             "    out[d] = sorted(dag.get_task('vertex_mirror').upstream_task_ids) if 'vertex_mirror' in dag.task_ids"
             " else None\n"
             "print(json.dumps(out))").format(str(tmp_path / "airflow_home"))
    seen = {}
    for profile in ("gcp", "local"):
        env = {**os.environ, "PRODML_PROFILE": profile, "PRODML_BUCKET": "b"}
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        seen[profile] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["gcp"] == {"static_training": ["keep", "promote"], "dynamic_training": ["keep", "promote"],
                           "rollback": ["move_champion_back"], "monitoring": ["roll_back"]}
    assert seen["local"] == {"static_training": None, "dynamic_training": None, "rollback": None, "monitoring": None}
