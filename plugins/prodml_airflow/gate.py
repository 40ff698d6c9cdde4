"""The model gate as a thin operator, and the Vertex AI alias moves for the gcp profile.

`GateOperator.execute` makes one call (`ml.gate.evaluate_gate`), stores the blessing record with
the registered candidate and returns a small dict. A failed gate is a *result*, not an error: the
task succeeds with decision "fail" so the DAG can branch (keep the champion, alert).
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import BaseOperator

from prodml_airflow.failures import fail_fast_callable


def _load_json(value):
    """A dict as is; a JSON string parsed; any other string read as a JSON file URI; None/'' → None."""
    import json

    if value is None or isinstance(value, dict):
        return value
    text = str(value).strip()
    if text in ("", "None", "null"):
        return None
    if text.startswith("{"):
        return json.loads(text)
    from ml import storage

    return json.loads(storage.read_text(text))


class GateOperator(BaseOperator):
    """Gate one registered candidate: metric checks against thresholds and the champion (evaluated
    on the same eval data), infra validation in a separate process; the blessing record is attached
    to the version in the registry (`registry_config`: the profile's `registry:` section), or written
    to `blessing_uri` when no registry is given. Retry-safe: an existing blessing is returned, not re-decided.

    Returns {"decision": "pass"|"fail", "reasons": [...], "version", "champion_version", "blessing_uri"}.
    """

    template_fields: Sequence[str] = ("candidate_version", "model_dir", "candidate_metrics", "champion_metrics",
                                      "champion_version", "canary_uri", "registry_config", "blessing_uri")

    def __init__(self, *, candidate_version: str, model_dir: str, candidate_metrics: dict | str,
                 champion_metrics: dict | str | None, canary_uri: str, schema_path: str, thresholds: dict,
                 registry_config: dict | None = None, champion_version: str | None = None,
                 blessing_uri: str | None = None, eval_fraction: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.candidate_version = candidate_version
        self.model_dir = model_dir
        self.candidate_metrics = candidate_metrics
        self.champion_metrics = champion_metrics
        self.champion_version = champion_version
        self.canary_uri = canary_uri
        self.schema_path = schema_path
        self.thresholds = thresholds
        self.registry_config = registry_config
        self.blessing_uri = blessing_uri
        self.eval_fraction = eval_fraction

    @fail_fast_callable
    def execute(self, context) -> dict:
        import json

        from ml import gate, registry, storage

        models = registry.connect(self.registry_config) if self.registry_config else None
        if models is not None:
            try:  # a retried task: the first decision stands (attachments are written once)
                stored = models.read_attachment(self.candidate_version, gate.BLESSING)
                self.log.info("blessing already stored for %s: %s", self.candidate_version, stored["decision"])
                return {**gate.summary(stored), "blessing_uri": None}
            except registry.RegistryError:
                pass
        champion_metrics = _load_json(self.champion_metrics)
        rows = gate.load_canary(self.canary_uri, self.schema_path, n=int(self.thresholds.get("canary_rows", 64)),
                                eval_fraction=self.eval_fraction)
        record = gate.evaluate_gate(
            _load_json(self.candidate_metrics), champion_metrics, self.thresholds,
            model_dir=self.model_dir, canary_rows=rows, schema_path=self.schema_path,
            candidate={"version": self.candidate_version},
            champion={"version": self.champion_version} if self.champion_version else None)
        if models is not None:
            where = gate.store_blessing(models, self.candidate_version, record)
        elif self.blessing_uri:
            where = storage.write_text(self.blessing_uri, json.dumps(record, indent=2, sort_keys=True, default=str))
        else:
            where = None
        for reason in record["reasons"]:
            self.log.warning("gate: %s", reason)
        self.log.info("gate decision for %s: %s", self.candidate_version, record["decision"])
        return {**gate.summary(record), "blessing_uri": where}


# ---------------------------------------------------------------- gcp profile: Vertex AI Model Registry


def vertex_register_task(*, project: str, region: str, display_name: str, artifact_uri: str,
                         gcp_conn_id: str = "google_cloud_default", metadata: dict | None = None,
                         parent_model: str | None = None, serving_image_uri: str | None = None,
                         task_id: str = "vertex_register", **kwargs):
    """UploadModelOperator: a new version under `parent_model` (the model id), or a new model
    named `display_name` (the registry's model_display_name)."""
    from airflow.providers.google.cloud.operators.vertex_ai.model_service import UploadModelOperator

    from ml.vertex_registry import upload_request

    request = upload_request(project=project, region=region, display_name=display_name, artifact_uri=artifact_uri,
                             serving_image_uri=serving_image_uri
                             or "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-17:latest",
                             metadata=metadata)
    model = type(request.model).to_dict(request.model)
    return UploadModelOperator(task_id=task_id, model=model, parent_model=parent_model, project_id=project,
                               region=region, gcp_conn_id=gcp_conn_id, **kwargs)


def vertex_promote_tasks(*, project: str, region: str, model_id: str, new_version: str,
                         current_champion: str | None = None, gcp_conn_id: str = "google_cloud_default",
                         task_id_prefix: str = "vertex", **kwargs) -> list:
    """The Google provider operators that make `new_version` the champion, in order (chain them):
    1. `previous` onto the current champion (skipped when there is none), 2. `champion` onto
    `new_version` — Vertex moves an alias that another version carries, so the champion alias is
    never absent. A rollback is the same call with new_version = the version to restore.
    `model_id`: the Vertex model id (the registry's model_id, else its model_display_name: valid
    as an id, [a-z0-9_-]). Versions may be Jinja templates (model_id is a templated field of these
    operators)."""
    from airflow.providers.google.cloud.operators.vertex_ai.model_service import (
        AddVersionAliasesOnModelOperator,
    )

    from ml.vertex_registry import CHAMPION, PREVIOUS, check_alias

    ids = {"project_id": project, "region": region, "gcp_conn_id": gcp_conn_id}
    tasks = []
    if current_champion:
        tasks.append(AddVersionAliasesOnModelOperator(
            task_id=f"{task_id_prefix}_mark_previous", model_id=f"{model_id}@{current_champion}",
            version_aliases=[check_alias(PREVIOUS)], **ids, **kwargs))
    tasks.append(AddVersionAliasesOnModelOperator(
        task_id=f"{task_id_prefix}_move_champion", model_id=f"{model_id}@{new_version}",
        version_aliases=[check_alias(CHAMPION)], **ids, **kwargs))
    return tasks


def vertex_retire_task(*, project: str, region: str, model_id: str, version: str,
                       gcp_conn_id: str = "google_cloud_default", task_id: str = "vertex_retire_champion", **kwargs):
    """DeleteVersionAliasesOnModelOperator: take `champion` off `version` (sent as `-champion`)."""
    from airflow.providers.google.cloud.operators.vertex_ai.model_service import (
        DeleteVersionAliasesOnModelOperator,
    )

    from ml.vertex_registry import CHAMPION

    return DeleteVersionAliasesOnModelOperator(task_id=task_id, model_id=f"{model_id}@{version}",
                                               version_aliases=[CHAMPION], project_id=project, region=region,
                                               gcp_conn_id=gcp_conn_id, **kwargs)
