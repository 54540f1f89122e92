"""Tests for the two_digit_mnist data set (keras_draw/builders/two_digit_mnist.py), its
pipeline, its preset, and an end-to-end `train.py --dataset two_digit_mnist`."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from conftest import ROOT, shared_folder
from keras_draw import datasets, presets
from keras_draw.builders import mnist_digits, two_digit_mnist
from keras_draw.draw import Draw
from keras_draw.train_options import TrainOptions

# A small build: the same examples 0..n-1 of each split as the full one, in seconds.
SMALL_SIZES = {"train": 300, "validation": 60, "test": 60}


@pytest.fixture(scope="session")
def two_digit_data_dir(tmp_path_factory):
    """A tfds data dir holding two_digit_mnist with `SMALL_SIZES`, built once per test run from
    the bundled MNIST files."""

    def make(folder):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(two_digit_mnist, "SPLIT_SIZES", SMALL_SIZES)
            datasets.load("two_digit_mnist", data_dir=str(folder))

    return str(shared_folder(tmp_path_factory, "tfds_two_digit_mnist", make)[0])


@pytest.fixture(scope="module")
def mnist_files():
    """{split: (digits, labels, file indices)} of the bundled MNIST."""
    return {split: mnist_digits.load_split(split) for split in two_digit_mnist.SPLIT_NUMBERS}


def stored_examples(data_dir, split):
    builder = tfds.builder("two_digit_mnist", data_dir=data_dir)
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


# --- composing an image ---


def test_overlapping_digits_add_their_intensities_and_clip_at_255():
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[0, 10:14, 10:14] = 200
    digits[1, 10:14, 10:14] = 100
    digits[2, 10:14, 10:14] = 30
    image = two_digit_mnist.compose(digits, [0, 1], [(0, 0), (2, 2)])  # squares at 10..13 and 12..15
    expected = np.zeros((60, 60), np.uint8)
    expected[10:14, 10:14] = 200
    expected[12:16, 12:16] = 100
    expected[12:14, 12:14] = 255  # 200 + 100, clipped
    np.testing.assert_array_equal(image, expected)
    # Below 255 the overlap is the sum, not the brighter of the two.
    image = two_digit_mnist.compose(digits, [1, 2], [(30, 32), (30, 32)])
    assert image.dtype == np.uint8 and image.max() == 130
    assert np.count_nonzero(image) == 16 and image[40, 42] == 130


def test_digits_at_the_far_corner_fit_wholly():
    digits = np.full((2, 28, 28), 1, np.uint8)
    image = two_digit_mnist.compose(digits, [0, 1], [(0, 0), (32, 32)])
    assert image.sum() == 2 * 28 * 28  # no overlap, nothing cut off
    assert image[59, 59] == 1 and image[0, 0] == 1 and image[28:32, :28].sum() == 0


def test_example_is_a_pure_function_of_seed_split_and_index(mnist_files):
    digits = mnist_files["validation"][0]
    image, indices, positions = two_digit_mnist.example(digits, 5, "validation")
    again = two_digit_mnist.example(digits, 5, "validation")
    np.testing.assert_array_equal(again[0], image)
    np.testing.assert_array_equal(again[1], indices)
    np.testing.assert_array_equal(again[2], positions)
    for other in (two_digit_mnist.example(digits, 6, "validation"), two_digit_mnist.example(digits, 5, "train"),
                  two_digit_mnist.example(digits, 5, "validation", seed=1)):
        assert not np.array_equal(other[1], indices) or not np.array_equal(other[2], positions)
    np.testing.assert_array_equal(image, two_digit_mnist.compose(digits, indices, positions))


def test_two_different_digits_at_uniform_positions(mnist_files):
    num_digits = len(mnist_files["test"][0])
    draws = [two_digit_mnist.draw(num_digits, np.random.default_rng([0, k])) for k in range(2000)]
    indices = np.stack([d[0] for d in draws])
    positions = np.stack([d[1] for d in draws])  # (2000, 2, 2)
    assert np.all(indices[:, 0] != indices[:, 1])
    assert indices.min() >= 0 and indices.max() < num_digits
    # Every one of the 33 places, 0..32, is drawn for rows and columns, each about 8000/33 times.
    counts = np.bincount(positions.ravel(), minlength=33)
    assert len(counts) == 33 and counts.min() > 0.7 * 8000 / 33 and counts.max() < 1.3 * 8000 / 33


# --- the built data set ---


def test_stored_images_are_their_splits_digits_at_their_positions(two_digit_data_dir, mnist_files):
    ranges = {"train": (0, 50_000), "validation": (50_000, 60_000), "test": (0, 10_000)}
    for split, (start, end) in ranges.items():
        digits, labels, _ = mnist_files[split]
        examples = stored_examples(two_digit_data_dir, split)
        assert len(examples) == SMALL_SIZES[split]
        for example in examples[:50]:
            local = example["digit_index"] - start  # in the split's own digits
            assert np.all((start <= example["digit_index"]) & (example["digit_index"] < end))
            np.testing.assert_array_equal(example["labels"], labels[local])
            np.testing.assert_array_equal(
                example["image"][..., 0], two_digit_mnist.compose(digits, local, example["position"]))


def test_the_splits_draw_on_disjoint_digits(two_digit_data_dir):
    train, validation = (np.concatenate([e["digit_index"] for e in stored_examples(two_digit_data_dir, split)])
                         for split in ("train", "validation"))
    assert train.max() < 50_000 <= validation.min()  # the test split's come from MNIST's other file


def test_a_build_holds_exactly_examples_0_to_n_minus_1(two_digit_data_dir, mnist_files):
    # tfds stores examples in an order of its own; as a set they are `example(k)` for k < n, each
    # a pure function of (seed, split, k), so every build holds the same images.
    digits = mnist_files["test"][0]
    stored = sorted(e["image"][..., 0].tobytes() for e in stored_examples(two_digit_data_dir, "test"))
    expected = sorted(two_digit_mnist.example(digits, k, "test")[0].tobytes() for k in range(SMALL_SIZES["test"]))
    assert stored == expected


def test_load_binarizes_training_images_afresh_each_epoch(two_digit_data_dir):
    train, validation, test = datasets.load("two_digit_mnist", 50, data_dir=two_digit_data_dir, seed=3,
                                            shuffle_buffer=1)  # the stored order: epochs differ by binarization only
    assert train.element_spec == tf.TensorSpec((None, 60, 60, 1), tf.float32)
    epoch_1, epoch_2 = (np.concatenate([b.numpy() for b in train]) for _ in range(2))
    assert len(epoch_1) == SMALL_SIZES["train"] and set(np.unique(epoch_1)) == {0.0, 1.0}
    assert 0.0 < np.mean(epoch_1 != epoch_2) < 0.1
    grey, _, _ = datasets.load("two_digit_mnist", 50, data_dir=two_digit_data_dir, greyscale=True, shuffle_buffer=1)
    grey = np.concatenate([b.numpy() for b in grey])
    assert grey.max() == 1.0 and len(np.unique(grey)) > 2  # scaled once
    assert np.all(epoch_1[grey == 0.0] == 0.0) and np.all(epoch_1[grey == 1.0] == 1.0)
    for ds in (validation, test):  # binarized once: the same at every pass
        once = np.concatenate([b.numpy() for b in ds])
        assert set(np.unique(once)) == {0.0, 1.0}
        np.testing.assert_array_equal(np.concatenate([b.numpy() for b in ds]), once)


# --- the preset ---


def test_train_py_picks_the_two_digit_preset_for_its_dataset():
    options = TrainOptions(dataset="two_digit_mnist")
    assert options.preset == "two_digit_mnist"
    config = options.model_config()
    assert (config["image_height"], config["image_width"], config["channels"]) == (60, 60, 1)
    paper_mnist = presets.get("mnist")
    for name in ("num_steps", "encoder_units", "decoder_units", "latent_dim", "read_n", "write_n"):
        assert config[name] == paper_mnist[name], name
    assert TrainOptions().preset == "demo" and TrainOptions(dataset="two_digit_mnist", preset="tiny").preset == "tiny"
    # Its recipe starts the windows covering the image; every other preset's from a zero bias.
    assert options.cover_windows is True and TrainOptions().cover_windows is False
    assert TrainOptions(dataset="two_digit_mnist", cover_windows=False).cover_windows is False


def test_initialize_windows_starts_the_first_read_on_the_whole_image():
    model = Draw.from_preset("tiny", image_height=60, image_width=60, seed=0)  # read 2, write 3
    before = np.asarray(model.reconstruct_sequence(np.zeros((1, 60, 60, 1), np.float32), seed=0)["read_window"])
    np.testing.assert_allclose(before[0, 0, :3], [30.5, 30.5, 59.0], rtol=1e-5)  # a zero bias: centres on the corners
    model.initialize_windows()
    sequence = model.reconstruct_sequence(np.zeros((1, 60, 60, 1), np.float32), seed=0)
    # h^dec_0 = 0, so the first read window is the bias: two cells of 30 pixels a side, σ = 15.
    np.testing.assert_allclose(np.asarray(sequence["read_window"])[0, 0], [30.5, 30.5, 30.0, 225.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(model.writer.window.dense.bias.numpy()[2:4], [np.log(100.0), np.log(20 * 2 / 59)],
                               rtol=1e-5)  # write N = 3: cells of 20, σ = 10
    no_attention = Draw.from_preset("tiny", attention=False, seed=0)
    weights = [w.copy() for w in no_attention.get_weights()]
    no_attention.initialize_windows()  # nothing to cover
    assert all(np.array_equal(a, b) for a, b in zip(weights, no_attention.get_weights()))


@pytest.mark.slow
def test_train_py_on_two_digit_mnist_end_to_end(tmp_path, two_digit_data_dir):
    output_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--dataset", "two_digit_mnist", "--num-steps", "2", "--units", "8",
         "--latent-dim", "2", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "10", "--jit-compile", "off",
         "--data-dir", two_digit_data_dir, "--output-dir", str(output_dir), "--verbose", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((output_dir / "config.json").read_text())
    assert config["options"]["preset"] == "two_digit_mnist"
    assert (config["model"]["image_height"], config["model"]["image_width"]) == (60, 60)
    assert (config["model"]["read_n"], config["model"]["write_n"]) == (2, 5)
    assert config["options"]["cover_windows"] is True
    assert np.isfinite(json.loads((output_dir / "test_metrics.json").read_text())["loss"])
    # 64 samples of 60×60 in 8 columns, 1 pixel apart, upscaled 2×
    assert Image.open(output_dir / "samples.png").size == ((8 * 61 + 1) * 2, (8 * 61 + 1) * 2)
    assert "two dynamically binarized MNIST digits on 60x60" in result.stdout
