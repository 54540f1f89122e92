"""Where DRAW's data sets come from: tensorflow-datasets builders, prepared once, offline if need be.

| name              | tfds source    | train         | validation      | test |
|-------------------|----------------|---------------|-----------------|------|
| `binarized_mnist` | binarized_mnist| train (50k)   | validation (10k)| test (10k) |
| `mnist`           | mnist          | train[:50000] | train[50000:]   | test |
| `svhn`            | svhn_cropped   | train[:90%]   | train[90%:]     | test |
| `cifar10`         | cifar10        | train[:45000] | train[45000:]   | test |
| `cluttered_mnist` | cluttered_mnist (ours) | train (50k) | validation (10k) | test (10k) |
| `two_digit_mnist` | two_digit_mnist (ours) | train (50k) | validation (10k) | test (10k) |

Split slices follow the order in which tfds stores a data set (tfds shuffles examples when it
builds one), so mnist's validation images are not the last 10,000 of the original training file.
Pixels are scaled to [0, 1] exactly once, here (docs/paper.md, pitfall 7: never divide by 255 twice).

`cluttered_mnist` is a classification data set: its elements are (image, label) pairs, and its
tfds builder is ours (`keras_draw.builders.cluttered_mnist`), composed from MNIST's files.
So is `two_digit_mnist`'s (`keras_draw.builders.two_digit_mnist`), whose images hold two digits.

Without network, tfds builds a data set from its original files in `manual_dir`. The four MNIST
files ship with this package, so `mnist`, `cluttered_mnist` and `two_digit_mnist` always build offline. A data set that cannot be
obtained raises `DatasetUnavailableError`, whose message names the files and where to get them.
tensorflow_datasets is imported only when a data set is asked for.
"""

import contextlib
import dataclasses
import io
import logging
import os
import pathlib
import time

import numpy as np
import tensorflow as tf

from keras_draw import console, offline

SUPPORTED = ("mnist", "binarized_mnist", "svhn", "cifar10", "cluttered_mnist", "two_digit_mnist")


class DatasetUnavailableError(RuntimeError):
    """A data set is not prepared and its original files cannot be obtained."""


@dataclasses.dataclass(frozen=True)
class _Source:
    """Where a data set comes from and how tfds stores it."""

    tfds_name: str
    splits: tuple  # tfds split strings for (train, validation, test)
    image_shape: tuple  # (height, width, channels)
    white: float  # stored value of a full-intensity pixel
    url: str  # where the original files are downloaded from
    files: tuple  # their names, as tfds expects them in manual_dir
    labels: bool = False  # elements are (image, label) pairs: a classification data set
    digits: bool = False  # examples keep their clean 28×28 digit, from which training composes images afresh
    builder: str | None = None  # the module of our own tfds builder, imported to register it


# MNIST's original files, from which `mnist` and our data sets composed of its digits are built.
MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")

_SOURCES = {
    "mnist": _Source(
        tfds_name="mnist",
        splits=("train[:50000]", "train[50000:]", "test"),
        image_shape=(28, 28, 1),
        white=255.0,
        url=MNIST_URL,
        files=MNIST_FILES,
    ),
    "binarized_mnist": _Source(
        tfds_name="binarized_mnist",
        splits=("train", "validation", "test"),
        image_shape=(28, 28, 1),
        white=1.0,  # tfds stores the fixed binarization as uint8 0/1, not 0/255
        url="http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
        files=("binarized_mnist_train.amat", "binarized_mnist_valid.amat", "binarized_mnist_test.amat"),
    ),
    "svhn": _Source(
        tfds_name="svhn_cropped",
        splits=("train[:90%]", "train[90%:]", "test"),
        image_shape=(32, 32, 3),
        white=255.0,
        url="http://ufldl.stanford.edu/housenumbers/",
        files=("train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"),
    ),
    "cifar10": _Source(
        tfds_name="cifar10",
        splits=("train[:45000]", "train[45000:]", "test"),
        image_shape=(32, 32, 3),
        white=255.0,
        url="https://www.cs.toronto.edu/~kriz/",
        files=("cifar-10-binary.tar.gz",),
    ),
    "cluttered_mnist": _Source(
        tfds_name="cluttered_mnist",
        splits=("train", "validation", "test"),
        image_shape=(100, 100, 1),
        white=255.0,
        url=MNIST_URL,
        files=MNIST_FILES,
        labels=True,
        digits=True,
        builder="keras_draw.builders.cluttered_mnist",
    ),
    "two_digit_mnist": _Source(
        tfds_name="two_digit_mnist",
        splits=("train", "validation", "test"),
        image_shape=(60, 60, 1),
        white=255.0,
        url=MNIST_URL,
        files=MNIST_FILES,
        builder="keras_draw.builders.two_digit_mnist",
    ),
}

