"""Which `tf.distribute` strategy the trainer builds its model under, read from the environment.

The same `python -m ml.trainer` runs as a local subprocess, on a Vertex AI TPU VM and on a
multi-replica Vertex AI job; the machine, not a flag, says which strategy fits:

  tpu                    a TPU is declared (`PRODML_DISTRIBUTE=tpu`, set by the Vertex TPU job) or
                         present (`TPU_NAME` / `TPU_WORKER_HOSTNAMES` / `TPU_ACCELERATOR_TYPE`, or a
                         `/dev/accel*` device): `TPUStrategy` on a `TPUClusterResolver`
  parameter_server       `TF_CONFIG`'s cluster has a `ps` job: `ParameterServerStrategy`
  multi_worker_mirrored  `TF_CONFIG`'s cluster has more than one chief/worker task
  mirrored               more than one local GPU (declared: every local GPU, else every logical CPU)
  default                anything else (one CPU or one GPU)

`strategy_kind` is the decision, a pure function of the environment (unit-tested without a TPU);
`make_strategy` builds it. `PRODML_DISTRIBUTE=<kind>` overrides the decision.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

KINDS = ("tpu", "parameter_server", "multi_worker_mirrored", "mirrored", "default")
TPU_VARIABLES = ("TPU_NAME", "TPU_WORKER_HOSTNAMES", "TPU_ACCELERATOR_TYPE")


def cluster_spec(env: Mapping[str, str]) -> dict[str, list]:
    """The cluster of `TF_CONFIG` (empty without one). Vertex AI names the jobs chief / worker /
    ps / evaluator after its worker pools 0-3."""
    raw = env.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        cluster = json.loads(raw).get("cluster") or {}
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"TF_CONFIG is not a JSON object with a cluster: {exc}") from None
    return {job: list(tasks) for job, tasks in cluster.items()}


def strategy_kind(env: Mapping[str, str] | None = None, local_gpus: int = 0,
                  tpu_devices: list[str] | None = None) -> str:
    """The strategy that fits this machine: one of KINDS (see the module docstring)."""
    env = os.environ if env is None else env
    declared = env.get("PRODML_DISTRIBUTE", "").strip().lower()
    if declared:
        if declared not in KINDS:
            raise ValueError(f"PRODML_DISTRIBUTE={declared!r}: expected one of {', '.join(KINDS)}")
        return declared
    if any(env.get(name) for name in TPU_VARIABLES) or tpu_devices:
        return "tpu"
    cluster = cluster_spec(env)
    if cluster.get("ps"):
        return "parameter_server"
    if len(cluster.get("chief", [])) + len(cluster.get("worker", [])) > 1:
        return "multi_worker_mirrored"
    if local_gpus > 1:
        return "mirrored"
    return "default"


def make_strategy(kind: str, env: Mapping[str, str] | None = None):
    """Build the `tf.distribute` strategy of `kind` (TensorFlow imported here)."""
    import tensorflow as tf

    env = os.environ if env is None else env
    if kind == "tpu":
        # On a TPU VM (Vertex AI's TPU jobs) the TPU is local to the host: "local" unless named.
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=env.get("TPU_NAME", "local"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if kind == "parameter_server":
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        if resolver.task_type in ("worker", "ps"):
            # Workers and parameter servers only serve the coordinator (the chief); they never return.
            server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                          task_index=resolver.task_id, protocol=resolver.rpc_layer or "grpc",
                                          start=True)
            server.join()
        return tf.distribute.ParameterServerStrategy(resolver)
    if kind == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        # Every local GPU; without GPUs, every logical CPU device (one CPU split in two in the tests).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if kind == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy kind {kind!r}: expected one of {', '.join(KINDS)}")


def choose_strategy():
    """The strategy for this machine: `strategy_kind` of the environment, built."""
    import tensorflow as tf

    kind = strategy_kind(os.environ, local_gpus=len(tf.config.list_physical_devices("GPU")),
                         tpu_devices=glob.glob("/dev/accel*"))
    log.info("distribution strategy: %s", kind)
    return make_strategy(kind)
