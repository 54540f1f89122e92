"""Tests for keras_draw.datasets: offline, against the bundled MNIST and tfds mock data."""

import re
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_draw import datasets, offline


def first_batches(ds, count=3):
    """The first `count` batches of `ds`, concatenated into one numpy array."""
    return np.concatenate([batch.numpy() for batch in ds.take(count)])


def num_images(ds):
    return sum(int(batch.shape[0]) for batch in ds)


# --- mnist: dynamic binarization of the bundled MNIST files ---


def test_mnist_element_spec(mnist_data_dir):
    for ds in datasets.load("mnist", data_dir=mnist_data_dir):
        assert ds.element_spec == tf.TensorSpec((None, 28, 28, 1), tf.float32)
    assert datasets.image_shape("mnist") == (28, 28, 1)


def test_mnist_split_sizes(mnist_data_dir):
    train, validation, test = datasets.load("mnist", 1000, data_dir=mnist_data_dir)
    assert train.cardinality() == 50  # 50,000 images
    assert num_images(validation) == 10_000
    assert num_images(test) == 10_000


def test_mnist_validation_is_tfds_train_from_50000_on(mnist_data_dir):
    _, validation, _ = datasets.load("mnist", 1, data_dir=mnist_data_dir, greyscale=True)
    raw = tfds.builder("mnist", data_dir=mnist_data_dir).as_dataset(split="train[50000:50001]")
    expected = next(iter(raw))["image"].numpy() / 255.0
    np.testing.assert_allclose(next(iter(validation))[0], expected, atol=1e-7)


def test_mnist_train_is_binary_and_fresh_every_epoch(mnist_data_dir):
    # shuffle_buffer=1 keeps the order, so any difference comes from the binarization.
    train, _, _ = datasets.load("mnist", data_dir=mnist_data_dir, seed=7, shuffle_buffer=1)
    epoch_1, epoch_2 = first_batches(train), first_batches(train)
    assert set(np.unique(epoch_1)) == {0.0, 1.0}
    assert not np.array_equal(epoch_1, epoch_2)
    # Pixels that are 0 in the greyscale image stay 0, so the epochs agree on most of them.
    assert 0.0 < np.mean(epoch_1 != epoch_2) < 0.2


def test_mnist_same_seed_repeats_epochs_in_a_fresh_pipeline(mnist_data_dir):
    options = dict(data_dir=mnist_data_dir, seed=7, shuffle_buffer=1000)  # a small buffer is quick
    train, _, _ = datasets.load("mnist", **options)
    epoch_1, epoch_2 = first_batches(train), first_batches(train)
    fresh, _, _ = datasets.load("mnist", **options)
    np.testing.assert_array_equal(first_batches(fresh), epoch_1)
    np.testing.assert_array_equal(first_batches(fresh), epoch_2)


def test_mnist_binarization_is_bernoulli_of_the_intensity(mnist_data_dir):
    options = dict(data_dir=mnist_data_dir, shuffle_buffer=1)  # both in the original order
    grey, _, _ = datasets.load("mnist", greyscale=True, **options)
    binary, _, _ = datasets.load("mnist", seed=1, **options)
    grey = first_batches(grey)
    binary = np.stack([first_batches(binary) for _ in range(4)])  # 4 epochs
    assert np.all(binary[:, grey == 0.0] == 0.0)
    assert np.all(binary[:, grey == 1.0] == 1.0)
    np.testing.assert_allclose(binary.mean(), grey.mean(), rtol=0.02)


def test_mnist_evaluation_splits_are_binarized_once(mnist_data_dir):
    _, validation, test = datasets.load("mnist", data_dir=mnist_data_dir)
    for ds in (validation, test):
        once = first_batches(ds)
        assert set(np.unique(once)) == {0.0, 1.0}
        np.testing.assert_array_equal(first_batches(ds), once)
    _, fresh_validation, _ = datasets.load("mnist", data_dir=mnist_data_dir, seed=123)
    np.testing.assert_array_equal(first_batches(fresh_validation), first_batches(validation))


def test_mnist_greyscale_is_scaled_once(mnist_data_dir):
    for ds in datasets.load("mnist", data_dir=mnist_data_dir, greyscale=True, shuffle_buffer=100):
        images = first_batches(ds)
        assert images.min() == 0.0 and images.max() == 1.0  # not 1/255: divided exactly once
        assert len(np.unique(images)) > 2


# --- binarized_mnist: the paper's fixed binarization ---


def test_binarized_mnist_splits_and_values(binarized_mnist_data_dir):
    splits = datasets.load("binarized_mnist", 1000, data_dir=binarized_mnist_data_dir)
    assert [ds.cardinality() for ds in splits] == [50, 10, 10]
    for ds in splits:
        assert ds.element_spec == tf.TensorSpec((None, 28, 28, 1), tf.float32)
        assert set(np.unique(first_batches(ds, 1))) == {0.0, 1.0}  # tfds stores 0/1, not 0/255


def read_amat(path):
    """Rows of a binarized MNIST .amat file: 784 digits 0/1 separated by spaces per line."""
    digits = np.frombuffer(path.read_bytes(), dtype=np.uint8)[::2]  # drop spaces and newlines
    return (digits - ord("0")).reshape(-1, 28, 28, 1).astype(np.float32)


def sorted_rows(images):
    rows = images.reshape(len(images), -1)  # (images, pixels)
    return rows[np.lexsort(rows.T)]


def test_binarized_mnist_matches_the_amat_file(binarized_mnist_data_dir, binarized_mnist_files):
    _, _, test = datasets.load("binarized_mnist", 1000, data_dir=binarized_mnist_data_dir)
    images = np.concatenate([batch.numpy() for batch in test])
    expected = read_amat(binarized_mnist_files / "binarized_mnist_test.amat")
    # tfds reorders examples when it builds a data set: compare the images in sorted order.
    np.testing.assert_array_equal(sorted_rows(images), sorted_rows(expected))


# --- svhn and cifar10: tfds mock data ---


def uint8_ramp(num_images, shape=(32, 32, 3)):
    """Images whose pixels run through 0, 1, ..., 255 again and again."""
    return (np.arange(num_images * np.prod(shape)) % 256).astype(np.uint8).reshape(-1, *shape)


@pytest.mark.parametrize("name", ["svhn", "cifar10"])
def test_colour_datasets_are_scaled_once(name, tmp_path, monkeypatch):
    monkeypatch.setattr(offline, "unreachable", lambda url: None)  # as online: mock_data downloads nothing

    def fake_split(*args, **kwargs):  # replaces the builder's reading of a split
        return tf.data.Dataset.from_tensor_slices({"image": uint8_ramp(10)})

    with tfds.testing.mock_data(as_dataset_fn=fake_split):
        splits = datasets.load(name, 4, data_dir=tmp_path, seed=0)
    for ds in splits:
        assert ds.element_spec == tf.TensorSpec((None, 32, 32, 3), tf.float32)
        assert [int(batch.shape[0]) for batch in ds] == [4, 4, 2]  # the partial batch is kept
    _, validation, test = splits
    for ds in (validation, test):  # not shuffled: pixel for pixel the ramp, divided by 255 once
        np.testing.assert_allclose(first_batches(ds), uint8_ramp(10) / 255.0, atol=1e-7)
    train = first_batches(splits[0])
    assert train.min() == 0.0 and train.max() == 1.0  # 255 -> 1.0, not 1/255
    assert datasets.image_shape(name) == (32, 32, 3)


# --- errors ---


def test_unknown_name_lists_supported_datasets():
    message = "Unknown dataset: 'foo'. Supported: mnist, binarized_mnist, svhn, cifar10, cluttered_mnist, two_digit_mnist."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        datasets.load("foo")
    with pytest.raises(ValueError, match="Unknown dataset"):
        datasets.image_shape("foo")


def test_non_positive_batch_size():
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        datasets.load("mnist", batch_size=0)


@pytest.mark.parametrize("argument", ["data_dir", "manual_dir"])
def test_missing_directory(argument, tmp_path):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(ValueError, match=f"{argument}=.*does_not_exist"):
        datasets.load("mnist", **{argument: missing})


