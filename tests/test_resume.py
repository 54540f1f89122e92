"""Interrupted training resumes exactly; bad checkpoints and diverging runs stop cleanly."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_draw import Draw
from keras_draw.checkpoint import Checkpoint, CheckpointCallback
from keras_draw.training import train

pytestmark = pytest.mark.slow  # subprocesses and whole runs: the slow tier

ROOT = Path(__file__).resolve().parents[1]
# 3 epochs of 4 steps, a checkpoint after every step, deterministic ops.
RUN = ["--preset", "tiny", "--epochs", "3", "--steps-per-epoch", "4", "--batch-size", "100",
       "--checkpoint-every", "1", "--deterministic", "--seed", "5", "--jit-compile", "off"]


def run_script(flags, output_dir, data_dir, **kwargs):
    command = [sys.executable, str(ROOT / "train.py"), *flags, "--data-dir", data_dir,
               "--output-dir", str(output_dir)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)


def final_weights(output_dir):
    return keras.saving.load_model(output_dir / "model.keras", compile=False).get_weights()


def epochs_in(output_dir):
    with open(output_dir / "metrics.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def wait_for_checkpoint(output_dir, process, epoch, step, timeout=240):
    """Polls state.json until the run has passed (epoch, step)."""
    state_path = output_dir / "checkpoint" / "state.json"
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if state_path.exists():
            state = json.loads(state_path.read_text())
            if (state["epoch"], state["step"]) >= (epoch, step):
                return state
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint past epoch {epoch}, step {step}")


def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, mnist_data_dir):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    process = run_script(RUN, killed, mnist_data_dir)
    state = wait_for_checkpoint(killed, process, epoch=1, step=2)  # mid-way through epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.keras").exists()  # it really died before the end
    resumed = run_script(RUN, killed, mnist_data_dir)
    uninterrupted = run_script(RUN, straight, mnist_data_dir)
    for p in (resumed, uninterrupted):
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    assert epochs_in(killed) == [0, 1, 2] == epochs_in(straight)  # no gap, no duplicate
    for a, b in zip(final_weights(killed), final_weights(straight)):
        np.testing.assert_array_equal(a, b)
    with open(killed / "metrics.csv") as f, open(straight / "metrics.csv") as g:
        killed_rows, straight_rows = list(csv.DictReader(f)), list(csv.DictReader(g))
    for row in killed_rows + straight_rows:  # wall time differs; it counts the time before the kill
        assert float(row.pop("seconds")) > 0
    assert killed_rows == straight_rows  # the resumed epoch's means include its first steps
    print(f"killed at epoch {state['epoch']}, step {state['step']}")


def test_more_epochs_continue_a_finished_run(tmp_path, mnist_data_dir):
    options = dict(preset="tiny", steps_per_epoch=2, batch_size=100, data_dir=mnist_data_dir, seed=1,
                   deterministic=True, jit_compile="off", verbose=0)
    train(epochs=1, output_dir=str(tmp_path / "a"), **options)
    continued, history = train(epochs=2, output_dir=str(tmp_path / "a"), **options)
    straight, _ = train(epochs=2, output_dir=str(tmp_path / "b"), **options)
    assert history.epoch == [0, 1]
    for a, b in zip(continued.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_another_configuration_is_refused_naming_the_differences(tmp_path, mnist_data_dir):
    options = dict(preset="tiny", epochs=1, steps_per_epoch=1, data_dir=mnist_data_dir,
                   output_dir=str(tmp_path), jit_compile="off", verbose=0)
    train(**options)
    before = sorted(os.listdir(tmp_path / "checkpoint"))
    with pytest.raises(ValueError, match=r"num_steps: 3 -> 4.*read_n: 2 -> 3"):
        train(**{**options, "num_steps": 4, "read_n": 3})
    assert sorted(os.listdir(tmp_path / "checkpoint")) == before


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        train(preset="tiny", resume=True, output_dir=str(tmp_path / "new"), verbose=0)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("damage", ["truncate_weights", "garble_state"])
def test_corrupt_checkpoint_gives_one_line_naming_the_file(damage, tmp_path, mnist_data_dir):
    flags = ["--preset", "tiny", "--epochs", "1", "--steps-per-epoch", "1", "--jit-compile", "off"]
    output_dir = tmp_path / "run"
    train_script = load_train_script()
    assert train_script.main([*flags, "--data-dir", mnist_data_dir, "--output-dir", str(output_dir)]) == 0
    checkpoint = output_dir / "checkpoint"
    state = json.loads((checkpoint / "state.json").read_text())
    damaged = checkpoint / (state["weights"] if damage == "truncate_weights" else "state.json")
    damaged.write_bytes(damaged.read_bytes()[:100])
    status = train_script.main([*flags, "--epochs", "2", "--data-dir", mnist_data_dir, "--output-dir", str(output_dir)])
    assert status == 2
    assert damaged.read_bytes()[:100] == damaged.read_bytes()  # left as it was


def load_train_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    model = Draw.from_preset("tiny", seed=0)
    model.compile(jit_compile=False, optimizer="adam")
    checkpoint = Checkpoint(str(tmp_path / "checkpoint"))
    state = {"epoch": 0, "step": 0, "history": [], "config": {}}
    callback = CheckpointCallback(checkpoint, state, steps_per_epoch=4, every_steps=1)
    callback.start_epoch(0)
    class PoisonAfterTwoSteps(keras.callbacks.Callback):  # a weight turns NaN after step 2
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                model.c_0.assign(np.full(model.c_0.shape, np.nan, np.float32))

    images = np.zeros((40, 28, 28, 1), np.float32)
    model.fit(images, batch_size=10, epochs=1, steps_per_epoch=4, verbose=0,
              callbacks=[callback, PoisonAfterTwoSteps()])
    assert callback.diverged == (0, 3)
    saved = checkpoint.read_state()
    assert (saved["epoch"], saved["step"]) == (0, 2)  # the last good step
    reloaded = Draw.from_preset("tiny")
    reloaded.compile(jit_compile=False, optimizer="adam")
    checkpoint.restore(reloaded)
    assert all(np.all(np.isfinite(w)) for w in reloaded.get_weights())


def test_best_weights_are_those_of_the_lowest_validation_loss(tmp_path):
    model = Draw.from_preset("tiny", seed=0)
    state = {"epoch": 0, "step": 0, "history": [], "config": {}}
    callback = CheckpointCallback(Checkpoint(str(tmp_path / "checkpoint")), state, steps_per_epoch=1,
                                  best_weights=str(tmp_path / "best.weights.h5"))
    callback.set_model(model)
    weights_at = []
    for epoch, val_loss in enumerate([5.0, 3.0, 4.0]):
        model.set_weights([w + epoch for w in model.get_weights()])
        weights_at.append(model.get_weights())
        callback.on_epoch_end(epoch, {"loss": 6.0, "val_loss": val_loss})
    assert (state["best"]["epoch"], state["best"]["val_loss"]) == (1, 3.0)
    assert [row["val_loss"] for row in state["history"]] == [5.0, 3.0, 4.0]
    assert all(row["seconds"] >= 0 for row in state["history"])
    best = Draw.from_preset("tiny", seed=0)
    best.load_weights(tmp_path / "best.weights.h5")
    for loaded, expected in zip(best.get_weights(), weights_at[1]):
        np.testing.assert_array_equal(loaded, expected)
