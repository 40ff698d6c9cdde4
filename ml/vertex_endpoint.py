"""The champion (and the bandit's challengers) served from a Vertex AI endpoint (gcp profile).

The bucket registry says which version is the champion; the bandit's state (ml.serving.bandit,
stored by the monitoring DAG) says which share of the traffic each version gets. This module
turns both into the requests that make one Vertex AI endpoint match them, as plain functions over
the client library's types (`google.cloud.aiplatform_v1`), testable without network:

| wanted                              | request                                                          |
|-------------------------------------|------------------------------------------------------------------|
| the endpoint exists                 | CreateEndpointRequest with a fixed `endpoint_id` (idempotent name) |
| a version with a share is deployed  | DeployModelRequest: DeployedModel `id` = the version's number      |
|                                     | (`v0003` → `3`), `model` = `models/<id>@v0003` (the alias the      |
|                                     | Vertex mirror gives it), dedicated resources from the profile     |
| the traffic split follows the shares | UpdateEndpointRequest, update_mask `traffic_split`              |
| a version without a share is gone   | UndeployModelRequest (after the split took its traffic away)      |

Order, so the endpoint never stops answering: new versions are deployed without traffic (the
first one on an empty endpoint takes 100 %), then one update moves the whole split, then the
versions left at 0 % are undeployed (Vertex refuses to undeploy a model that still has traffic).
The endpoint belongs to this model: a deployed model that is no version we want is undeployed.
Idempotent: an endpoint in sync plans nothing.
"""

from __future__ import annotations

import math
import re

from ml import vertex_registry as vr
from ml.serving.bandit import Bandit, deployed_model, deployed_model_id, traffic_percentages

_ENDPOINT_ID = re.compile(r"^(?:[a-z][a-z0-9-]{0,61}[a-z0-9]|[a-z]|[1-9][0-9]{0,8})$")


def endpoint_name(project: str, region: str, endpoint_id: str) -> str:
    """projects/{project}/locations/{region}/endpoints/{endpoint_id}."""
    if not _ENDPOINT_ID.match(endpoint_id):
        raise ValueError(f"invalid Vertex AI endpoint id {endpoint_id!r}: a letter then up to 62 of [a-z0-9-] "
                         "ending in a letter or digit, or up to 9 digits without a leading zero")
    return f"{vr.location_path(project, region)}/endpoints/{endpoint_id}"


def traffic_split(shares: dict[str, float], *, floor: float = 0.0,
                  deployed_ids: dict[str, str] | None = None) -> dict[str, int]:
    """Endpoint.traffic_split from the bandit's shares {version: share}: {DeployedModel id: percent}.

    - The percentages are integers summing to exactly 100 (what Vertex AI accepts): the largest
      remainder rounding of `ml.serving.bandit.traffic_percentages`.
    - A version with a positive share keeps at least its exploration floor, floor(100 x floor)
      points, and never less than 1 point (a 0.4 % share rounded to 0 would stop its exploration
      on the endpoint); the points come from the largest shares.
    - A version with share 0 (stopped by the bandit's guard) is listed with 0.
    `deployed_ids` maps a version to its DeployedModel id (default: the version's number)."""
    if any(s < 0 or math.isnan(s) for s in shares.values()):
        raise ValueError(f"shares must be >= 0: {shares}")
    active = {v: s for v, s in shares.items() if s > 0}
    if not active:
        raise ValueError("no version has a positive share: Vertex AI needs a split summing to 100")
    if len(active) > 100:
        raise ValueError(f"{len(active)} versions with a share cannot each get a whole percent")
    least = max(1, math.floor(100 * min(floor, 1 / len(active)) + 1e-9))
    points = traffic_percentages(active)
    for version in sorted(active):
        while points[version] < least:  # a donor above `least` exists: 100 >= len(active) x least
            donor = max(sorted(points), key=lambda v: points[v])
            points[donor] -= 1
            points[version] += 1
    ids = deployed_ids or {}
    return {ids.get(v) or deployed_model_id(v): points.get(v, 0) for v in shares}


def routing_shares(*, champion: str, challengers, state_uri: str | None, floor: float,
                   guard_probability: float, guard_min_rewards: int) -> tuple[dict[str, float], float]:
    """The shares the bandit gives `champion` and `challengers` now, and its floor: the stored state
    (the monitoring DAG's) followed to the registry's champion, or the prior when none is stored yet
    (what the service's router does too)."""
    stored = Bandit.load(state_uri) if state_uri else None
    bandit = stored or Bandit(champion, challengers, floor=floor, guard_probability=guard_probability,
                              guard_min_rewards=guard_min_rewards)
    bandit.sync(champion, list(challengers))
    return bandit.shares(), bandit.floor


def create_endpoint_request(*, project: str, region: str, endpoint_id: str, display_name: str):
    from google.cloud.aiplatform_v1.types import CreateEndpointRequest, Endpoint

    endpoint_name(project, region, endpoint_id)  # checks the id
    return CreateEndpointRequest(parent=vr.location_path(project, region), endpoint_id=endpoint_id,
                                 endpoint=Endpoint(display_name=display_name))


