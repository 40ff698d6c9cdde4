"""The champion and the bandit's challengers on a Vertex AI endpoint (gcp profile): the traffic split
from the bandit's shares, the exact requests (client library types), and the operator sending
them through the provider's hooks. Only the Vertex AI clients are replaced, by an in-memory
endpoint service that keeps Vertex's documented rules: DeployedModel ids are 1-10 digits, a split
sums to 100 over deployed models, "0" in a deploy's split names the model being deployed, a model
with traffic cannot be undeployed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from unittest import mock

import numpy as np
import pytest
from google.api_core.exceptions import FailedPrecondition, NotFound
from google.cloud.aiplatform_v1.types import (
    CreateEndpointRequest,
    DeployModelRequest,
    Endpoint,
    GetEndpointRequest,
    ListModelVersionsRequest,
    UndeployModelRequest,
    UpdateEndpointRequest,
)

from ml import registry
from ml import vertex_endpoint as ve
from ml.config import ConfigError, load
from ml.serving.bandit import Bandit
from tests.gcp import emulators

PROJECT, REGION = "p", "europe-west4"
MODEL = f"projects/{PROJECT}/locations/{REGION}/models/prodml-traffic"
ENDPOINT = f"projects/{PROJECT}/locations/{REGION}/endpoints/prodml-traffic"


# ------------------------------------------------------------------ the traffic split


def test_the_split_sums_to_100_keeps_floors_and_zeroes_stopped_versions_over_random_shares():
    rng = np.random.default_rng(11)
    for _ in range(3000):
        n = int(rng.integers(1, 9))
        versions = [f"v{i:04d}" for i in range(1, n + 1)]
        stopped = {v for v in versions[1:] if rng.random() < 0.25}  # the champion is never stopped
        active = [v for v in versions if v not in stopped]
        floor = float(rng.choice([0.0, 0.003, 0.01, 0.05, 0.1, 0.3]))
        f = min(floor, 1 / len(active))
        p_best = rng.dirichlet(np.full(len(active), float(rng.choice([0.05, 1.0, 5.0]))))
        shares = {v: 0.0 for v in stopped} | {v: f + (1 - f * len(active)) * p for v, p in zip(active, p_best, strict=True)}
        stopped |= {v for v in active if shares[v] == 0}  # floor 0: a share can underflow to 0, as good as stopped
        active = [v for v in active if shares[v] > 0]
        split = ve.traffic_split(shares, floor=floor)
        assert set(split) == {str(int(v[1:])) for v in versions}
        assert all(isinstance(p, int) for p in split.values())
        assert sum(split.values()) == 100
        assert all(split[str(int(v[1:]))] == 0 for v in stopped)
        least = max(1, int(100 * f + 1e-9))
        assert all(split[str(int(v[1:]))] >= least for v in active), (shares, floor, split)
        # a floor of 1 % or more is in the shares already: rounding alone, within a point of each share;
        # below 1 %, arms rounded to 0 are lifted to 1 point, each taking a point from the largest
        slack = 1 if 100 * f >= 1 else 1 + len(active)
        assert all(abs(split[str(int(v[1:]))] - 100 * shares[v]) < slack for v in active), (shares, split)


def test_a_tiny_share_still_gets_a_point_and_the_points_come_from_the_largest():
    assert ve.traffic_split({"v0003": 0.994, "v0004": 0.003, "v0005": 0.003}) == {"3": 98, "4": 1, "5": 1}
    assert ve.traffic_split({"v0003": 0.97, "v0004": 0.03}, floor=0.05) == {"3": 95, "4": 5}
    assert ve.traffic_split({"champion": 1.0}, deployed_ids={"champion": "77"}) == {"77": 100}
    with pytest.raises(ValueError, match="positive share"):
        ve.traffic_split({"v0003": 0.0})
    with pytest.raises(ValueError, match=">= 0"):
        ve.traffic_split({"v0003": 1.2, "v0004": -0.2})
    with pytest.raises(ValueError, match="registry version"):
        ve.traffic_split({"champion": 1.0})  # DeployedModel ids are digits: a registry version or an explicit id


def test_the_split_of_a_real_bandit_that_stopped_a_challenger():
    bandit = Bandit("v0003", ["v0004", "v0005"], floor=0.05, guard_min_rewards=50)
    bandit.apply_window("w1", {"v0003": (90, 10), "v0004": (40, 60), "v0005": (9, 1)})
    assert bandit.arms["v0004"]["stopped"] is not None  # the guard stopped the losing challenger
    split = ve.traffic_split(bandit.shares(), floor=bandit.floor)
    assert split["4"] == 0 and sum(split.values()) == 100 and split["5"] >= 5 and split["3"] >= 5


# ------------------------------------------------------------------ rendered requests


def _plan(shares, current, **overrides):
    settings = load("gcp")["serving"]["vertex_endpoint"]
    kwargs = dict(project=PROJECT, region=REGION, endpoint_id=settings["endpoint_id"], display_name="prodml-traffic",
                  model=MODEL, shares=shares, floor=0.05, machine_type=settings["machine_type"],
                  min_replicas=settings["min_replicas"], max_replicas=settings["max_replicas"], current=current)
    return ve.endpoint_plan(**(kwargs | overrides))


def test_the_first_deploy_creates_the_endpoint_and_gives_the_champion_all_traffic():
    settings = load("gcp")["serving"]["vertex_endpoint"]
    create, deploy = _plan({"v0007": 1.0}, current=None)
    assert isinstance(create, CreateEndpointRequest)
    assert create.parent == f"projects/{PROJECT}/locations/{REGION}"
    assert create.endpoint_id == "prodml-traffic" and create.endpoint.display_name == "prodml-traffic"
    assert isinstance(deploy, DeployModelRequest) and deploy.endpoint == ENDPOINT
    model = deploy.deployed_model
    assert (model.id, model.model, model.display_name) == ("7", f"{MODEL}@v0007", "prodml-v0007")
    resources = model.dedicated_resources
    assert resources.machine_spec.machine_type == settings["machine_type"] == "n1-standard-4"
    assert (resources.min_replica_count, resources.max_replica_count) == (1, 4)
    assert dict(deploy.traffic_split) == {"0": 100}  # "0": the model this request deploys
    for request in (create, deploy):  # wire format round trip: every field is one the API knows
        assert type(request).deserialize(type(request).serialize(request)) == request


def test_a_new_champion_is_deployed_without_traffic_then_takes_it_then_the_old_one_goes():
    current = Endpoint(name=ENDPOINT, traffic_split={"7": 100},
                       deployed_models=[{"id": "7", "model": MODEL, "model_version_id": "7"}])
    deploy, split, undeploy = _plan({"v0008": 1.0}, current=current)
    assert isinstance(deploy, DeployModelRequest) and deploy.deployed_model.id == "8"
    assert dict(deploy.traffic_split) == {}  # the endpoint's split is left as it is
    assert isinstance(split, UpdateEndpointRequest) and split.endpoint.name == ENDPOINT
    assert dict(split.endpoint.traffic_split) == {"7": 0, "8": 100}
    assert list(split.update_mask.paths) == ["traffic_split"]
    assert isinstance(undeploy, UndeployModelRequest)
    assert (undeploy.endpoint, undeploy.deployed_model_id) == (ENDPOINT, "7")
    in_sync = Endpoint(name=ENDPOINT, traffic_split={"8": 100}, deployed_models=[{"id": "8", "model": MODEL}])
    assert _plan({"v0008": 1.0}, current=in_sync) == []


def test_bad_settings_are_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="replicas"):
        _plan({"v0007": 1.0}, current=None, min_replicas=0)
    with pytest.raises(ValueError, match="replicas"):
        _plan({"v0007": 1.0}, current=None, min_replicas=5, max_replicas=2)
    with pytest.raises(ValueError, match="endpoint id"):
        _plan({"v0007": 1.0}, current=None, endpoint_id="Prodml_Traffic")


# ------------------------------------------------------------------ the operator, through the hooks


class Done:
    def __init__(self, value=None):
        self.value = value

    def result(self):
        return self.value


class FakeModels:
    """ModelService: the Vertex versions of the model and their aliases, as the mirror leaves them."""

    def __init__(self, mirrored):
        self.mirrored = list(mirrored)

    def list_model_versions(self, request: ListModelVersionsRequest):
        assert isinstance(request, ListModelVersionsRequest) and request.name == MODEL
        return [type("M", (), {"version_id": str(i), "version_aliases": [v]}) for i, v in enumerate(self.mirrored, 1)]


class FakeEndpoints:
    """EndpointService with Vertex AI's rules; `served` records the split after every change."""

    def __init__(self, models: FakeModels):
        self.models = models
        self.endpoint: Endpoint | None = None
        self.requests: list = []
        self.served: list[dict] = []

    def _split_ok(self, split, deployed):
        assert sum(split.values()) == 100, f"Vertex AI: the split must sum to 100: {split}"
        assert set(split) <= deployed, f"Vertex AI: split names a model that is not deployed: {split}"

    def _changed(self):
        self.served.append({k: v for k, v in self.endpoint.traffic_split.items() if v})

    def get_endpoint(self, request):
        assert isinstance(request, GetEndpointRequest)
        if self.endpoint is None or request.name != self.endpoint.name:
            raise NotFound(request.name)
        return Endpoint.deserialize(Endpoint.serialize(self.endpoint))

    def create_endpoint(self, request):
        assert isinstance(request, CreateEndpointRequest) and self.endpoint is None
        self.requests.append(request)
        self.endpoint = Endpoint(name=f"{request.parent}/endpoints/{request.endpoint_id}",
                                 display_name=request.endpoint.display_name)
        return Done(self.endpoint)

    def deploy_model(self, request):
        assert isinstance(request, DeployModelRequest) and request.endpoint == self.endpoint.name
        self.requests.append(request)
        model = request.deployed_model
        deployed = {m.id for m in self.endpoint.deployed_models}
        assert re.fullmatch(r"[0-9]{1,10}", model.id) and model.id not in deployed
        name, _, alias = model.model.partition("@")
        assert name == MODEL and alias in self.models.mirrored, f"no Vertex version with alias {alias!r}"
        resources = model.dedicated_resources
        assert resources.machine_spec.machine_type and 1 <= resources.min_replica_count <= resources.max_replica_count
        self.endpoint.deployed_models.append(model)
        if request.traffic_split:
            split = {(model.id if k == "0" else k): v for k, v in request.traffic_split.items()}
            self._split_ok(split, deployed | {model.id})
            self.endpoint.traffic_split = split
        self._changed()
        return Done(model)

    def update_endpoint(self, request):
        assert isinstance(request, UpdateEndpointRequest) and request.endpoint.name == self.endpoint.name
        assert list(request.update_mask.paths) == ["traffic_split"]
        self.requests.append(request)
        split = dict(request.endpoint.traffic_split)
        self._split_ok(split, {m.id for m in self.endpoint.deployed_models})
        self.endpoint.traffic_split = split
        self._changed()
        return self.endpoint

    def undeploy_model(self, request):
        assert isinstance(request, UndeployModelRequest) and request.endpoint == self.endpoint.name
        self.requests.append(request)
        if self.endpoint.traffic_split.get(request.deployed_model_id, 0):
            raise FailedPrecondition(f"deployed model {request.deployed_model_id} still has traffic")
        kept = [m for m in self.endpoint.deployed_models if m.id != request.deployed_model_id]
        assert len(kept) == len(self.endpoint.deployed_models) - 1
        self.endpoint.deployed_models = kept
        self.endpoint.traffic_split = {k: v for k, v in self.endpoint.traffic_split.items()
                                       if k != request.deployed_model_id}
        self._changed()
        return Done()

    def split(self) -> dict:
        return {k: v for k, v in self.endpoint.traffic_split.items() if v}

    def deployed(self) -> list[str]:
        return sorted(m.model.partition("@")[2] for m in self.endpoint.deployed_models)


