"""Publishing a run (scripts/publish.py) and loading weights by name (keras_draw.pretrained)."""

import json
import runpy
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from keras_draw import Draw, evaluate, presets, pretrained
from keras_draw.training import TrainOptions, train

# A maintainer's script, outside the package: its functions, loaded from the file.
script = SimpleNamespace(**runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "publish.py")))
command_line, main, publish = script.command_line, script.main, script.publish

RECIPE_CHANGES = [{"epoch": 2, "change": "--lr-patience 4", "why": "a plateau"}]

pytestmark = pytest.mark.slow  # subprocesses and whole runs: the slow tier


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_run, mnist_data_dir):
    run_dir = Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("run") / "run"))  # 2 epochs of the tiny preset
    root = tmp_path_factory.mktemp("root")
    (run_dir / "recipe_changes.json").write_text(json.dumps(RECIPE_CHANGES))
    summary = publish(str(run_dir), data_dir=mnist_data_dir, importance_samples=2, importance_images=10,
                      paper_figure=80.97, root=str(root), keep_checkpoint=True, max_images=1000)
    return run_dir, root, summary


def test_publish_ships_the_weights_of_the_best_validation_epoch(published):
    run_dir, root, summary = published
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    val_losses = [row["val_loss"] for row in state["history"]]
    assert summary["selected_epoch"] == int(np.argmin(val_losses)) + 1
    entry = json.loads((root / "keras_draw" / "weights" / "index.json").read_text())["tiny"]["mnist"]
    path = root / "keras_draw" / "weights" / entry["file"]
    assert entry["sha256"] == pretrained.sha256(path)
    shipped, best = Draw.from_preset("tiny", weights=str(path)), Draw.from_preset("tiny")
    best.load_weights(run_dir / "best.weights.h5")
    for a, b in zip(shipped.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert summary["test_images"] == 1000 and summary["importance_weighted"]["num_images"] == 10
    assert summary["importance_weighted"]["negative_log_likelihood"] <= summary["importance_weighted"]["negative_elbo"] + 1.0
    assert len((root / "results" / "mnist-tiny" / "metrics.csv").read_text().splitlines()) == 1 + 2
    with Image.open(root / "results" / "mnist-tiny" / "learning_curves.png") as picture:
        assert picture.size == (700, 450)
    assert summary["recipe_changes"] == RECIPE_CHANGES
    assert json.loads((root / "results" / "mnist-tiny" / "recipe_changes.json").read_text()) == RECIPE_CHANGES
    for name in ("samples.png", "reconstructions.png", "drawing.gif", "drawing_steps.png", "config.json",
                 "checkpoint/state.json"):
        assert (root / "results" / "mnist-tiny" / name).is_file(), name


def test_the_recorded_reference_figure_is_reproduced_from_the_shipped_files(published):
    _, root, summary = published
    reference = np.load(root / "tests" / "data" / "mnist-test-first500.npz")
    images = np.unpackbits(reference["bits"])[: np.prod(reference["shape"])].reshape(reference["shape"])
    assert images.shape == (500, 28, 28, 1) and set(np.unique(images)) <= {0, 1}
    entry = json.loads((root / "keras_draw" / "weights" / "index.json").read_text())["tiny"]["mnist"]
    model = Draw.from_preset("tiny", weights=str(root / "keras_draw" / "weights" / entry["file"]))
    figure = evaluate.evaluate(model, images.astype("float32"), importance_samples=0, seed=int(reference["seed"]))
    assert figure["negative_elbo"] == pytest.approx(entry["first_500_test_images_negative_elbo"], abs=1e-3)
    assert figure["negative_elbo"] == pytest.approx(summary["first_500_test_images_negative_elbo"], abs=1e-3)


def test_publishing_a_second_preset_keeps_the_first_ones_weights_and_reference(published, mnist_data_dir, tmp_path,
                                                                             monkeypatch):
    # Two presets trained on one dataset share the reference images but not the reference figure.
    _, root, _ = published
    index_path = root / "keras_draw" / "weights" / "index.json"
    before = json.loads(index_path.read_text())["tiny"]["mnist"]
    monkeypatch.setitem(presets.PRESETS, "tiny_twin", {**presets.PRESETS["tiny"], "write_n": 4})
    twin_dir = tmp_path / "twin"
    train(preset="tiny_twin", epochs=1, steps_per_epoch=1, data_dir=mnist_data_dir,
          output_dir=str(twin_dir), jit_compile="off", verbose=0)
    publish(str(twin_dir), data_dir=mnist_data_dir, importance_samples=2, importance_images=2,
            root=str(root), max_images=100)
    index = json.loads(index_path.read_text())
    assert index["tiny"]["mnist"] == before
    twin = index["tiny_twin"]["mnist"]
    assert twin["file"] != before["file"] and (root / "keras_draw" / "weights" / before["file"]).is_file()
    assert twin["first_500_test_images_negative_elbo"] != before["first_500_test_images_negative_elbo"]


def test_command_line_names_only_what_differs_from_the_defaults():
    options = TrainOptions(preset="mnist", dataset="binarized_mnist", epochs=300, log_test=True,
                           manual_dir="/data", output_dir="runs/x")
    assert command_line(options) == "python train.py --dataset binarized_mnist --epochs 300 --log-test --manual-dir DIR"
    assert command_line(TrainOptions(preset="tiny")) == "python train.py --preset tiny"
    assert command_line(TrainOptions(dataset="svhn", model_base_path="serving/draw")) == "python train.py --dataset svhn"


def test_unknown_weights_name_lists_what_is_shipped():
    with pytest.raises(ValueError, match="No shipped weights for preset 'mnist' trained on 'svhn'"):
        Draw.from_preset("mnist", weights="svhn")
    with pytest.raises(ValueError, match="Weights file not found"):
        Draw.from_preset("tiny", weights="missing.weights.h5")


def test_corrupt_shipped_weights_are_refused(tmp_path, monkeypatch):
    (tmp_path / "tiny-mnist.weights.h5").write_bytes(b"not hdf5")
    (tmp_path / "index.json").write_text(json.dumps(
        {"tiny": {"mnist": {"file": "tiny-mnist.weights.h5", "sha256": "0" * 64}}}))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(pretrained, "INDEX", str(tmp_path / "index.json"))
    with pytest.raises(ValueError, match="missing or corrupt"):
        Draw.from_preset("tiny", weights="mnist")


@pytest.mark.parametrize("argv, message", [
    (["no/such/run"], "No such run folder. Received: 'no/such/run'"),
    (["RUN"], "is not the folder of a training run: no config.json, or no checkpoint/state.json"),
    (["RUN", "--importance-samples", "-1"], "--importance-samples must be a non-negative integer"),
    (["RUN", "--importance-images", "0"], "--importance-images must be a positive integer. Received: --importance-images=0"),
    (["RUN", "--paper-figure", "nan"], "--paper-figure must be a finite number"),
])
def test_command_line_refuses_values_no_user_can_mean_before_evaluating(argv, message, tmp_path, capsys):
    argv = [str(tmp_path) if a == "RUN" else a for a in argv]  # an empty folder: never read
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("publish: error: ") and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_verbose_it_does_not_know_exits_2_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--verbose", "loud"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "argument --verbose: invalid choice: 'loud'" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_record_of_recipe_changes_is_refused_before_anything_is_written(copy_run, tmp_path):
    (copy_run / "recipe_changes.json").write_text(json.dumps([{"epoch": 3}]))
    with pytest.raises(ValueError, match=r"recipe_changes.json must be a list of \{"):
        publish(str(copy_run), root=str(tmp_path / "root"))
    assert not (tmp_path / "root").exists()


def test_publishing_into_a_checkout_other_than_the_imported_package_is_refused(tmp_path, monkeypatch, capsys):
    """The weights go into the repository beside the script: keras_draw must be that checkout's."""
    monkeypatch.setitem(main.__globals__, "ROOT", str(tmp_path / "other_checkout"))
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("publish: error: keras_draw is imported from ") and "pip install -e ." in err, err
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []
