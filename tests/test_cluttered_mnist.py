"""cluttered_mnist: one whole digit among 8 pieces of clutter, values in [0, 1], the digit's label,
the same images at every build, splits that share no digit."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import SMALL_CLUTTERED_SPLITS, build_small_cluttered_mnist
from keras_draw import data_sources, datasets
from keras_draw.builders import cluttered_mnist, mnist_digits


def raw_examples(data_dir, split):
    """The stored examples of a split, with the builder's bookkeeping (digit_index, position, ...)."""
    builder = tfds.builder("cluttered_mnist", data_dir=data_dir)
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_mnist_digits_reads_the_idx_files():
    digits, labels, indices = mnist_digits.load_split("validation")
    assert digits.shape == (10_000, 28, 28) and digits.dtype == np.uint8
    assert indices[0] == 50_000 and indices[-1] == 59_999
    # MNIST's training labels 50000-50004 (the file's own order).
    assert list(labels[:5]) == list(mnist_digits.read_idx(mnist_digits.BUNDLED_DIR / "train-labels-idx1-ubyte.gz")[50_000:50_005])
    assert [len(mnist_digits.load_split(s)[0]) for s in ("train", "test")] == [50_000, 10_000]


def test_an_example_is_one_whole_digit_and_eight_pieces_added_and_clipped():
    digits, _, _ = mnist_digits.load_split("test")
    image, (row, column), sources = cluttered_mnist.example(digits, 7, "test")
    assert image.shape == (100, 100) and image.dtype == np.uint8
    assert 0 <= row <= 72 and 0 <= column <= 72 and len(sources) == 8 and 7 not in sources
    box = image[row : row + 28, column : column + 28]
    assert np.all(box >= digits[7])  # added, then clipped at white: no stroke of the digit is dimmed
    outside = image.copy()
    outside[row : row + 28, column : column + 28] = 0
    assert 0 < np.count_nonzero(outside) <= 8 * 64  # clutter, at most 8 pieces of 8×8


def test_overlapping_pieces_add_up_and_clip_at_white():
    # Squares of 100 everywhere: a pixel outside the digit holds 100 for each piece on it, at most 255.
    squares = np.full((50, 28, 28), 100, np.uint8)
    images, positions, _ = cluttered_mnist.compose(squares, np.arange(50), np.random.default_rng(1))
    outside_values = []
    for image, (row, column) in zip(images, positions):
        assert np.all(image[row : row + 28, column : column + 28] >= 100)
        outside = image.copy()
        outside[row : row + 28, column : column + 28] = 0
        assert np.count_nonzero(outside) <= 8 * 64
        outside_values.append(outside.ravel())
    values, counts = np.unique(np.concatenate(outside_values), return_counts=True)
    assert set(values.tolist()) <= {0, 100, 200, 255} and 200 in values.tolist()  # two pieces overlap somewhere
    # Crops are drawn anywhere in their 28×28 source: on these squares every piece is whole, 64 pixels.
    assert counts[values.tolist().index(100)] > 50 * 4 * 64 // 2


def test_examples_are_a_pure_function_of_the_split_and_index():
    digits, _, _ = mnist_digits.load_split("validation")
    first = cluttered_mnist.example(digits, 3, "validation")
    again = cluttered_mnist.example(digits, 3, "validation")
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    other_split = cluttered_mnist.example(digits, 3, "train")
    assert not np.array_equal(first[0], other_split[0])


def test_loaded_images_are_floats_in_0_1_with_the_digits_label(cluttered_mnist_data_dir):
    train, validation, test = datasets.load("cluttered_mnist", 50, data_dir=cluttered_mnist_data_dir, seed=0)
    assert datasets.image_shape("cluttered_mnist") == (100, 100, 1) and datasets.has_labels("cluttered_mnist")
    for ds in (train, validation, test):
        x, y = next(iter(ds))
        assert x.shape == (50, 100, 100, 1) and x.dtype == "float32" and y.shape == (50,) and y.dtype == "int64"
        assert 0.0 <= float(np.min(x)) and float(np.max(x)) == 1.0
    # In storage order (tfds shuffles examples when it builds), each image is as composed from its digit.
    x, y = next(iter(test))
    digits, labels, _ = mnist_digits.load_split("test")
    digits = digits[: SMALL_CLUTTERED_SPLITS["test"][2]]  # the clutter is drawn from the split's digits
    for k, example in enumerate(raw_examples(cluttered_mnist_data_dir, "test[:50]")):
        index = example["digit_index"]  # the test split starts at MNIST test digit 0
        image, position, _ = cluttered_mnist.example(digits, index, "test")
        np.testing.assert_array_equal(example["image"][..., 0], image)
        np.testing.assert_array_equal(example["position"], position)
        assert y[k] == labels[index] == example["label"]
        np.testing.assert_allclose(x[k, ..., 0], image / 255.0)  # scaled once
        row, column = position
        assert np.all(x[k, row : row + 28, column : column + 28, 0] >= digits[index] / 255.0)  # the digit is there