@pytest.fixture
def bucket(tmp_path, gcs_emulator, gcp_conn_id):
    name = f"b-{uuid.uuid4().hex[:12]}"
    emulators.create_bucket(gcs_emulator, name)
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"graph")
    section = {"kind": "bucket", "root": f"gs://{name}/registry"}
    models = registry.connect(section)
    versions = [models.register(str(model), {"metrics": {"auc": 0.8}}) for _ in range(3)]
    return f"gs://{name}", section, models, versions


def _run(op, endpoints, models):
    """The operator's execute, with only the two Vertex AI clients the hooks build replaced."""
    from airflow.providers.google.cloud.hooks.vertex_ai.endpoint_service import EndpointServiceHook
    from airflow.providers.google.cloud.hooks.vertex_ai.model_service import ModelServiceHook

    with mock.patch.object(EndpointServiceHook, "get_endpoint_service_client", return_value=endpoints) as e, \
            mock.patch.object(ModelServiceHook, "get_model_service_client", return_value=models) as m:
        done = op.execute(context={})
    e.assert_called_once_with(REGION)
    m.assert_called_once_with(REGION)
    return done


def _operator(section, state_uri, challengers=()):
    from prodml_airflow.vertex_endpoint import VertexEndpointOperator

    return VertexEndpointOperator(task_id="vertex_endpoint", registry_config=section, project_id=PROJECT, region=REGION,
                                  endpoint_id="prodml-traffic", model_id="prodml-traffic", machine_type="n1-standard-4",
                                  min_replicas=1, max_replicas=4, challengers=challengers, bandit_state_uri=state_uri,
                                  floor=0.05, guard_min_rewards=50)


