"""Mirror the bucket registry onto Vertex AI Model Registry (gcp profile), after every alias move.

The bucket registry is the source of truth; this task makes Vertex match it: versions that have
served are uploaded as versions of one Vertex model (`parent_model`), each carrying its registry
version as a version alias (`v0003`), and `champion` / `previous` moved where the bucket says.
The plan is `ml.vertex_registry.mirror_plan` (requests built with the client library's types);
the calls go through the Google provider's `ModelServiceHook`. Idempotent: run again, it sends
nothing; a failed mirror is retried and never touches the bucket's aliases.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import BaseOperator


class VertexMirrorOperator(BaseOperator):
    template_fields: Sequence[str] = ("project_id", "region", "model_id")
    ui_color = "#e6f4ea"

    def __init__(self, *, registry_config: dict, project_id: str, region: str, model_id: str,
                 serving_image_uri: str, gcp_conn_id: str = "google_cloud_default", **kwargs):
        super().__init__(**kwargs)
        self.registry_config = registry_config
        self.project_id = project_id
        self.region = region
        self.model_id = model_id
        self.serving_image_uri = serving_image_uri
        self.gcp_conn_id = gcp_conn_id

    def plan(self, client) -> list:
        """The requests that bring Vertex in line with the bucket registry (see mirror_plan)."""
        from ml import registry
        from ml import vertex_registry as vr

        models = registry.connect(self.registry_config)
        aliases = models.aliases()
        wanted = set(vr.mirrored_versions(models.history(), aliases))
        records = [r for r in models.list_versions() if r["version"] in wanted]  # one listing, not a get each
        current = vr.vertex_aliases_of(client, vr.model_name(self.project_id, self.region, self.model_id))
        return vr.mirror_plan(project=self.project_id, region=self.region, model_id=self.model_id,
                              display_name=self.model_id, serving_image_uri=self.serving_image_uri,
                              records=records, aliases=aliases, vertex_aliases=current)

    def execute(self, context) -> list[str]:
        from airflow.providers.google.cloud.hooks.vertex_ai.model_service import ModelServiceHook

        from ml import vertex_registry as vr

        client = ModelServiceHook(gcp_conn_id=self.gcp_conn_id).get_model_service_client(self.region)
        done = vr.send(client, self.plan(client))
        for line in done:
            self.log.info("vertex mirror: %s", line)
        if not done:
            self.log.info("vertex mirror: already in sync with %s", self.registry_config["root"])
        return done


def vertex_mirror(*, registry_config: dict, google, settings: dict | None, task_id: str = "vertex_mirror"):
    """The mirror task when the profile asks for it (`registry.vertex_mirror` on the gcp profile,
    `google` from `prodml_airflow.targets.google_cloud`), else None. Runs whether or not the gate
    promoted (`none_failed_min_one_success`): in sync, it sends nothing."""
    enabled = str((settings or {}).get("enabled", False)).lower() in ("1", "true", "yes")
    if google is None or not enabled:
        return None
    return VertexMirrorOperator(task_id=task_id, registry_config=registry_config, project_id=google.project,
                                region=google.region, model_id=settings["model_id"],
                                serving_image_uri=settings["serving_image_uri"], gcp_conn_id=google.conn_id,
                                trigger_rule="none_failed_min_one_success")
