"""train.py and keras_draw.training with the classifier: on cluttered_mnist (a small build),
the same run folder, exact resumption, bad options refused, the glimpse pictures."""

import csv
import json
import signal
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import load_train_script
from keras_draw import DrawClassifier
from keras_draw.training import TrainOptions, build_model
from test_resume import epochs_in, final_weights, run_script, stderr_of, wait_for_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "cluttered_mnist", "--preset", "tiny_classifier", "--batch-size", "20", "--jit-compile", "off"]
RUN_FILES = ("model.keras", "config.json", "metrics.csv", "test_metrics.json", "best.weights.h5", "glimpses.png",
             "glimpses.gif")


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_the_cluttered_mnist_dataset_trains_the_classifier_preset_by_default():
    assert TrainOptions(dataset="cluttered_mnist").preset == "cluttered_mnist"
    assert TrainOptions().preset == "demo" and TrainOptions(dataset="cluttered_mnist", preset="demo").preset == "demo"
    model = build_model(TrainOptions(dataset="cluttered_mnist", preset="tiny_classifier", clip_norm=5.0, units=12))
    assert isinstance(model, DrawClassifier) and model.units == 12 and model.optimizer.global_clipnorm == 5.0
    assert model.loss == "sparse_categorical_crossentropy"


@pytest.mark.slow
def test_a_run_writes_its_files_metrics_and_pictures(tmp_path, cluttered_mnist_data_dir, capsys):
    output_dir = tmp_path / "run"
    status = load_train_script().main([*TINY, "--epochs", "2", "--steps-per-epoch", "3", "--log-test",
                                       "--data-dir", cluttered_mnist_data_dir, "--output-dir", str(output_dir)])
    assert status == 0
    for name in RUN_FILES:
        assert (output_dir / name).is_file(), name
    rows = read_rows(output_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "seconds"} <= set(rows[0])
    test_metrics = json.loads((output_dir / "test_metrics.json").read_text())
    assert set(test_metrics) == {"loss", "accuracy"}
    # 10 classes, a few steps: near chance, and the loss near ln 10.
    assert 0.0 <= test_metrics["accuracy"] <= 0.4 and abs(test_metrics["loss"] - np.log(10)) < 0.2
    loaded = keras.saving.load_model(output_dir / "model.keras")
    assert isinstance(loaded, DrawClassifier) and loaded.num_steps == 2
    config = json.loads((output_dir / "config.json").read_text())
    assert config["model"]["read_n"] == 3 and config["options"]["preset"] == "tiny_classifier"
    # glimpses.png: 4 rows (images) of T = 2 columns (glimpses); glimpses.gif: one frame per glimpse.
    strip = np.asarray(Image.open(output_dir / "glimpses.png"))
    assert strip.shape[1] > strip.shape[0] / 4 and np.any(np.all(strip == (0, 255, 0), axis=-1))  # green boxes
    assert Image.open(output_dir / "glimpses.gif").n_frames == 2
    lines = capsys.readouterr().out.strip().splitlines()[-3:]
    assert lines[0] == (f"Test error: {100 * (1 - test_metrics['accuracy']):.2f} % (cross-entropy "
                        f"{test_metrics['loss']:.4f}; the paper's Table 1: 3.36 % for 8 glimpses).")
    assert lines[1].startswith(f"Written to {output_dir}/: glimpses.png")


@pytest.mark.slow
def test_a_killed_run_resumes_mid_epoch_to_the_weights_and_metrics_of_an_uninterrupted_run(
        tmp_path, cluttered_mnist_data_dir):
    run = [*TINY, "--epochs", "3", "--steps-per-epoch", "4", "--checkpoint-every", "1", "--deterministic",
           "--seed", "5", "--verbose", "0"]
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    process = run_script(run, killed, cluttered_mnist_data_dir)
    state = wait_for_checkpoint(killed, process, epoch=1, step=2)  # mid-way through epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.keras").exists()  # it really died before the end
    assert state["noise_state"] == [] and len(state["trackers"]) == 2  # the loss's and the accuracy's sums
    resumed = run_script(run, killed, cluttered_mnist_data_dir)
    uninterrupted = run_script(run, straight, cluttered_mnist_data_dir)
    for p in (resumed, uninterrupted):
        assert p.wait(timeout=300) == 0, stderr_of(p)[-2000:]
    assert epochs_in(killed) == [0, 1, 2] == epochs_in(straight)
    for a, b in zip(final_weights(killed), final_weights(straight), strict=True):
        np.testing.assert_array_equal(a, b)
    killed_rows, straight_rows = read_rows(killed / "metrics.csv"), read_rows(straight / "metrics.csv")
    for row in killed_rows + straight_rows:
        row.pop("seconds")
    assert killed_rows == straight_rows  # the resumed epoch's loss and accuracy include its first steps


BAD_VALUES = [
    (["--dataset", "mnist", "--preset", "cluttered_mnist"], "it trains on a labelled dataset (cluttered_mnist). "
                                                           "Received: dataset='mnist'"),
    (["--dataset", "cluttered_mnist", "--latent-dim", "8"], "`latent_dim` is not an option of the classifier"),
    (["--dataset", "cluttered_mnist", "--write-n", "3"], "`write_n` is not an option of the classifier"),
    (["--dataset", "cluttered_mnist", "--no-attention"], "`no_attention` is not an option of the classifier"),
    (["--dataset", "cluttered_mnist", "--model-base-path", "x"],
     "`model_base_path` is not an option of the classifier"),
    (["--dataset", "cluttered_mnist", "--precision", "mixed_bfloat16"], "trains in float32"),
    (["--dataset", "cluttered_mnist", "--read-n", "1"], "read_n=1"),
    (["--dataset", "cluttered_mnist", "--units", "0"], "units=0"),
]


@pytest.mark.parametrize("flags, message", BAD_VALUES)
def test_bad_options_exit_2_before_writing(flags, message, tmp_path, capsys):
    output_dir = tmp_path / "never"
    status = load_train_script().main([*flags, "--output-dir", str(output_dir)])
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert message in error and len(error.splitlines()) == 1
    assert not output_dir.exists()
