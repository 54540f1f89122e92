"""keras_draw.run_files: a run's folder, read as train.py wrote it."""

import builtins
import errno
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_draw import Draw
from keras_draw.checkpoint import Checkpoint
from keras_draw.model_file import check_model_file
from keras_draw.run_files import RunFiles

ROOT = Path(__file__).resolve().parents[1]


def test_a_model_file_names_its_run(tmp_path):
    run = RunFiles.of_model(tmp_path / "run" / "model.keras")
    assert run.output_dir == str(tmp_path / "run")
    assert (run.config, run.recipe_changes) == (str(tmp_path / "run" / "config.json"),
                                                str(tmp_path / "run" / "recipe_changes.json"))
    checkpoint = run.latest_checkpoint()
    assert isinstance(checkpoint, Checkpoint) and checkpoint.directory == run.checkpoint


def test_the_run_gives_the_dataset_and_folders_the_flags_leave_out(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "files").mkdir()
    config = {"dataset": "binarized_mnist", "data_dir": str(tmp_path / "data"), "manual_dir": str(tmp_path / "files")}
    (tmp_path / "config.json").write_text(json.dumps({"options": config}))
    run, ran = RunFiles(str(tmp_path)), (config["dataset"], config["data_dir"], config["manual_dir"])
    assert run.data_options() == ran
    assert run.data_options(dataset="binarized_mnist") == ran
    assert run.data_options(dataset="mnist") == ("mnist", config["data_dir"], None)  # its files are another's
    assert run.data_options(data_dir="d", manual_dir="m") == ("binarized_mnist", "d", "m")
    (tmp_path / "files").rmdir()  # written relative to another folder, or gone: not used
    assert run.data_options() == ("binarized_mnist", config["data_dir"], None)
    (tmp_path / "config.json").write_text(json.dumps({"options": {"dataset": 3}}))
    assert run.data_options() == (None, None, None)
    for damaged in ("not json", "[]", json.dumps({"options": [1]})):  # the dataset was to come from it
        (tmp_path / "config.json").write_text(damaged)
        with pytest.raises(ValueError, match="config.json"):
            run.data_options()
        assert run.data_options(dataset="mnist") == ("mnist", None, None)
    (tmp_path / "config.json").unlink()
    assert run.data_options(dataset="mnist") == ("mnist", None, None)


def test_config_is_read_whole_or_refused_naming_the_file(tmp_path):
    run = RunFiles(str(tmp_path))
    assert run.read_config() is None
    config = {"options": {"dataset": "mnist"}, "model": {"num_steps": 3}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert run.read_config() == config
    for damaged in ("not json", "[]", json.dumps({"options": [1]}), json.dumps({"model": {}})):
        (tmp_path / "config.json").write_text(damaged)
        with pytest.raises(ValueError, match="config.json"):
            run.read_config()


def test_metrics_read_back_as_written(tmp_path):
    run = RunFiles(str(tmp_path))
    assert run.read_metrics() == []
    history = [{"epoch": 0, "loss": 180.25, "val_loss": 170.5}, {"epoch": 1, "loss": 0.1 + 0.2, "test_loss": 160.0}]
    run.write_metrics(history)
    assert run.read_metrics() == history  # floats exactly; a column a row lacks is left out of it


def test_recipe_changes_are_read_or_refused(tmp_path):
    run = RunFiles(str(tmp_path))
    assert run.read_recipe_changes() == []
    changes = [{"epoch": 39, "change": "--lr-patience 4", "why": "a plateau"}]
    (tmp_path / "recipe_changes.json").write_text(json.dumps(changes))
    assert run.read_recipe_changes() == changes
    for damaged in ("[{", json.dumps([{"epoch": 3}]), json.dumps({"epoch": 3})):
        (tmp_path / "recipe_changes.json").write_text(damaged)
        with pytest.raises(ValueError, match="recipe_changes.json"):
            run.read_recipe_changes()


# --- A file that may be sound but cannot be read is never called damaged ---


def deny_reading(monkeypatch, path):
    """Opening `path` raises PermissionError, as it does for a user without read access (tests run
    as root, whom chmod 000 does not stop; `test_files_without_read_permission_...` uses the real thing)."""
    real_open, denied = builtins.open, os.path.abspath(path)

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)