def deploy_request(*, endpoint: str, model: str, version: str, machine_type: str, min_replicas: int,
                   max_replicas: int, traffic: dict[str, int] | None = None):
    """DeployModelRequest for one registry version (`model`: the Vertex model's resource name).
    `traffic` empty: the endpoint's split is left as it is (the new model gets no traffic yet)."""
    from google.cloud.aiplatform_v1.types import DeployModelRequest

    if not 1 <= min_replicas <= max_replicas:
        raise ValueError(f"replicas: need 1 <= min ({min_replicas}) <= max ({max_replicas})")
    deployed = deployed_model(version=version, model=model, machine_type=machine_type,
                              min_replicas=min_replicas, max_replicas=max_replicas)
    return DeployModelRequest(endpoint=endpoint, deployed_model=deployed, traffic_split=traffic or {})


def split_request(*, endpoint: str, split: dict[str, int]):
    """UpdateEndpointRequest that sets only the endpoint's traffic split."""
    from google.cloud.aiplatform_v1.types import Endpoint, UpdateEndpointRequest
    from google.protobuf.field_mask_pb2 import FieldMask

    if sum(split.values()) != 100:
        raise ValueError(f"a traffic split sums to 100, not {sum(split.values())}: {split}")
    return UpdateEndpointRequest(endpoint=Endpoint(name=endpoint, traffic_split=split),
                                 update_mask=FieldMask(paths=["traffic_split"]))


def undeploy_request(*, endpoint: str, deployed_id: str):
    from google.cloud.aiplatform_v1.types import UndeployModelRequest

    return UndeployModelRequest(endpoint=endpoint, deployed_model_id=deployed_id)


def endpoint_plan(*, project: str, region: str, endpoint_id: str, display_name: str, model: str,
                  shares: dict[str, float], floor: float, machine_type: str, min_replicas: int,
                  max_replicas: int, current) -> list:
    """The requests that make the endpoint serve `shares` ({version: share}, stopped versions at 0).

    `current`: the endpoint as GetEndpoint returns it (its deployed models and split), None when it
    does not exist yet. `model`: the Vertex model whose versions carry the registry's `vNNNN`
    aliases (ml.vertex_registry)."""
    endpoint = endpoint_name(project, region, endpoint_id)
    requests = []
    if current is None:
        requests.append(create_endpoint_request(project=project, region=region, endpoint_id=endpoint_id,
                                                display_name=display_name))
    deployed = [m.id for m in current.deployed_models] if current is not None else []
    live = {k: v for k, v in (current.traffic_split if current is not None else {}).items() if v}
    wanted = traffic_split(shares, floor=floor)
    id_of = {version: deployed_model_id(version) for version in shares}
    for version in sorted(shares):
        if wanted[id_of[version]] > 0 and id_of[version] not in deployed:
            first = not deployed  # an endpoint without models: the first one takes all the traffic
            requests.append(deploy_request(endpoint=endpoint, model=model, version=version,
                                           machine_type=machine_type, min_replicas=min_replicas,
                                           max_replicas=max_replicas, traffic={"0": 100} if first else None))
            if first:
                live = {id_of[version]: 100}
            deployed.append(id_of[version])
    retired = sorted(d for d in deployed if wanted.get(d, 0) == 0)
    split = {d: wanted.get(d, 0) for d in deployed}
    if {k: v for k, v in split.items() if v} != live:
        requests.append(split_request(endpoint=endpoint, split=split))
    requests += [undeploy_request(endpoint=endpoint, deployed_id=d) for d in retired]
    return requests


def current_endpoint(client, endpoint: str):
    """The endpoint as Vertex AI has it now, None if it does not exist."""
    from google.api_core.exceptions import NotFound
    from google.cloud.aiplatform_v1.types import GetEndpointRequest

    try:
        return client.get_endpoint(request=GetEndpointRequest(name=endpoint))
    except NotFound:
        return None


def send(client, requests: list) -> list[str]:
    """Send planned requests in order, each long-running one waited for; what was done."""
    from google.cloud.aiplatform_v1.types import (
        CreateEndpointRequest,
        DeployModelRequest,
        UndeployModelRequest,
        UpdateEndpointRequest,
    )

    done = []
    for request in requests:
        if isinstance(request, CreateEndpointRequest):
            client.create_endpoint(request=request).result()
            done.append(f"created endpoint {request.endpoint_id}")
        elif isinstance(request, DeployModelRequest):
            client.deploy_model(request=request).result()
            model = request.deployed_model
            done.append(f"deployed {model.model} as {model.id} on {model.dedicated_resources.machine_spec.machine_type}")
        elif isinstance(request, UpdateEndpointRequest):
            client.update_endpoint(request=request)
            done.append(f"traffic split {dict(sorted(request.endpoint.traffic_split.items()))}")
        elif isinstance(request, UndeployModelRequest):
            client.undeploy_model(request=request).result()
            done.append(f"undeployed {request.deployed_model_id}")
        else:
            raise TypeError(f"unexpected request {type(request).__name__}")
    return done
