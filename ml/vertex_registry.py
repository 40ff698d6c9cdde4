"""The registry operations of `ml.registry` mapped onto Vertex AI Model Registry (gcp profile).

| ml.registry (local)          | Vertex AI Model Registry                                               |
|------------------------------|------------------------------------------------------------------------|
| register(root, dir, meta)    | ModelService.UploadModel with `parent_model` (a new version of one model) |
| promote(root, v)             | MergeVersionAliases: `previous` onto the old champion, then `champion` onto v |
| rollback(root, v=None)       | the same moves, back to `previous` (or to v)                           |
| get(root, "champion"|v)      | GetModel on `models/<id>@champion` / `models/<id>@<version>`           |

Alias moves: a version alias is unique within a model, and applying an alias that another version
carries *moves* it (Vertex removes it from that version). So each step is one atomic
MergeVersionAliases call and the `champion` alias is never absent: step 1 moves `previous` to
the current champion (the champion is unchanged), step 2 moves `champion` to the new version.
A crash between the two leaves the old champion serving, as in the local registry.
Removal uses the `-alias` syntax (`-champion`), used by `retire_request` (take a version out of
service without naming a successor).

The request builders are pure functions over the client library's types (testable without
network); `VertexRegistry` is a thin wrapper creating `ModelServiceClient` inside its methods,
never at import. Airflow DAGs can use the Google provider's operators instead
(plugins/prodml_airflow/gate.py: `vertex_promote_tasks`).
"""

from __future__ import annotations

import json
import re

CHAMPION, PREVIOUS = "champion", "previous"
_ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9-]$")


def location_path(project: str, region: str) -> str:
    return f"projects/{project}/locations/{region}"


def model_name(project: str, region: str, model_id: str) -> str:
    """projects/{project}/locations/{region}/models/{model_id}."""
    if "/" in model_id:
        return model_id  # already a resource name
    return f"{location_path(project, region)}/models/{model_id}"


def version_name(model: str, version: str) -> str:
    """models/{id}@{version_id or alias}: how Vertex names one version."""
    if "@" in model:
        raise ValueError(f"{model!r} already names a version")
    return f"{model}@{version}"


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias) or alias.isdigit() or alias == "default":
        raise ValueError(f"invalid version alias {alias!r}: must match {_ALIAS.pattern}, not be numeric "
                         "and not be 'default' (reserved by Vertex)")
    return alias


def _labels(metadata: dict) -> dict:
    """Vertex labels: lowercase keys/values, [a-z0-9_-], at most 63 characters."""
    out = {}
    for key, value in metadata.items():
        if isinstance(value, (dict, list)) or value is None:
            continue
        clean = re.sub(r"[^a-z0-9_-]", "-", str(value).lower())[:63]
        out[re.sub(r"[^a-z0-9_-]", "_", key.lower())[:63]] = clean
    return out


def upload_request(*, project: str, region: str, display_name: str, artifact_uri: str,
                   serving_image_uri: str, parent_model: str | None = None, model_id: str | None = None,
                   metadata: dict | None = None, version_aliases=()):
    """UploadModelRequest for a new version (parent_model set) or the first one (model_id set).

    `artifact_uri`: the gs:// folder of the SavedModel. `metadata` (metrics, data range, schema hash)
    goes into version_description as JSON; its scalar values also become labels.
    """
    from google.cloud.aiplatform_v1.types import Model, ModelContainerSpec, UploadModelRequest

    if not artifact_uri.startswith("gs://"):
        raise ValueError(f"Vertex AI reads models from gs:// only, not {artifact_uri!r}")
    metadata = metadata or {}
    model = Model(
        display_name=display_name,
        artifact_uri=artifact_uri,
        container_spec=ModelContainerSpec(image_uri=serving_image_uri),
        version_aliases=[check_alias(a) for a in version_aliases],
        version_description=json.dumps(metadata, sort_keys=True, default=str)[:4096],
        labels=_labels({k: v for k, v in metadata.items() if k != "metrics"}),
    )
    request = UploadModelRequest(parent=location_path(project, region), model=model)
    if parent_model:
        request.parent_model = model_name(project, region, parent_model)
    elif model_id:
        request.model_id = model_id
    return request