def assert_unreadable_not_damaged(message, path, reason="Permission denied"):
    assert f"{path} cannot be read ({reason})" in message, message
    assert len(message.splitlines()) == 1
    for misleading in ("corrupt", "delete", "not a zip", "truncated", "no config"):
        assert misleading not in message.lower(), message


def saved_checkpoint(folder, averages=False):
    model = Draw.from_preset("tiny", seed=0)
    model.compile(jit_compile=False, optimizer="adam")
    checkpoint = Checkpoint(str(folder / "checkpoint"))
    state = {"epoch": 1, "step": 0, "history": [{"epoch": 0, "loss": 1.0}], "config": {}}
    checkpoint.save(model, state, [np.zeros(3)] if averages else None)
    return model, checkpoint, checkpoint.read_state()


def test_an_unreadable_checkpoint_is_not_called_corrupt(tmp_path, monkeypatch):
    model, checkpoint, state = saved_checkpoint(tmp_path, averages=True)
    for path, read in ((checkpoint.state_path, checkpoint.read_state),
                       (os.path.join(checkpoint.directory, state["weights"]), lambda: checkpoint.restore(model)),
                       (os.path.join(checkpoint.directory, state["average"]), lambda: checkpoint.read_averages(state))):
        with monkeypatch.context() as patch:
            deny_reading(patch, path)
            with pytest.raises(ValueError) as error:
                read()
        assert_unreadable_not_damaged(str(error.value), path)
    os.remove(checkpoint.state_path)
    os.mkdir(checkpoint.state_path)  # a folder where the file should be
    assert checkpoint.exists()
    with pytest.raises(ValueError) as error:
        checkpoint.read_state()
    assert_unreadable_not_damaged(str(error.value), checkpoint.state_path, "Is a directory")


def test_a_checkpoint_folder_that_cannot_be_searched_is_not_taken_for_none(tmp_path, monkeypatch):
    """A run that took it for none would start afresh over a good checkpoint."""
    _, checkpoint, _ = saved_checkpoint(tmp_path)
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if os.path.abspath(path) == os.path.abspath(checkpoint.state_path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    with pytest.raises(ValueError) as error:
        checkpoint.exists()
    assert_unreadable_not_damaged(str(error.value), checkpoint.state_path)


def test_an_unreadable_model_file_is_not_called_damaged(tmp_path, monkeypatch):
    Draw.from_preset("tiny", seed=0).save(tmp_path / "model.keras")
    deny_reading(monkeypatch, tmp_path / "model.keras")
    with pytest.raises(ValueError) as error:
        check_model_file(str(tmp_path / "model.keras"))
    assert_unreadable_not_damaged(str(error.value), tmp_path / "model.keras")


@pytest.mark.parametrize("content, said", [
    (b"", "is an empty file"),
    (b"\n  \n", "is an empty file"),
    ('{"options": {"dataset": "mnist"}}'.encode("utf-16"), "is not UTF-8 text: byte 0xff at offset 0"),
    (b'{"options": {"dataset": "mn', "is not JSON: Unterminated string"),
])
def test_a_damaged_config_says_what_is_wrong_with_it(content, said, tmp_path):
    (tmp_path / "config.json").write_bytes(content)
    run = RunFiles(str(tmp_path))
    with pytest.raises(ValueError, match=re.escape(f"{run.config} {said}")):
        run.read_config()
    with pytest.raises(ValueError, match=re.escape(f"{run.config} {said}") + ".*give --dataset"):
        run.data_options()  # the dataset was to come from it
    assert run.data_options(dataset="mnist") == ("mnist", None, None)  # it was not needed


def test_an_unreadable_config_is_not_called_missing(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"options": {"dataset": "mnist"}}))
    deny_reading(monkeypatch, tmp_path / "config.json")
    for read in (RunFiles(str(tmp_path)).read_config, RunFiles(str(tmp_path)).data_options):
        with pytest.raises(ValueError) as error:
            read()
        assert_unreadable_not_damaged(str(error.value), tmp_path / "config.json")


@pytest.mark.parametrize("content, said", [(b"", "is an empty file"), (b"\xff\xfe{}", "is not UTF-8 text"),
                                           (None, "cannot be read (Permission denied)")])