# Data sets built from MNIST's files, which ship with this package: their default manual_dir.
BUNDLED_MNIST = ("mnist", "cluttered_mnist", "two_digit_mnist")


def image_shape(name):
    """Returns `(height, width, channels)` of the images of data set `name`."""
    return _source(name).image_shape


def has_labels(name):
    """Whether the elements of data set `name` are (image, label) pairs (a classification set)."""
    return _source(name).labels


def _source(name):
    """The `_Source` of data set `name`; ValueError, listing the supported ones, for another."""
    if name not in _SOURCES:
        raise ValueError(f"Unknown dataset: {name!r}. Supported: {', '.join(SUPPORTED)}.")
    return _SOURCES[name]


def check_directories(data_dir, manual_dir):
    for argument, path in (("data_dir", data_dir), ("manual_dir", manual_dir)):
        if path is not None and not os.path.isdir(path):
            raise ValueError(
                f"`{argument}` must be an existing directory. Received: {argument}={str(path)!r}"
            )


def split_images(name, data_dir=None, manual_dir=None):
    """The (train, validation, test) images of data set `name`: float32 in [0, 1], unbatched,
    in storage order, cached after decoding (as stored: uint8); with their int64 labels,
    (image, label) pairs, for a classification data set (`has_labels`). The data set is prepared
    first if need be."""
    files, builder = _prepared(name, data_dir, manual_dir)
    return tuple(_images(builder, split, files.white, files.labels) for split in files.splits)


def training_digits(name, data_dir=None, manual_dir=None):
    """The clean digits of the training split of a data set whose examples keep them
    (`cluttered_mnist`): float32 (n, 28, 28) in [0, 1] and their int64 labels (n,), in storage
    order, as numpy arrays. The data set is prepared first if need be."""
    import tensorflow_datasets as tfds

    if not _source(name).digits:
        raise ValueError(f"Dataset {name!r} keeps no digits of its own.")
    source, builder = _prepared(name, data_dir, manual_dir)
    examples = builder.as_dataset(split=source.splits[0], shuffle_files=False,
                                  decoders={"image": tfds.decode.SkipDecoding()})  # only the digits are read
    pairs = examples.map(lambda e: (e["digit"][..., 0], tf.cast(e["label"], tf.int64)),
                         num_parallel_calls=tf.data.AUTOTUNE)
    digits, labels = (np.concatenate(parts) for parts in zip(*pairs.batch(10_000).as_numpy_iterator()))
    return digits.astype(np.float32) / source.white, labels  # the only scaling (docs/paper.md pitfall 7)


def _prepared(name, data_dir, manual_dir):
    """(`_Source`, tfds builder) of data set `name`, prepared first if need be; the bundled MNIST
    files are the manual_dir of the data sets built from them."""
    check_directories(data_dir, manual_dir)
    if manual_dir is None and name in BUNDLED_MNIST:
        manual_dir = _bundled_mnist_dir()
    source = _source(name)
    return source, _prepared_builder(name, source, data_dir, manual_dir)