def test_unavailable_dataset_says_what_to_download(tmp_path):
    data_dir, manual_dir = tmp_path / "tfds", tmp_path / "manual"
    data_dir.mkdir()
    manual_dir.mkdir()
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.load("binarized_mnist", data_dir=data_dir, manual_dir=manual_dir)
    message = str(info.value)
    assert "\n" not in message
    assert "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/" in message
    assert "binarized_mnist_test.amat" in message and "--manual-dir" in message


def test_wrong_file_is_reported_as_unavailable(tmp_path):
    (tmp_path / "tfds").mkdir()
    for name in ("train", "valid", "test"):
        (tmp_path / f"binarized_mnist_{name}.amat").write_text("0 1\n")
    with pytest.raises(datasets.DatasetUnavailableError, match="NonMatchingChecksumError") as info:
        datasets.load("binarized_mnist", data_dir=tmp_path / "tfds", manual_dir=tmp_path)
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is not None


def test_preparing_a_dataset_prints_two_lines_and_no_progress_bars(mnist_build, capfd):
    data_dir, out, err = mnist_build  # what building mnist into a fresh folder printed
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith("Preparing dataset mnist from ") and "keras_draw/data/mnist" in lines[0]
    assert re.fullmatch(r"Dataset mnist prepared in \d+ s\.", lines[1])
    assert err == ""  # tfds's progress bars ("Generating splits...") and absl's warnings
    datasets.load("mnist", data_dir=data_dir)  # prepared: nothing more to say
    assert capfd.readouterr() == ("", "")


def test_a_failed_preparation_says_one_line_before_its_error(tmp_path, capfd):
    (tmp_path / "tfds").mkdir()
    for name in ("train", "valid", "test"):
        (tmp_path / f"binarized_mnist_{name}.amat").write_text("0 1\n")
    with pytest.raises(datasets.DatasetUnavailableError):
        datasets.load("binarized_mnist", data_dir=tmp_path / "tfds", manual_dir=tmp_path)
    out, err = capfd.readouterr()
    assert out.startswith("Preparing dataset binarized_mnist from ") and out.count("\n") == 1, out
    assert err == ""


def small_splits(mnist_data_dir, count=500, **options):
    """mnist's splits with only the first `count` training images (epochs of 100-image batches)."""
    splits = datasets.load("mnist", 100, data_dir=mnist_data_dir, **options)
    splits.images = splits.images.take(count)
    splits.train = splits._epochs_from(options.get("initial_epoch", 0))
    return splits


def batches_of(ds):
    return np.concatenate([b.numpy() for b in ds])


def test_mean_image_is_the_mean_of_the_training_intensities(mnist_data_dir):
    splits = small_splits(mnist_data_dir, count=25_000)  # 10,000, 10,000 and a last batch of 5,000
    images = batches_of(splits.images.batch(1000))
    assert len(images) == 25_000 and len(np.unique(images)) > 2  # intensities, not their binarization
    np.testing.assert_allclose(splits.mean_image().numpy(), images.mean(axis=0, dtype=np.float64), atol=5e-5)  # float32 sums


def test_each_epoch_is_a_pure_function_of_seed_and_epoch_and_resumes_at_any_step(mnist_data_dir):
    splits = small_splits(mnist_data_dir, seed=0, shuffle_buffer=1000)
    first = [b.numpy() for b in splits.epoch(0)]
    assert len(first) == 5 == splits.num_batches() and all(b.shape == (100, 28, 28, 1) for b in first)
    np.testing.assert_array_equal(np.concatenate(first), batches_of(small_splits(mnist_data_dir, seed=0,
                                                                                  shuffle_buffer=1000).epoch(0)))
    np.testing.assert_array_equal(np.concatenate(first[2:]), batches_of(splits.epoch(0, first_step=2)))
    assert not np.array_equal(np.concatenate(first), batches_of(splits.epoch(1)))
    assert not np.array_equal(np.concatenate(first), batches_of(small_splits(mnist_data_dir, seed=1).epoch(0)))
    assert set(np.unique(np.concatenate(first))) == {0.0, 1.0}
    # A longer epoch is its batches, cycled (here unbinarized: each batch is binarized afresh).
    grey = small_splits(mnist_data_dir, seed=0, shuffle_buffer=1000, greyscale=True)
    whole = [b.numpy() for b in grey.epoch(0)]
    np.testing.assert_array_equal(batches_of(grey.epoch(0, steps_per_epoch=7)), np.concatenate(whole + whole[:2]))


