"""keras_draw.run_files: a run's folder, read as train.py wrote it."""

import json

import pytest

from keras_draw.checkpoint import Checkpoint
from keras_draw.run_files import RunFiles


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
    for damaged in ("not json", "[]", json.dumps({"options": [1]}), json.dumps({"options": {"dataset": 3}})):
        (tmp_path / "config.json").write_text(damaged)
        assert run.data_options() == (None, None, None)
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