def test_the_endpoint_follows_promotions_the_bandit_and_a_rollback_without_a_gap(bucket):
    root, section, models, (v1, v2, v3) = bucket
    state_uri = f"{root}/serving/bandit.json"
    vertex_models, endpoints = FakeModels([v1]), None
    endpoints = FakeEndpoints(vertex_models)
    op = _operator(section, state_uri)

    assert _run(op, endpoints, vertex_models) == []  # no champion yet: nothing to serve
    models.promote(v1, "first")
    done = _run(op, endpoints, vertex_models)
    assert [type(r).__name__ for r in endpoints.requests] == ["CreateEndpointRequest", "DeployModelRequest"]
    assert done[0] == "created endpoint prodml-traffic" and endpoints.split() == {"1": 100}
    assert _run(op, endpoints, vertex_models) == []  # in sync: nothing sent

    models.promote(v2, "better")
    vertex_models.mirrored.append(v2)  # what vertex_mirror, upstream, did
    endpoints.requests.clear()
    _run(op, endpoints, vertex_models)
    assert [type(r).__name__ for r in endpoints.requests] == [
        "DeployModelRequest", "UpdateEndpointRequest", "UndeployModelRequest"]
    assert endpoints.deployed() == [v2] and endpoints.split() == {"2": 100}

    # a challenger: the bandit's stored state (the monitoring DAG's) gives it its share
    bandit = Bandit(v2, [v3], floor=0.05, guard_min_rewards=50)
    bandit.apply_window("w1", {v2: (80, 20), v3: (9, 1)})
    bandit.save(state_uri)
    op = _operator(section, state_uri, challengers=[v3])
    assert _run(op, endpoints, vertex_models) == []  # v3 never mirrored: not deployed, the split stays
    vertex_models.mirrored.append(v3)
    _run(op, endpoints, vertex_models)
    assert endpoints.deployed() == [v2, v3]
    assert endpoints.split() == ve.traffic_split(bandit.shares(), floor=0.05)
    assert 5 <= endpoints.split()["3"] < 95

    # the guard stops the challenger: its traffic goes to 0, then it is undeployed
    bandit.apply_window("w2", {v2: (80, 20), v3: (30, 70)})
    assert bandit.arms[v3]["stopped"] is not None
    bandit.save(state_uri)
    _run(op, endpoints, vertex_models)
    assert endpoints.deployed() == [v2] and endpoints.split() == {"2": 100}

    models.rollback(reason="bad model")  # back to v1 (still a Vertex version, alias v0001)
    _run(op, endpoints, vertex_models)
    assert endpoints.deployed() == [v1] and endpoints.split() == {"1": 100}
    # once the first model served, the endpoint always sent all its traffic somewhere
    assert all(sum(split.values()) == 100 for split in endpoints.served)


