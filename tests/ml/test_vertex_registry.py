"""Vertex AI Model Registry mapping: the exact requests, built with the client library's types."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("google.cloud.aiplatform_v1")

from google.cloud.aiplatform_v1 import ModelServiceClient  # noqa: E402
from google.cloud.aiplatform_v1.types import (  # noqa: E402
    GetModelRequest,
    MergeVersionAliasesRequest,
    Model,
    UploadModelRequest,
)

from ml import vertex_registry as V  # noqa: E402

MODEL = "projects/my-project/locations/europe-west4/models/prodml-traffic"


def test_resource_names_match_the_client_library():
    assert V.model_name("my-project", "europe-west4", "prodml-traffic") == MODEL
    assert V.model_name("my-project", "europe-west4", "prodml-traffic") == ModelServiceClient.model_path(
        "my-project", "europe-west4", "prodml-traffic")
    assert ModelServiceClient.parse_model_path(MODEL)["model"] == "prodml-traffic"
    assert V.version_name(MODEL, "3") == f"{MODEL}@3"
    assert V.version_name(MODEL, "champion") == f"{MODEL}@champion"
    with pytest.raises(ValueError):
        V.version_name(f"{MODEL}@3", "4")


def test_upload_request_for_a_new_version_and_for_the_first():
    meta = {"metrics": {"auc": 0.81}, "schema_hash": "AB12cd", "data_range": {"start": "2026-11-01"},
            "parent_version": "3"}
    req = V.upload_request(project="my-project", region="europe-west4", display_name="prodml-traffic",
                           artifact_uri="gs://bucket/artifacts/run/model", serving_image_uri="img:1",
                           parent_model="prodml-traffic", metadata=meta)
    assert isinstance(req, UploadModelRequest) and isinstance(req.model, Model)
    assert req.parent == "projects/my-project/locations/europe-west4"
    assert req.parent_model == MODEL and req.model_id == ""
    assert req.model.artifact_uri == "gs://bucket/artifacts/run/model"
    assert req.model.container_spec.image_uri == "img:1"
    assert req.model.display_name == "prodml-traffic"
    assert json.loads(req.model.version_description)["metrics"] == {"auc": 0.81}
    assert dict(req.model.labels) == {"schema_hash": "ab12cd", "parent_version": "3"}
    assert list(req.model.version_aliases) == []  # a candidate is never uploaded as champion
    # round trip through the wire format: the request is valid for the API
    assert UploadModelRequest.deserialize(UploadModelRequest.serialize(req)) == req

    first = V.upload_request(project="my-project", region="europe-west4", display_name="prodml-traffic",
                             artifact_uri="gs://b/m", serving_image_uri="img:1", model_id="prodml-traffic")
    assert first.model_id == "prodml-traffic" and first.parent_model == ""
    with pytest.raises(ValueError, match="gs://"):
        V.upload_request(project="p", region="r", display_name="d", artifact_uri="/local/model",
                         serving_image_uri="img")


def test_merge_aliases_request_adds_and_removes_with_dash_syntax():
    req = V.merge_aliases_request(MODEL, "7", add=["champion"])
    assert isinstance(req, MergeVersionAliasesRequest)
    assert req.name == f"{MODEL}@7" and list(req.version_aliases) == ["champion"]
    retire = V.retire_request(MODEL, "6")
    assert retire.name == f"{MODEL}@6" and list(retire.version_aliases) == ["-champion"]
    both = V.merge_aliases_request(MODEL, "6", add=["previous"], remove=["champion"])
    assert list(both.version_aliases) == ["previous", "-champion"]
    with pytest.raises(ValueError, match="both added and removed"):
        V.merge_aliases_request(MODEL, "6", add=["champion"], remove=["champion"])
    for bad in ("Champion", "default", "123", "a", "has_underscore"):
        with pytest.raises(ValueError, match="invalid version alias"):
            V.check_alias(bad)


def test_promote_moves_previous_then_champion_and_is_idempotent():
    steps = V.promote_requests(MODEL, "7", current_champion="6")
    assert [(s.name, list(s.version_aliases)) for s in steps] == [
        (f"{MODEL}@6", ["previous"]), (f"{MODEL}@7", ["champion"])]
    first = V.promote_requests(MODEL, "1", current_champion=None)
    assert [(s.name, list(s.version_aliases)) for s in first] == [(f"{MODEL}@1", ["champion"])]
    assert V.promote_requests(MODEL, "7", current_champion="7") == []
    assert V.get_request(MODEL) == GetModelRequest(name=f"{MODEL}@champion")


class FakeClient:
    """Records the calls VertexRegistry makes; emulates alias moves (an alias lives on one version)."""

    def __init__(self, aliases):
        self.aliases, self.calls = dict(aliases), []

    def get_model(self, request):
        from google.api_core.exceptions import NotFound

        self.calls.append(("get_model", request.name))
        ref = request.name.split("@")[1]
        version = self.aliases.get(ref, ref if ref.isdigit() else None)
        if version is None:
            raise NotFound(request.name)
        return SimpleNamespace(version_id=version, name=request.name.split("@")[0], artifact_uri="gs://b/m",
                               version_aliases=[a for a, v in self.aliases.items() if v == version],
                               version_description="{}")

    def merge_version_aliases(self, request):
        self.calls.append(("merge_version_aliases", request.name, list(request.version_aliases)))
        version = request.name.split("@")[1]
        for alias in request.version_aliases:
            if alias.startswith("-"):
                self.aliases.pop(alias[1:], None)
            else:
                self.aliases[alias] = version


def test_vertex_registry_promote_and_rollback_through_the_client_methods():
    assert not hasattr(V, "_client")  # no client at import
    client = FakeClient({"champion": "6"})
    reg = V.VertexRegistry(project="my-project", region="europe-west4", model_id="prodml-traffic", client=client)
    assert reg.promote("7") == {"champion": "7", "previous": "6"}
    assert client.calls[1:] == [("merge_version_aliases", f"{MODEL}@6", ["previous"]),
                                ("merge_version_aliases", f"{MODEL}@7", ["champion"])]
    assert reg.aliases() == {"champion": "7", "previous": "6"}
    assert reg.rollback() == {"champion": "6", "previous": "7"}
    assert reg.get()["version"] == "6"
    with pytest.raises(RuntimeError, match="nothing to roll back"):
        V.VertexRegistry(project="p", region="r", model_id="m", client=FakeClient({})).rollback()