def test_the_training_pipeline_yields_the_next_epoch_at_each_pass(mnist_data_dir):
    splits = small_splits(mnist_data_dir, seed=4, initial_epoch=3)
    assert int(splits.train.cardinality()) == 5
    train, validation, test = splits  # as `load` is used in notebooks
    assert train is splits.train and (validation, test) == (splits.validation, splits.test)
    for epoch in (3, 4):
        np.testing.assert_array_equal(batches_of(train), batches_of(splits.epoch(epoch)))


def test_fit_trains_on_the_same_epochs_as_train_py(mnist_data_dir):
    # `model.fit(train_ds, epochs=2)` sees epochs 0 and 1 of `Splits.epoch`, which train.py uses.
    splits = small_splits(mnist_data_dir, count=200, seed=2)
    seen = []

    class Recorder(keras.Model):
        def train_step(self, data):
            seen.append(data)
            return {"images": tf.shape(data)[0]}

    model = Recorder()
    model.compile(run_eagerly=True)
    model.fit(splits.train, epochs=2, verbose=0)
    expected = [b.numpy() for e in (0, 1) for b in splits.epoch(e)]
    assert len(seen) == len(expected) == 4
    for batch, want in zip(seen, expected):
        np.testing.assert_array_equal(batch.numpy(), want)


def test_each_training_epoch_binarizes_each_pixel_as_a_bernoulli_of_its_intensity(mnist_data_dir):
    splits = small_splits(mnist_data_dir, count=100, shuffle_buffer=1)
    p = batches_of(splits.images.batch(100))
    n = 60  # epochs: the same 100 images (one batch, no shuffle), sampled afresh in each
    samples = np.stack([next(iter(splits.epoch(e))).numpy() for e in range(n)])
    assert set(np.unique(samples)) == {0.0, 1.0}
    np.testing.assert_array_equal(samples[:, p == 0.0], 0.0)  # a pixel of intensity 0 is never on
    grey = (p > 0.1) & (p < 0.9)
    z = (samples.mean(axis=0)[grey] - p[grey]) / np.sqrt(p[grey] * (1 - p[grey]) / n)
    assert grey.sum() > 1000
    assert abs(z.mean()) < 0.1 and 0.85 < z.var() < 1.15  # standardised frequencies: N(0, 1)


@pytest.mark.parametrize("error", [socket.gaierror(-3, "Temporary failure in name resolution"),
                                   TimeoutError("timed out"), ConnectionRefusedError(111, "Connection refused")])
def test_offline_a_missing_dataset_fails_at_once_without_trying_the_download(tmp_path, monkeypatch, error):
    attempts = []

    def no_network(address, timeout):
        attempts.append((address, timeout))
        raise error

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", lambda *a, **k: pytest.fail("downloaded"))
    for variable in offline.PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.load("svhn", data_dir=tmp_path)
    message = str(info.value)
    assert attempts == [(("ufldl.stanford.edu", 80), offline.TIMEOUT_S)]
    assert message.startswith("Dataset 'svhn' is not prepared and could not be built: cannot ") and "\n" not in message
    assert "ufldl.stanford.edu" in message and "--manual-dir" in message
    assert "so this machine seems offline. To build it offline" in message


def test_a_reachable_server_or_a_proxy_lets_tfds_download(tmp_path, monkeypatch):
    opened = []

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: opened.append(address) or Connection())
    for variable in offline.PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert offline.unreachable("https://www.cs.toronto.edu/~kriz/") is None
    assert opened == [("www.cs.toronto.edu", 443)]
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert offline.unreachable("https://www.cs.toronto.edu/~kriz/") is None and len(opened) == 1  # not probed


@pytest.mark.slow
def test_the_package_imports_tensorflow_datasets_only_when_a_dataset_is_asked_for():
    code = ("import sys, keras_draw.training, keras_draw.evaluate, keras_draw.visualize, keras_draw.serving; "
            "assert 'tensorflow_datasets' not in sys.modules; "
            "from keras_draw import data_sources; data_sources._download_errors(); "
            "assert 'tensorflow_datasets' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