def test_the_champion_must_be_mirrored_first(bucket):
    _, section, models, (v1, _, _) = bucket
    models.promote(v1, "first")
    vertex_models = FakeModels([])
    with pytest.raises(RuntimeError, match="vertex_mirror"):
        _run(_operator(section, None), FakeEndpoints(vertex_models), vertex_models)


# ------------------------------------------------------------------ wiring in the DAGs


def test_the_endpoint_task_needs_the_mirror():
    from prodml_airflow.targets import GoogleCloud
    from prodml_airflow.vertex_endpoint import vertex_endpoint

    google = GoogleCloud(project=PROJECT, region=REGION, conn_id="google_cloud_default")
    config = load("gcp")
    serving = config["serving"] | {"vertex_endpoint": config["serving"]["vertex_endpoint"] | {"enabled": "true"}}
    registry_off = config["registry"] | {"vertex_mirror": config["registry"]["vertex_mirror"] | {"enabled": "false"}}
    with pytest.raises(ConfigError, match="vertex_mirror"):
        vertex_endpoint(registry_config=registry_off, serving_config=serving, google=google)
    assert vertex_endpoint(registry_config=config["registry"], serving_config=serving, google=None) is None
    op = vertex_endpoint(registry_config=config["registry"], serving_config=serving, google=google)
    assert (op.endpoint_id, op.model_id, op.machine_type, op.min_replicas, op.max_replicas) == (
        "prodml-traffic", "prodml-traffic", "n1-standard-4", 1, 4)
    assert op.bandit_state_uri == config["serving"]["bandit"]["state_uri"] and op.floor == 0.05


