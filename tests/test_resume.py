"""Interrupted training resumes exactly; bad checkpoints and diverging runs stop cleanly."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import TINY_RUN, load_train_script
from keras_draw import Draw, files
from keras_draw.checkpoint import Checkpoint, CheckpointCallback
from keras_draw.training import train

pytestmark = pytest.mark.slow  # subprocesses and whole runs: the slow tier

ROOT = Path(__file__).resolve().parents[1]
# 3 epochs of 4 steps, a checkpoint after every step, deterministic ops.
RUN = ["--preset", "tiny", "--epochs", "3", "--steps-per-epoch", "4", "--batch-size", "100",
       "--checkpoint-every", "1", "--deterministic", "--seed", "5", "--jit-compile", "off"]


def default_ctrl_c():
    """Ctrl-C's default action, as in a terminal: a background job (`pytest &`) hands its children
    SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_script(flags, output_dir, data_dir, **kwargs):
    command = [sys.executable, str(ROOT / "train.py"), *flags, "--data-dir", data_dir,
               "--output-dir", str(output_dir)]
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe, which would stop the run once full
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True,
                               preexec_fn=default_ctrl_c, **kwargs)
    process.log = log
    return process


def stderr_of(process):
    """What a `run_script` process has written to stderr so far."""
    process.log.seek(0)
    return process.log.read()


def final_weights(output_dir):
    return keras.saving.load_model(output_dir / "model.keras", compile=False).get_weights()


def epochs_in(output_dir):
    with open(output_dir / "metrics.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def wait_for_checkpoint(output_dir, process, epoch, step, timeout=600):
    """Polls state.json until the run has passed (epoch, step). The timeout is generous: on a
    loaded machine, starting TensorFlow and compiling the first steps alone can take minutes."""
    state_path = output_dir / "checkpoint" / "state.json"
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if state_path.exists():
            state = json.loads(state_path.read_text())
            if (state["epoch"], state["step"]) >= (epoch, step):
                return state
        time.sleep(0.05)
    if process.poll() is not None:
        raise AssertionError(f"the run ended (status {process.returncode}) before a checkpoint past epoch {epoch}, "
                             f"step {step}: {stderr_of(process)[-2000:]}")
    raise AssertionError(f"no checkpoint past epoch {epoch}, step {step} within {timeout} s")


def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, mnist_data_dir):
    """Also: more epochs continue a finished run, as if it had never stopped."""
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    process = run_script(RUN, killed, mnist_data_dir)
    state = wait_for_checkpoint(killed, process, epoch=1, step=2)  # mid-way through epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.keras").exists()  # it really died before the end
    resumed = run_script(RUN, killed, mnist_data_dir)
    two_epochs = run_script([*RUN, "--epochs", "2"], straight, mnist_data_dir)  # then continued to 3
    for p in (resumed, two_epochs):
        assert p.wait(timeout=300) == 0, stderr_of(p)[-2000:]
    assert epochs_in(straight) == [0, 1]
    continued = run_script(RUN, straight, mnist_data_dir)
    assert continued.wait(timeout=300) == 0, stderr_of(continued)[-2000:]
    assert epochs_in(killed) == [0, 1, 2] == epochs_in(straight)  # no gap, no duplicate
    for a, b in zip(final_weights(killed), final_weights(straight)):
        np.testing.assert_array_equal(a, b)
    with open(killed / "metrics.csv") as f, open(straight / "metrics.csv") as g:
        killed_rows, straight_rows = list(csv.DictReader(f)), list(csv.DictReader(g))
    for row in killed_rows + straight_rows:  # wall time differs; it counts the time before the kill
        assert float(row.pop("seconds")) > 0
    assert killed_rows == straight_rows  # the resumed epoch's means include its first steps
    print(f"killed at epoch {state['epoch']}, step {state['step']}")