def merge_aliases_request(model: str, version: str, add=(), remove=()):
    """MergeVersionAliasesRequest on `model@version`: add aliases, remove them with `-alias`."""
    from google.cloud.aiplatform_v1.types import MergeVersionAliasesRequest

    overlap = set(add) & set(remove)
    if overlap:  # Vertex cancels an add and a remove of the same alias: never send that
        raise ValueError(f"aliases both added and removed: {sorted(overlap)}")
    if not add and not remove:
        raise ValueError("nothing to merge")
    aliases = [check_alias(a) for a in add] + [f"-{check_alias(a)}" for a in remove]
    return MergeVersionAliasesRequest(name=version_name(model, version), version_aliases=aliases)


def get_request(model: str, version_or_alias: str = CHAMPION):
    from google.cloud.aiplatform_v1.types import GetModelRequest

    return GetModelRequest(name=version_name(model, version_or_alias))


def promote_requests(model: str, version: str, current_champion: str | None) -> list:
    """The alias moves that make `version` the champion (the old champion becomes `previous`).

    Empty when `version` is already the champion (a retried task must not flip aliases)."""
    if version == current_champion:
        return []
    steps = []
    if current_champion is not None:
        steps.append(merge_aliases_request(model, current_champion, add=[PREVIOUS]))
    steps.append(merge_aliases_request(model, version, add=[CHAMPION]))
    return steps


def retire_request(model: str, version: str):
    """Take the champion alias off `version` (kill switch): `-champion`."""
    return merge_aliases_request(model, version, remove=[CHAMPION])


class VertexRegistry:
    """register / promote / rollback / get / aliases on one Vertex AI model (its versions)."""

    def __init__(self, *, project: str, region: str, model_id: str, display_name: str | None = None,
                 serving_image_uri: str = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-17:latest",
                 client=None):
        self.project, self.region, self.model_id = project, region, model_id
        self.display_name = display_name or model_id
        self.serving_image_uri = serving_image_uri
        self.model = model_name(project, region, model_id)
        self._given_client = client

    def client(self):
        if self._given_client is not None:
            return self._given_client
        from google.cloud.aiplatform_v1 import ModelServiceClient

        return ModelServiceClient(client_options={"api_endpoint": f"{self.region}-aiplatform.googleapis.com"})

    def _version_of(self, client, version_or_alias: str) -> str | None:
        from google.api_core.exceptions import NotFound

        try:
            return client.get_model(request=get_request(self.model, version_or_alias)).version_id
        except NotFound:
            return None

    def exists(self) -> bool:
        from google.api_core.exceptions import NotFound
        from google.cloud.aiplatform_v1.types import GetModelRequest

        try:
            self.client().get_model(request=GetModelRequest(name=self.model))
            return True
        except NotFound:
            return False

    def register(self, artifact_uri: str, metadata: dict | None = None) -> str:
        """Upload a new version (the first upload creates the model with `model_id`); its version id."""
        first = not self.exists()
        request = upload_request(project=self.project, region=self.region, display_name=self.display_name,
                                 artifact_uri=artifact_uri, serving_image_uri=self.serving_image_uri,
                                 parent_model=None if first else self.model_id,
                                 model_id=self.model_id if first else None, metadata=metadata)
        result = self.client().upload_model(request=request).result()
        return result.model_version_id

    def aliases(self) -> dict:
        client = self.client()
        return {alias: self._version_of(client, alias) for alias in (CHAMPION, PREVIOUS)}

    def get(self, version_or_alias: str = CHAMPION) -> dict:
        model = self.client().get_model(request=get_request(self.model, version_or_alias))
        return {"version": model.version_id, "name": model.name, "aliases": list(model.version_aliases),
                "uri": model.artifact_uri, "description": model.version_description}

    def promote(self, version: str, reason: str = "") -> dict:
        client = self.client()
        current = self._version_of(client, CHAMPION)
        for request in promote_requests(self.model, version, current):
            client.merge_version_aliases(request=request)
        return {CHAMPION: version, PREVIOUS: current if current != version else self._version_of(client, PREVIOUS)}

    def rollback(self, version: str | None = None, reason: str = "") -> dict:
        client = self.client()
        target = version or self._version_of(client, PREVIOUS)
        if target is None:
            raise RuntimeError(f"nothing to roll back to: no {PREVIOUS!r} version of {self.model}")
        return self.promote(target, reason)


