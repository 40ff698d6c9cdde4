"""Serve the champion (and the bandit's challengers) from a Vertex AI endpoint (gcp profile).

Runs after the Vertex mirror (the versions it deploys are the mirror's `vNNNN` aliases): the
bucket registry names the champion, the bandit's stored state (the monitoring DAG's) gives each
version its share, and `ml.vertex_endpoint.endpoint_plan` turns that into typed requests: create
the endpoint, deploy new versions without traffic, set the traffic split, undeploy what lost its
share. The calls go through the Google provider's `EndpointServiceHook` (and `ModelServiceHook`
to list the mirrored versions). Idempotent: in sync, it sends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import BaseOperator

from ml.config import ConfigError


def _enabled(settings: dict | None) -> bool:
    return str((settings or {}).get("enabled", False)).lower() in ("1", "true", "yes")


class VertexEndpointOperator(BaseOperator):
    template_fields: Sequence[str] = ("project_id", "region", "endpoint_id", "model_id")
    ui_color = "#e6f4ea"

    def __init__(self, *, registry_config: dict, project_id: str, region: str, endpoint_id: str, model_id: str,
                 machine_type: str, min_replicas: int, max_replicas: int, challengers: Sequence[str] = (),
                 bandit_state_uri: str | None = None, floor: float = 0.05, guard_probability: float = 0.99,
                 guard_min_rewards: int = 200, gcp_conn_id: str = "google_cloud_default", **kwargs):
        super().__init__(**kwargs)
        self.registry_config = registry_config
        self.project_id = project_id
        self.region = region
        self.endpoint_id = endpoint_id
        self.model_id = model_id
        self.machine_type = machine_type
        self.min_replicas = int(min_replicas)
        self.max_replicas = int(max_replicas)
        self.challengers = list(challengers)
        self.bandit_state_uri = bandit_state_uri
        self.floor = float(floor)
        self.guard_probability = float(guard_probability)
        self.guard_min_rewards = int(guard_min_rewards)
        self.gcp_conn_id = gcp_conn_id

    def plan(self, *, endpoints, models) -> list:
        """The requests that bring the endpoint in line (see ml.vertex_endpoint.endpoint_plan);
        `endpoints` / `models`: the Vertex AI EndpointService / ModelService clients."""
        from ml import registry
        from ml import vertex_endpoint as ve
        from ml import vertex_registry as vr

        champion = registry.connect(self.registry_config).aliases().get(vr.CHAMPION)
        if champion is None:
            self.log.info("vertex endpoint: no champion yet, nothing to serve")
            return []
        model = vr.model_name(self.project_id, self.region, self.model_id)
        mirrored = {alias for aliases in (vr.vertex_aliases_of(models, model) or {}).values() for alias in aliases}
        if champion not in mirrored:
            raise RuntimeError(f"champion {champion} is not in Vertex AI Model Registry ({model}): "
                               "the vertex_mirror task uploads it first")
        challengers = [c for c in self.challengers if c in mirrored]
        for version in sorted(set(self.challengers) - set(challengers)):
            self.log.warning("vertex endpoint: challenger %s has never been mirrored to Vertex: not deployed", version)
        shares, floor = ve.routing_shares(champion=champion, challengers=challengers, state_uri=self.bandit_state_uri,
                                          floor=self.floor, guard_probability=self.guard_probability,
                                          guard_min_rewards=self.guard_min_rewards)
        endpoint = ve.endpoint_name(self.project_id, self.region, self.endpoint_id)
        return ve.endpoint_plan(project=self.project_id, region=self.region, endpoint_id=self.endpoint_id,
                                display_name=self.endpoint_id, model=model, shares=shares, floor=floor,
                                machine_type=self.machine_type, min_replicas=self.min_replicas,
                                max_replicas=self.max_replicas, current=ve.current_endpoint(endpoints, endpoint))

    def execute(self, context) -> list[str]:
        from airflow.providers.google.cloud.hooks.vertex_ai.endpoint_service import EndpointServiceHook
        from airflow.providers.google.cloud.hooks.vertex_ai.model_service import ModelServiceHook

        from ml import vertex_endpoint as ve

        endpoints = EndpointServiceHook(gcp_conn_id=self.gcp_conn_id).get_endpoint_service_client(self.region)
        models = ModelServiceHook(gcp_conn_id=self.gcp_conn_id).get_model_service_client(self.region)
        done = ve.send(endpoints, self.plan(endpoints=endpoints, models=models))
        for line in done:
            self.log.info("vertex endpoint: %s", line)
        if not done:
            self.log.info("vertex endpoint: %s already serves the champion and the bandit's split", self.endpoint_id)
        return done


def vertex_endpoint(*, registry_config: dict, serving_config: dict | None, google,
                    task_id: str = "vertex_endpoint"):
    """The endpoint task when the profile asks for it (`serving.vertex_endpoint.enabled` on the gcp
    profile; `google` from `prodml_airflow.targets.google_cloud`), else None. It deploys what the
    Vertex mirror uploaded, so it needs `registry.vertex_mirror` on. Runs when at least one upstream
    succeeded and none failed (in `monitoring`: the bandit's update, with or without a rollback)."""
    serving_config = serving_config or {}
    settings = serving_config.get("vertex_endpoint")
    if google is None or not _enabled(settings):
        return None
    mirror = registry_config.get("vertex_mirror")
    if not _enabled(mirror):
        raise ConfigError("serving.vertex_endpoint deploys the versions registry.vertex_mirror uploads: "
                          "turn the mirror on (PRODML_VERTEX_MIRROR=true) or the endpoint off")
    bandit = serving_config.get("bandit") or {}
    from ml.serving.bandit import parse_versions  # gcp only; numpy and pyarrow, nothing from the heavy list

    return VertexEndpointOperator(
        task_id=task_id, registry_config=registry_config, project_id=google.project, region=google.region,
        endpoint_id=settings["endpoint_id"], model_id=mirror["model_id"], machine_type=settings["machine_type"],
        min_replicas=settings["min_replicas"], max_replicas=settings["max_replicas"],
        challengers=parse_versions(serving_config.get("challengers")), bandit_state_uri=bandit.get("state_uri"),
        floor=bandit.get("floor", 0.05), guard_probability=bandit.get("guard_probability", 0.99),
        guard_min_rewards=bandit.get("guard_min_rewards", 200), gcp_conn_id=google.conn_id,
        trigger_rule="none_failed_min_one_success")