def test_splits_share_no_digit_neither_as_digit_nor_as_clutter(cluttered_mnist_data_dir):
    for split, (file, start, end) in SMALL_CLUTTERED_SPLITS.items():
        examples = raw_examples(cluttered_mnist_data_dir, split)
        assert len(examples) == end - start
        indices = np.concatenate([[e["digit_index"] for e in examples]] + [e["clutter_index"] for e in examples])
        assert indices.min() >= start and indices.max() < end, split  # train and validation split one file
        labels = mnist_digits.read_idx(mnist_digits.BUNDLED_DIR / mnist_digits.FILES[file][1])
        assert all(e["label"] == labels[e["digit_index"]] for e in examples)


def test_two_builds_give_the_same_data_set(cluttered_mnist_data_dir, tmp_path):
    build_small_cluttered_mnist(tmp_path)
    for split in ("train[:40]", "test"):
        first, second = raw_examples(cluttered_mnist_data_dir, split), raw_examples(str(tmp_path), split)
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])
            assert a["label"] == b["label"]


def test_an_unknown_split_is_refused():
    with pytest.raises(ValueError, match="Unknown split: 'dev'"):
        mnist_digits.load_split("dev")


def test_compose_keeps_each_digit_whole_in_any_dtype_and_draws_clutter_from_the_others():
    digits, _, _ = mnist_digits.load_split("test")
    scaled = digits[:200].astype(np.float32) / 255.0
    images, positions, sources = cluttered_mnist.compose(scaled, [5, 6, 7], np.random.default_rng(0))
    assert images.shape == (3, 100, 100) and images.dtype == np.float32 and sources.shape == (3, 8)
    assert 0.0 <= images.min() and images.max() <= 1.0
    for image, index, (row, column), image_sources in zip(images, [5, 6, 7], positions, sources):
        assert np.all(image[row : row + 28, column : column + 28] >= scaled[index] - 1e-7)  # never dimmed
        assert index not in image_sources and image_sources.max() < 200
    # The same draws on uint8 digits give the same images, scaled.
    again, _, _ = cluttered_mnist.compose(digits[:200], [5, 6, 7], np.random.default_rng(0))
    np.testing.assert_allclose(images, again / 255.0, atol=1e-6)


def epoch_pairs(splits, epoch, first_step=0):
    return [(x.numpy(), y.numpy()) for x, y in splits.epoch(epoch, first_step)]


def test_training_images_are_composed_afresh_each_epoch_and_alike_on_resumption(cluttered_mnist_data_dir):
    splits = datasets.load("cluttered_mnist", 50, data_dir=cluttered_mnist_data_dir, seed=3)
    first, again, second = epoch_pairs(splits, 0), epoch_pairs(splits, 0), epoch_pairs(splits, 1)
    resumed = epoch_pairs(splits, 0, first_step=2)
    for (x, y), (x_again, y_again) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, x_again)
        np.testing.assert_array_equal(y, y_again)
    for (x, _), (x_resumed, _) in zip(first[2:], resumed, strict=True):
        np.testing.assert_array_equal(x, x_resumed)
    assert not np.array_equal(first[0][0], second[0][0])
    # Every training digit once per epoch: the labels are the stored training split's, reordered.
    stored = np.array([e["label"] for e in raw_examples(cluttered_mnist_data_dir, "train")])
    for pairs in (first, second):
        x = np.concatenate([x for x, _ in pairs])
        assert x.shape == (300, 100, 100, 1) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() == 1.0
        np.testing.assert_array_equal(np.sort(np.concatenate([y for _, y in pairs])), np.sort(stored))


def test_training_images_are_composed_from_the_stored_digits(cluttered_mnist_data_dir):
    digits, labels = data_sources.training_digits("cluttered_mnist", data_dir=cluttered_mnist_data_dir)
    stored = raw_examples(cluttered_mnist_data_dir, "train")
    assert digits.shape == (300, 28, 28) and digits.dtype == np.float32
    for k in (0, 123, 299):
        np.testing.assert_array_equal(digits[k] * 255.0, stored[k]["digit"][..., 0])
        assert labels[k] == stored[k]["label"]
        row, column = stored[k]["position"]  # the stored image holds the stored digit
        assert np.all(stored[k]["image"][row : row + 28, column : column + 28, 0] >= stored[k]["digit"][..., 0])


def test_fresh_clutter_off_trains_on_the_stored_images(cluttered_mnist_data_dir):
    splits = datasets.load("cluttered_mnist", 100, data_dir=cluttered_mnist_data_dir, seed=3, fresh_clutter=False)
    x = np.concatenate([x for x, _ in epoch_pairs(splits, 0)])
    stored = np.stack([e["image"] for e in raw_examples(cluttered_mnist_data_dir, "train")]) / 255.0
    assert x.shape == stored.shape
    np.testing.assert_allclose(np.sort(x.reshape(300, -1).sum(1)), np.sort(stored.reshape(300, -1).sum(1)), rtol=1e-5)
