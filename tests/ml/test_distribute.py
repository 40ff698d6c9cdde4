"""ml.distribute: the strategy the trainer picks from its environment (no TPU or GPU needed)."""

from __future__ import annotations

import json

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