def test_an_interrupted_run_says_in_one_line_what_it_kept_and_resumes(tmp_path, mnist_data_dir):
    """Ctrl-C in epoch 1, SIGTERM in the resumed run's epoch 2, then a run to the end."""
    output_dir = tmp_path / "run"
    for stop, epoch, said in ((signal.SIGINT, 0, "interrupted"), (signal.SIGTERM, 1, "terminated (SIGTERM)")):
        process = run_script(RUN, output_dir, mnist_data_dir)
        wait_for_checkpoint(output_dir, process, epoch=epoch, step=2)
        process.send_signal(stop)
        assert process.wait(timeout=60) == 128 + stop  # 130 and 143: the shell's convention
        stderr = stderr_of(process)
        state = json.loads((output_dir / "checkpoint" / "state.json").read_text())
        kept = f"its checkpoint at epoch {state['epoch'] + 1}, step {state['step']}"
        if state["step"] == 0:
            kept = f"its checkpoint after epoch {state['epoch']}"
        assert stderr.strip().splitlines() == [
            f"train.py: {said}; {kept} is kept in {output_dir / 'checkpoint'}: "
            "rerun the same command to go on from there."]
        assert not list(output_dir.rglob(".partial-*"))
    resumed = run_script(RUN, output_dir, mnist_data_dir)
    assert resumed.wait(timeout=300) == 0, stderr_of(resumed)[-2000:]
    assert epochs_in(output_dir) == [0, 1, 2]