def _bundled_mnist_dir():
    """The original MNIST files shipped in keras_draw/data/mnist/."""
    return pathlib.Path(__file__).resolve().parent / "data" / "mnist"


def _download_errors():
    """What tfds raises when it cannot download or verify a data set's files."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    return (
        tfds.download.DownloadError,
        NonMatchingChecksumError,
        OSError,  # includes requests.ConnectionError and missing files
        AssertionError,  # tfds: "Manual directory ... does not exist or is empty"
    )


def _prepared_builder(name, source, data_dir, manual_dir):
    """Returns the tfds builder, building the data set first when it is not prepared yet."""
    import importlib

    import tensorflow_datasets as tfds

    if source.builder is not None:
        importlib.import_module(source.builder)  # registers the builder with tfds
    builder = tfds.builder(source.tfds_name, data_dir=data_dir)
    with _tfds_quiet():  # on a data set not built yet: "Variant folder ... has no dataset_info.json"
        prepared = builder.is_prepared()
    if prepared:
        return builder
    if manual_dir is not None:
        _check_manual_files(name, source, manual_dir)
    elif (reason := offline.unreachable(source.url)) is not None:
        raise DatasetUnavailableError(_unavailable_message(name, source, reason))
    config = tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else os.fspath(manual_dir)
    )
    origin = "the network" if manual_dir is None else os.fspath(manual_dir)
    print(f"Preparing dataset {name} from {origin} (once, into {builder.data_dir})...", flush=True)
    start = time.monotonic()
    try:
        with _tfds_quiet():
            builder.download_and_prepare(download_config=config)
    except _download_errors() as err:
        first_line = str(err).strip().split("\n")[0].rstrip(":")
        reason = f"{type(err).__name__}: {first_line}"
        raise DatasetUnavailableError(_unavailable_message(name, source, reason)) from err
    print(f"Dataset {name} prepared in {time.monotonic() - start:.0f} s.", flush=True)
    return builder


@contextlib.contextmanager
def _tfds_quiet():
    """tfds's progress bars, printed lines and absl warnings off while it builds:
    `_prepared_builder` says in two lines what is happening. `KERAS_DRAW_TF_LOGS=1` keeps them."""
    import tensorflow_datasets as tfds

    if console.tensorflow_logs_wanted():
        yield
        return
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    tfds.display_progress_bar(False)
    absl_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        absl_logger.setLevel(level)
        tfds.display_progress_bar(True)


def _check_manual_files(name, source, manual_dir):
    """Fails at once on missing files: tfds would try to download them instead, and offline
    that fails only after ~3.5 minutes of retries."""
    missing = [f for f in source.files if not (pathlib.Path(manual_dir) / f).is_file()]
    if missing:
        reason = f"{', '.join(missing)} not found in {os.fspath(manual_dir)}"
        raise DatasetUnavailableError(_unavailable_message(name, source, reason))


def _unavailable_message(name, source, reason):
    """One line: what went wrong, which files to download, from where, and where to put them."""
    return (
        f"Dataset {name!r} is not prepared and could not be built: {reason}. "
        f"To build it offline, download {', '.join(source.files)} from {source.url} "
        "into one folder and pass that folder as manual_dir (--manual-dir)."
    )


def _images(builder, split, white, labels=False):
    """Images of one split as float32 in [0, 1] (with their labels if `labels`), cached after
    decoding as stored (uint8: a quarter of float32's memory, 0.7 GB for cluttered_mnist)."""

    def stored(example):
        return (example["image"], tf.cast(example["label"], tf.int64)) if labels else example["image"]

    def to_float(image, *label):
        x = tf.cast(image, tf.float32) / white  # the only scaling (docs/paper.md pitfall 7)
        return (x, *label) if labels else x

    examples = builder.as_dataset(split=split, shuffle_files=False)
    examples = examples.map(stored, num_parallel_calls=tf.data.AUTOTUNE).cache()
    return examples.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