def test_the_commands_say_why_config_json_gave_no_dataset(content, said, copy_run, monkeypatch, capsys):
    from keras_draw import evaluate, visualize

    config = copy_run / "config.json"
    if content is None:
        deny_reading(monkeypatch, config)
    else:
        config.write_bytes(content)
    for program, command in (("evaluate", evaluate.main), ("visualize", visualize.main)):
        before = sorted(p.name for p in copy_run.iterdir())
        assert command(["--model", str(copy_run / "model.keras")]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"{program}: error: {config} {said}") and error.count("\n") == 1, error
        assert "no config.json" not in error and sorted(p.name for p in copy_run.iterdir()) == before


def without_read_permission(command):
    """`command` run where chmod 000 stops reading: as root, with the capabilities that let root
    read anything dropped (setpriv); None where neither can be had."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *command]


# What loses its read permission, and the command that reads it.
UNREADABLE = {
    "state.json": ("checkpoint/state.json", "train"),
    "checkpoint weights": ("checkpoint/WEIGHTS", "train"),
    "checkpoint folder": ("checkpoint", "train"),
    "model.keras": ("model.keras", "evaluate"),
    "config.json": ("config.json", "evaluate"),
}


@pytest.mark.slow
@pytest.mark.parametrize("what", list(UNREADABLE))
def test_files_without_read_permission_are_refused_in_one_line_and_left_as_they_are(what, copy_run, mnist_data_dir):
    relative, program = UNREADABLE[what]
    state = json.loads((copy_run / "checkpoint" / "state.json").read_text())
    target = copy_run / relative.replace("WEIGHTS", state["weights"])
    before = {p: p.read_bytes() for p in copy_run.rglob("*") if p.is_file()}
    if program == "train":
        command = [sys.executable, str(ROOT / "train.py"), "--preset", "tiny", "--epochs", "3", "--steps-per-epoch",
                   "1", "--jit-compile", "off", "--data-dir", mnist_data_dir, "--output-dir", str(copy_run)]
    else:
        command = [sys.executable, "-m", "keras_draw.evaluate", "--model", str(copy_run / "model.keras")]
    command = without_read_permission(command)
    if command is None:
        pytest.skip("root, without setpriv to drop the capability to read any file")
    target.chmod(0)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    finally:
        target.chmod(0o755 if target.is_dir() else 0o644)
    error = result.stderr.strip()
    assert result.returncode == 2, error[-2000:]
    reading = target / "state.json" if what == "checkpoint folder" else target
    assert_unreadable_not_damaged(error, reading)
    assert {p: p.read_bytes() for p in copy_run.rglob("*") if p.is_file()} == before


# --- A checkpoint's save, stopped or killed half-way ---


@pytest.mark.parametrize("stop", ["KeyboardInterrupt", "Terminated"])
def test_a_save_stopped_before_its_commit_leaves_the_old_checkpoint_alone(stop, tmp_path, monkeypatch):
    """SIGTERM (train.py raises it as `Terminated`) or Ctrl-C after the new weights are written and
    before state.json names them: the new files go, the old checkpoint stays whole."""
    from keras_draw import checkpoint as checkpoint_module, console

    stop = KeyboardInterrupt if stop == "KeyboardInterrupt" else console.Terminated
    model, checkpoint, old = saved_checkpoint(tmp_path, averages=True)
    before = sorted(os.listdir(checkpoint.directory))
    real_write_json = checkpoint_module.write_json

    def stopped_at_the_commit(path, value):
        raise stop()

    monkeypatch.setattr(checkpoint_module, "write_json", stopped_at_the_commit)
    with pytest.raises(stop):
        checkpoint.save(model, {**old, "epoch": 2}, [np.ones(3)])
    assert sorted(os.listdir(checkpoint.directory)) == before
    assert checkpoint.read_state() == old
    monkeypatch.setattr(checkpoint_module, "write_json", real_write_json)


def test_files_a_killed_save_left_are_removed_by_the_next(tmp_path):
    """SIGKILL after the new weights were written, before state.json named them: an orphan."""
    model, checkpoint, old = saved_checkpoint(tmp_path, averages=True)
    for orphan in ("epoch00002-step0000000.weights.h5", "epoch00002-step0000000.average.npz"):
        (Path(checkpoint.directory) / orphan).write_bytes(b"written by a run that was killed")
    assert checkpoint.read_state() == old  # the orphans change nothing
    checkpoint.save(model, {**old, "epoch": 3}, [np.ones(3)])
    assert sorted(os.listdir(checkpoint.directory)) == ["epoch00003-step0000000.average.npz",
                                                        "epoch00003-step0000000.weights.h5", "state.json"]