def test_gcp_dags_sync_the_endpoint_after_the_mirror_when_enabled(tmp_path):
    probe = ("import json; from scripts import airflow_env; airflow_env.apply(airflow_home={!r});"
             "out = {{}}\n"
             "for d in ('static_training', 'dynamic_training', 'rollback', 'monitoring'):\n"
             "    from airflow.dag_processing.dagbag import DagBag\n"
             "    bag = DagBag(dag_folder=str(airflow_env.ROOT / 'dags' / (d + '.py')))\n"
             "    assert not bag.import_errors, bag.import_errors\n"
             "    dag = bag.dags[d]\n"
             "    t = dag.get_task('vertex_endpoint') if 'vertex_endpoint' in dag.task_ids else None\n"
             "    out[d] = t and [sorted(t.upstream_task_ids), t.trigger_rule.value]\n"
             "    if d == 'monitoring':  # without a breach only roll_back is skipped, not the endpoint sync\n"
             "        out['skips_all'] = dag.get_task('breach_confirmed').ignore_downstream_trigger_rules\n"
             "print(json.dumps(out))").format(str(tmp_path / "airflow_home"))
    seen = {}
    for name, profile, flag in (("on", "gcp", "true"), ("default", "gcp", None), ("local", "local", "true")):
        env = {**os.environ, "PRODML_PROFILE": profile, "PRODML_BUCKET": "b"}
        env.pop("PRODML_VERTEX_ENDPOINT", None)
        if flag:
            env["PRODML_VERTEX_ENDPOINT"] = flag
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        seen[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    after_mirror = [["vertex_mirror"], "none_failed_min_one_success"]
    assert seen["on"] == {"static_training": after_mirror, "dynamic_training": after_mirror, "rollback": after_mirror,
                          # hourly: the bandit's new shares, and after a rollback the restored champion
                          "monitoring": [["update_bandit", "vertex_mirror"], "none_failed_min_one_success"],
                          "skips_all": False}
    nothing = {"static_training": None, "dynamic_training": None, "rollback": None, "monitoring": None,
               "skips_all": False}
    assert seen["default"] == nothing and seen["local"] == nothing
