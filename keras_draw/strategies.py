"""tf.distribute strategies for train.py's `--strategy`, and which process writes files.

`default` trains on one device; `mirrored` on every local GPU (or the logical devices given);
`multi_worker` on the hosts that TF_CONFIG names, each with its local devices; `tpu` on the TPU
that the cluster resolver finds. The same `model.fit` code runs under each: the global batch is
split across replicas, and only the chief writes checkpoints, pictures and exports.
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name):
    """The tf.distribute strategy called `name` (one of `STRATEGIES`)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("`strategy='multi_worker'` needs the TF_CONFIG environment variable "
                             "naming the cluster and this worker's task. Received: strategy='multi_worker'")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy: {name!r}. Supported: {', '.join(STRATEGIES)}. Received: strategy={name!r}")


def is_chief():
    """Whether this process writes the run's files: the chief, or worker 0 without a chief."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in config.get("cluster", {})