def test_a_run_that_finishes_while_a_second_starts_is_not_rolled_back(copy_run, tmp_path, mnist_data_dir,
                                                                     monkeypatch, capsys):
    """The first run holds the folder at epoch 2 and finishes at epoch 4 while the second, asked
    for 3 epochs, loads its data (a tfds build of a new data dir takes half a minute): the second
    must not resume from epoch 2 and overwrite the epoch-4 checkpoint with its epoch 3."""
    from keras_draw import training

    finished = Path(shutil.copytree(copy_run, tmp_path / "finished"))
    train(**{**TINY_RUN, "epochs": 4}, data_dir=mnist_data_dir, output_dir=str(finished), verbose=0)
    first_run = files.exclusive_folder(str(copy_run))
    first_run.__enter__()

    def first_run_finishes():
        shutil.rmtree(copy_run / "checkpoint")
        shutil.copytree(finished, copy_run, dirs_exist_ok=True)
        first_run.__exit__(None, None, None)

    real_load = training.datasets.load
    def load(*args, **kwargs):
        first_run_finishes()
        return real_load(*args, **kwargs)

    monkeypatch.setattr(training.datasets, "load", load)
    flags = ["--preset", "tiny", "--epochs", "3", "--steps-per-epoch", "1", "--jit-compile", "off"]
    try:
        status = load_train_script().main([*flags, "--data-dir", mnist_data_dir, "--output-dir", str(copy_run)])
    finally:
        if first_run.gen.gi_frame is not None:  # the second run was refused before loading: the first ends now
            first_run_finishes()
    error = capsys.readouterr().err.strip()
    assert status == 2 and "in use by another training run" in error and len(error.splitlines()) == 1
    state = json.loads((copy_run / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (4, 0)
    assert epochs_in(copy_run) == [0, 1, 2, 3]
    assert (copy_run / "model.keras").read_bytes() == (finished / "model.keras").read_bytes()


def test_another_configuration_is_refused_naming_the_differences(copy_run, mnist_data_dir):
    before = sorted(os.listdir(copy_run / "checkpoint"))
    with pytest.raises(ValueError, match=r"num_steps: 3 -> 4.*read_n: 2 -> 3") as refusal:
        train(**TINY_RUN, num_steps=4, read_n=3, data_dir=mnist_data_dir, output_dir=str(copy_run), verbose=0)
    assert "delete" not in str(refusal.value)  # a sound checkpoint, of another run
    assert sorted(os.listdir(copy_run / "checkpoint")) == before
    # It names a folder to pass instead: the first of RUN-2, RUN-3, ... that does not exist.
    (copy_run.parent / f"{copy_run.name}-2").mkdir()
    assert f"pass another output directory (--output-dir {copy_run}-2)" in str(refusal.value)
    with pytest.raises(ValueError, match=re.escape(f"(--output-dir {copy_run}-3)")):
        train(**TINY_RUN, num_steps=4, data_dir=mnist_data_dir, output_dir=str(copy_run), verbose=0)


def test_a_float32_checkpoint_is_refused_under_mixed_float16_rather_than_losing_adams_moments(copy_run,
                                                                                               mnist_data_dir):
    before = {p.name: p.read_bytes() for p in (copy_run / "checkpoint").iterdir()}
    with pytest.raises(ValueError, match=r"resume with the checkpoint's precision.*Received: precision='mixed_float16'"):
        train(**{**TINY_RUN, "epochs": 3}, precision="mixed_float16", data_dir=mnist_data_dir,
              output_dir=str(copy_run), verbose=0)
    assert {p.name: p.read_bytes() for p in (copy_run / "checkpoint").iterdir()} == before


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        train(preset="tiny", resume=True, output_dir=str(tmp_path / "new"), verbose=0)
    assert not (tmp_path / "new").exists()


def set_entry(key, value):
    return lambda state: json.dumps({**state, key: value})


def without(key):
    return lambda state: json.dumps({k: v for k, v in state.items() if k != key})


# Ways a checkpoint gets damaged: the file, and its new bytes from the old (or its text from the state).
DAMAGE = {
    "truncated weights": ("weights", lambda data: data[:100]),
    "garbled state": ("state.json", lambda data: data[:100]),
    "state not an object": ("state.json", lambda data: b"[1, 2]"),
    "history a string": ("state", set_entry("history", "epochs")),
    "step beyond the epoch": ("state", set_entry("step", 999)),
    "negative epoch": ("state", set_entry("epoch", -1)),
    "epoch a string": ("state", set_entry("epoch", "2")),
    "no noise state": ("state", without("noise_state")),
    "weights outside the folder": ("state", set_entry("weights", "../../model.keras")),
    "schedule a string": ("state", set_entry("schedule", "1e-3 from epoch 1")),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_refused_in_one_line_naming_the_file(damage, copy_run, mnist_data_dir, capsys):
    checkpoint = copy_run / "checkpoint"
    state = json.loads((checkpoint / "state.json").read_text())
    target, change = DAMAGE[damage]
    damaged = checkpoint / (state["weights"] if target == "weights" else "state.json")
    if target == "state":
        damaged.write_text(change(state))
    else:
        damaged.write_bytes(change(damaged.read_bytes()))
    before = {p.name: p.read_bytes() for p in copy_run.rglob("*") if p.is_file()}
    flags = ["--preset", "tiny", "--epochs", "3", "--steps-per-epoch", "1", "--jit-compile", "off"]
    status = load_train_script().main([*flags, "--data-dir", mnist_data_dir, "--output-dir", str(copy_run)])
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert len(error.splitlines()) == 1 and str(damaged) in error and "corrupt" in error, error
    assert {p.name: p.read_bytes() for p in copy_run.rglob("*") if p.is_file()} == before  # left as it was


def test_a_full_disk_stops_in_one_line_keeping_the_last_checkpoint(copy_run, mnist_data_dir, monkeypatch, capsys):
    """The disk is full when the resumed run's third epoch ends: neither of its weights files fits."""
    usage = shutil.disk_usage(copy_run)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    flags = ["--preset", "tiny", "--epochs", "4", "--steps-per-epoch", "1", "--jit-compile", "off"]
    train_script = load_train_script()
    status = train_script.main([*flags, "--data-dir", mnist_data_dir, "--output-dir", str(copy_run)])
    error = capsys.readouterr().err.strip()
    assert status == 1 and train_script._write_failed  # so that its __main__ skips HDF5's exit hooks
    assert len(error.splitlines()) == 1
    assert re.fullmatch(
        rf"train.py: error: could not write {re.escape(str(copy_run))}/\S+\.weights\.h5: No space left on device "
        rf"\(0\.0 MiB free, [0-9.]+ MiB needed\); its checkpoint after epoch 2 is kept in "
        rf"{re.escape(str(copy_run / 'checkpoint'))}: free some space and rerun the same command to go on from there\.",
        error), error
    state = json.loads((copy_run / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (2, 0)
    assert not list(copy_run.rglob(".partial-*"))
    monkeypatch.undo()  # space freed: the run goes on from its checkpoint
    assert train_script.main([*flags, "--data-dir", mnist_data_dir, "--output-dir", str(copy_run)]) == 0
    assert epochs_in(copy_run) == [0, 1, 2, 3]


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
