"""tf.distribute: two replicas train exactly as one device does; two workers stay in step."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_draw import strategies

pytestmark = pytest.mark.slow  # subprocesses and whole runs: the slow tier

SCRIPT = Path(__file__).resolve().parent / "scripts" / "distributed_fit.py"
ROOT = Path(__file__).resolve().parents[1]


def launch(mode, out, clip_norm=1.0, tf_config=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, str(SCRIPT), mode, str(clip_norm), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process):
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]


def results(path):
    with np.load(path) as data:
        return data["losses"], [data[f"arr_{i}"] for i in range(len(data.files) - 1)]


def test_two_mirrored_replicas_train_as_one_device(tmp_path):
    # Same global batch and seed: each replica takes its rows of the global batch's noise, and
    # the global gradient is clipped (clip_norm=1 is active here) before the update. What is left
    # is float rounding of sums taken in another order: 1e-5 relative on the losses, and weights
    # within 1e-6 after 8 SGD steps.
    processes = [launch("one", tmp_path / "one.npz"), launch("mirrored", tmp_path / "two.npz")]
    for p in processes:
        finish(p)
    one_losses, one_weights = results(tmp_path / "one.npz")
    two_losses, two_weights = results(tmp_path / "two.npz")
    assert len(one_losses) == 8
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-5)
    for a, b in zip(one_weights, two_weights):
        np.testing.assert_allclose(b, a, atol=1e-6)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_end_with_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = [
        launch("multi_worker", tmp_path / f"worker{i}.npz",
               tf_config={"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        for i in range(2)
    ]
    for p in processes:
        finish(p)
    losses_0, weights_0 = results(tmp_path / "worker0.npz")
    losses_1, weights_1 = results(tmp_path / "worker1.npz")
    assert len(losses_0) == 8 and np.all(np.isfinite(losses_0))
    for a, b in zip(weights_0, weights_1):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("tf_config, chief", [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_only_the_chief_writes(tf_config, chief, monkeypatch):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert strategies.is_chief() is chief


def test_unknown_strategy_and_missing_tf_config_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="Received: strategy='horovod'"):
        strategies.make_strategy("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategies.make_strategy("multi_worker")