# ---------------------------------------------------------------- mirror of the bucket registry


def mirrored_versions(history: list[dict], aliases: dict) -> list[str]:
    """The registry versions Vertex should hold: every version that has served (champion at some
    point) plus the current aliases' targets, oldest first. Candidates the gate refused stay out."""
    served = {entry["to"] for entry in history} | {v for v in aliases.values() if v}
    return sorted(served)


def mirror_plan(*, project: str, region: str, model_id: str, display_name: str, serving_image_uri: str,
                records: list[dict], aliases: dict, vertex_aliases: dict[str, list[str]] | None) -> list:
    """The requests that make Vertex AI Model Registry match the bucket registry.

    Mapping: registry version vNNNN is the Vertex version carrying the version alias `vNNNN` (an
    alias is unique within a model and valid as such), uploaded with `parent_model` so all are
    versions of one model; the registry's metadata goes into the description and labels. Vertex
    numbers its versions itself (1, 2, ...): the `vNNNN` alias, not the number, is the link.
    `champion` / `previous` are then moved onto the versions the bucket names (previous first,
    so `champion` is never absent).

    `records`: the registry's metadata of the versions to mirror (`mirrored_versions`), each with
    `model_uri`; `aliases`: the bucket's {"champion", "previous"}; `vertex_aliases`: {Vertex version
    id: [its aliases]} as listed now, None when the model does not exist yet. Idempotent: a
    mirror in sync plans nothing."""
    model = model_name(project, region, model_id)
    present = {alias for found in (vertex_aliases or {}).values() for alias in found}
    exists = vertex_aliases is not None
    requests = []
    for record in records:
        if record["version"] in present:
            continue
        metadata = {k: record.get(k) for k in ("version", "metrics", "data_range", "schema_hash",
                                               "parent_version", "trained_by", "run_id")}
        requests.append(upload_request(
            project=project, region=region, display_name=display_name, artifact_uri=record["model_uri"],
            serving_image_uri=serving_image_uri, parent_model=model_id if exists else None,
            model_id=None if exists else model_id, metadata=metadata, version_aliases=[record["version"]]))
        exists = True
    holder = {}  # alias → registry version of the Vertex version carrying it
    for found in (vertex_aliases or {}).values():
        version = next((a for a in found if re.match(r"^v\d+$", a)), None)
        for alias in found:
            holder[alias] = version
    for alias in (PREVIOUS, CHAMPION):
        target = aliases.get(alias)
        if target and holder.get(alias) != target:
            requests.append(merge_aliases_request(model, target, add=[alias]))
    return requests


def vertex_aliases_of(client, model: str) -> dict[str, list[str]] | None:
    """{version id: aliases} of every version of `model`; None if the model does not exist."""
    from google.api_core.exceptions import NotFound
    from google.cloud.aiplatform_v1.types import ListModelVersionsRequest

    try:
        return {m.version_id: list(m.version_aliases)
                for m in client.list_model_versions(request=ListModelVersionsRequest(name=model))}
    except NotFound:
        return None


def send(client, requests: list) -> list[str]:
    """Send planned requests in order (an upload is waited for before the alias moves); what was done."""
    from google.cloud.aiplatform_v1.types import MergeVersionAliasesRequest, UploadModelRequest

    done = []
    for request in requests:
        if isinstance(request, UploadModelRequest):
            result = client.upload_model(request=request).result()
            done.append(f"uploaded {request.model.version_aliases[0]} as version {result.model_version_id}")
        elif isinstance(request, MergeVersionAliasesRequest):
            client.merge_version_aliases(request=request)
            done.append(f"{request.name}: {', '.join(request.version_aliases)}")
        else:
            raise TypeError(f"unexpected request {type(request).__name__}")
    return done
