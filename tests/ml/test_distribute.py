"""ml.distribute: the strategy the trainer picks from its environment (no TPU or GPU needed), and two
strategies that really run here: MirroredStrategy over two logical CPUs trains the trainer's model
as one device does; a parameter-server cluster spec builds ParameterServerStrategy."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml.distribute import KINDS, cluster_spec, make_strategy, strategy_kind


def tf_config(**jobs) -> dict:
    cluster = {job: [f"{job}-{i}:2222" for i in range(n)] for job, n in jobs.items()}
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}})}


def test_a_plain_machine_gets_the_default_strategy():
    assert strategy_kind({}) == "default"
    assert strategy_kind({}, local_gpus=1) == "default"


def test_several_local_gpus_get_mirrored():
    assert strategy_kind({}, local_gpus=2) == "mirrored"


@pytest.mark.parametrize("variable", ["TPU_NAME", "TPU_WORKER_HOSTNAMES", "TPU_ACCELERATOR_TYPE"])
def test_a_tpu_named_by_the_environment_wins(variable):
    assert strategy_kind({variable: "local", **tf_config(chief=1, worker=2)}, local_gpus=4) == "tpu"


def test_a_tpu_device_on_the_host_gets_tpu():
    assert strategy_kind({}, tpu_devices=["/dev/accel0"]) == "tpu"


def test_a_declared_kind_overrides_the_detection():
    # the Vertex TPU job declares its TPU (PRODML_DISTRIBUTE=tpu, set by the task factory)
    assert strategy_kind({"PRODML_DISTRIBUTE": "tpu"}) == "tpu"
    assert strategy_kind({"PRODML_DISTRIBUTE": "default", "TPU_NAME": "x"}, local_gpus=8) == "default"
    with pytest.raises(ValueError, match="PRODML_DISTRIBUTE='gpu'"):
        strategy_kind({"PRODML_DISTRIBUTE": "gpu"})


def test_a_cluster_with_parameter_servers_gets_parameter_server():
    assert strategy_kind(tf_config(chief=1, worker=2, ps=1)) == "parameter_server"


def test_several_workers_get_multi_worker_mirrored():
    assert strategy_kind(tf_config(chief=1, worker=1)) == "multi_worker_mirrored"
    assert strategy_kind(tf_config(worker=3)) == "multi_worker_mirrored"


def test_a_single_replica_cluster_is_not_distributed():
    # Vertex AI sets TF_CONFIG for one replica too (a cluster of one chief): nothing to distribute
    assert strategy_kind(tf_config(chief=1)) == "default"
    assert strategy_kind(tf_config(chief=1), local_gpus=2) == "mirrored"
    assert strategy_kind({**tf_config(chief=1, evaluator=1)}) == "default"


def test_cluster_spec_reads_tf_config():
    assert cluster_spec({}) == {}
    assert cluster_spec(tf_config(chief=1, ps=2)) == {"chief": ["chief-0:2222"], "ps": ["ps-0:2222", "ps-1:2222"]}
    with pytest.raises(ValueError, match="TF_CONFIG"):
        cluster_spec({"TF_CONFIG": "not json"})


def test_every_kind_is_known_and_the_default_builds():
    assert set(KINDS) == {"tpu", "parameter_server", "multi_worker_mirrored", "mirrored", "default"}
    import tensorflow as tf

    assert make_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="unknown strategy kind"):
        make_strategy("gpu")


# ------------------------------------------------------------------ strategies that really run
# Logical devices and servers must exist before TensorFlow initialises: each case runs in a fresh
# Python process, which prints one RESULT line of JSON.

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = str(ROOT / "include/schemas/traffic.yaml")

MIRRORED = """
import json, os, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from ml import trainer
data, out = sys.argv[1], sys.argv[2]
result = {}
for kind in ("default", "mirrored"):
    os.environ["PRODML_DISTRIBUTE"] = kind
    report = trainer.run(["--train", f"{data}/train/part-*.tfrecord", "--eval", f"{data}/eval/part-*.tfrecord",
                          "--stats", f"{data}/stats.json", "--schema", sys.argv[3], "--output", f"{out}/{kind}",
                          "--epochs", "3", "--batch_size", "64"])
    result[kind] = {k: report[k] for k in ("eval", "epochs", "strategy", "replicas")}
print("RESULT " + json.dumps(result))
"""

PARAMETER_SERVERS = """
import json, os, socket
def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]
cluster = {"chief": [f"localhost:{free_port()}"], "worker": [f"localhost:{free_port()}" for _ in range(2)],
           "ps": [f"localhost:{free_port()}"]}
os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}})
import tensorflow as tf
from ml import distribute
# the workers and the parameter server, in this process (enough inter-op threads: no deadlock on 2 cores)
config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=len(cluster["worker"]) + 1)
servers = [tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name=job, task_index=i, protocol="grpc",
                                config=config, start=True) for job in ("worker", "ps") for i in range(len(cluster[job]))]
kind = distribute.strategy_kind(os.environ)
strategy = distribute.make_strategy(kind)
with strategy.scope():
    counter = tf.Variable(0.0)
coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
@tf.function
def step():
    counter.assign_add(1.0)
    return counter.read_value()
for _ in range(6):  # asynchronous: the coordinator hands steps to whichever worker is free
    coordinator.schedule(step)
coordinator.join()
print("RESULT " + json.dumps({
    "kind": kind, "is_parameter_server": isinstance(strategy, tf.distribute.ParameterServerStrategy),
    "workers": strategy.extended._num_workers, "ps": strategy.extended._num_ps,
    "variable_device": counter.device, "steps_applied": float(counter.numpy())}))
"""


def run_fresh(code: str, *args: str, timeout: int = 600) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    env.pop("PRODML_DISTRIBUTE", None)
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """A small Beam transform output (40 sensors x 2 days) to train on."""
    from ml import transform
    from ml.simulate import simulate

    folder = tmp_path_factory.mktemp("distribute")
    with contextlib.redirect_stdout(io.StringIO()):
        simulate(folder / "sim", dt.date(2026, 11, 1), 2, 5, sensors=40)
    transform.run(["--input", str(folder / "sim/landing/dt=*/part-*.csv"), "--output", str(folder / "data"),
                   "--schema", SCHEMA])
    return folder


def test_mirrored_over_two_logical_cpus_matches_one_device(transformed):
    result = run_fresh(MIRRORED, str(transformed / "data"), str(transformed / "out"), SCHEMA)
    one, two = result["default"], result["mirrored"]
    assert (one["replicas"], two["replicas"]) == (1, 2) and two["strategy"] == "MirroredStrategy"
    # Synchronous all-reduce: each step averages the two halves' gradients, the full batch's gradient
    # up to float rounding, so the trained models agree.
    assert two["eval"]["auc"] == pytest.approx(one["eval"]["auc"], abs=1e-3)
    assert two["eval"]["loss"] == pytest.approx(one["eval"]["loss"], abs=1e-3)
    assert [e["steps"] for e in two["epochs"]] == [e["steps"] for e in one["epochs"]]
    assert (transformed / "out/mirrored/model/saved_model.pb").exists()


def test_a_parameter_server_cluster_builds_parameter_server_strategy():
    result = run_fresh(PARAMETER_SERVERS, timeout=300)
    assert result["kind"] == "parameter_server" and result["is_parameter_server"]
    assert (result["workers"], result["ps"]) == (2, 1)
    assert result["variable_device"].startswith("/job:ps/")  # variables live on the parameter server
    assert result["steps_applied"] == 6.0  # every scheduled step reached it
