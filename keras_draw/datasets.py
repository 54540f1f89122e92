"""Input pipelines for DRAW: image-only `tf.data` datasets from tensorflow-datasets.

`load(name)` returns `(train_ds, validation_ds, test_ds)`. Every element is a float32 batch of
images, shape `(batch, height, width, channels)` with values in [0, 1] and an unknown batch
dimension. Labels are dropped: DRAW models p(x) only.

| name              | tfds source    | train         | validation      | test |
|-------------------|----------------|---------------|-----------------|------|
| `binarized_mnist` | binarized_mnist| train (50k)   | validation (10k)| test (10k) |
| `mnist`           | mnist          | train[:50000] | train[50000:]   | test |
| `svhn`            | svhn_cropped   | train[:90%]   | train[90%:]     | test |
| `cifar10`         | cifar10        | train[:45000] | train[45000:]   | test |

`binarized_mnist` is the fixed binarization of Salakhutdinov & Murray (2008), the data set of the
paper's Table 2 (docs/paper.md, pitfall 5). `mnist` is binarized dynamically instead: every training
image is re-sampled as Bernoulli(intensity) each epoch; validation and test are sampled once,
seeded by image index, so evaluation figures are comparable between epochs and runs. Its numbers
are not comparable with the paper's. `greyscale=True` keeps mnist's intensities. Split slices
follow the order in which tfds stores a data set (tfds shuffles examples when it builds one), so
mnist's validation images are not the last 10,000 of the original training file.

Pixels are scaled to [0, 1] exactly once, here (docs/paper.md, pitfall 7: never divide by 255 twice).

Without network, tfds builds a data set from its original files in `manual_dir`. The four MNIST
files ship with this package, so `mnist` always builds offline. A data set that cannot be
obtained raises `DatasetUnavailableError`, whose message names the files and where to get them.
"""

import contextlib
import dataclasses
import io
import logging
import os
import pathlib
import time

import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

from keras_draw import console, offline

SUPPORTED = ("mnist", "binarized_mnist", "svhn", "cifar10")

# What tfds raises when it cannot download or verify a data set's files.
_DOWNLOAD_ERRORS = (
    tfds.download.DownloadError,
    NonMatchingChecksumError,
    OSError,  # includes requests.ConnectionError and missing files
    AssertionError,  # tfds: "Manual directory ... does not exist or is empty"
)


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


_SOURCES = {
    "mnist": _Source(
        tfds_name="mnist",
        splits=("train[:50000]", "train[50000:]", "test"),
        image_shape=(28, 28, 1),
        white=255.0,
        url="https://storage.googleapis.com/cvdf-datasets/mnist/",
        files=(
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ),
    ),
    "binarized_mnist": _Source(
        tfds_name="binarized_mnist",
        splits=("train", "validation", "test"),
        image_shape=(28, 28, 1),
        white=1.0,  # tfds stores the fixed binarization as uint8 0/1, not 0/255
        url="http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
        files=(
            "binarized_mnist_train.amat",
            "binarized_mnist_valid.amat",
            "binarized_mnist_test.amat",
        ),
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
}


def image_shape(name):
    """Returns `(height, width, channels)` of the images of data set `name`."""
    return _source(name).image_shape


def load(
    name,
    batch_size=100,
    *,
    data_dir=None,
    manual_dir=None,
    greyscale=False,
    seed=None,
    shuffle_buffer=10_000,
):
    """Builds the train, validation and test pipelines of data set `name`.

    Args:
        name: one of `SUPPORTED`.
        batch_size: images per batch; the last, partial batch is kept.
        data_dir: tfds data directory (None: the tfds default, ~/tensorflow_datasets).
        manual_dir: a folder holding the data set's original files, for building without
            network. For `mnist` it defaults to the files bundled with this package.
        greyscale: `mnist` only: keep intensities instead of binarizing.
        seed: seeds the training shuffle and mnist's per-epoch binarization; the same seed
            gives the same sequence of epochs in a fresh pipeline.
        shuffle_buffer: size of the training shuffle buffer.

    Returns:
        `(train_ds, validation_ds, test_ds)`, each yielding float32 image batches
        `(batch, height, width, channels)` in [0, 1].

    Raises:
        ValueError: an unknown name, a non-positive size or a directory that does not exist.
        DatasetUnavailableError: the data set is not prepared and cannot be built: its
            files are not in `manual_dir`, or, without it, the download server is not
            reachable (known within seconds: see `offline`) or the download fails.
    """
    source, builder = _prepare(name, batch_size, shuffle_buffer, data_dir, manual_dir)
    train, validation, test = (_images(builder, split, source.white) for split in source.splits)
    train = train.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if name == "mnist" and not greyscale:
        train, validation, test = _binarize_mnist(train, validation, test, seed)
    return tuple(_batched(ds, batch_size) for ds in (train, validation, test))


def training_images(name, *, data_dir=None, manual_dir=None):
    """The training split's images, float32 in [0, 1], unbatched, in storage order, cached.

    Feed them to `epoch_batches`, once per epoch: the cache is filled once and shared.
    """
    source, builder = _prepare(name, 1, 1, data_dir, manual_dir)
    return _images(builder, source.splits[0], source.white)


def epoch_batches(images, epoch, batch_size=100, *, binarize=False, seed=0, first_step=0,
                  steps_per_epoch=None, shuffle_buffer=10_000):
    """The training batches of one epoch, a pure function of (seed, epoch).

    Its order comes from a shuffle seeded by (seed, epoch) and, with `binarize`, its samples
    from seeds of (seed, epoch, batch's place in the epoch). A run resumed at epoch e, step s
    (`epoch=e, first_step=s`) therefore sees exactly the batches an uninterrupted run saw.

    Args:
        images: from `training_images`.
        epoch: the epoch's index, from 0.
        batch_size: images per batch.
        binarize: sample each pixel as Bernoulli(intensity) (mnist's dynamic binarization).
        seed: the run's seed.
        first_step: batches of the epoch to skip (already trained on).
        steps_per_epoch: the epoch's length in batches; None: the whole split, else the first
            `steps_per_epoch` batches (the split cycled if it holds fewer).
        shuffle_buffer: size of the shuffle buffer.

    Returns:
        The dataset of float32 batches, from `first_step` to the epoch's end.
    """
    _check_arguments(batch_size, shuffle_buffer, None, None)
    epoch_seed = seed * 1_000_003 + epoch  # a plain int: tf.data's shuffle wants one
    batches = images.shuffle(shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False).batch(batch_size)
    if steps_per_epoch is not None:
        batches = batches.repeat().take(steps_per_epoch)
    if binarize:  # a whole batch per call: per image, tf.data's overhead slowed small models by a third
        batches = _binarize(batches, tf.data.Dataset.counter(), stream=epoch_seed + 1)
    return batches.skip(first_step).prefetch(tf.data.AUTOTUNE)


def mean_image(batches):
    """The mean image of a dataset of batches (batch, B, A, C), in one pass: for
    `Draw.initialize_canvas`."""
    total, count = batches.reduce(
        (tf.zeros(batches.element_spec.shape[1:]), tf.constant(0.0)),
        lambda state, x: (state[0] + tf.reduce_sum(x, axis=0), state[1] + tf.cast(tf.shape(x)[0], tf.float32)),
    )
    return total / count


def num_batches(images, batch_size, steps_per_epoch=None):
    """Batches in one epoch of `epoch_batches`."""
    return steps_per_epoch or -(-int(images.cardinality()) // batch_size)


def _prepare(name, batch_size, shuffle_buffer, data_dir, manual_dir):
    """The data set's source and prepared tfds builder, after checking the arguments."""
    source = _source(name)
    _check_arguments(batch_size, shuffle_buffer, data_dir, manual_dir)
    if manual_dir is None and name == "mnist":
        manual_dir = _bundled_mnist_dir()
    return source, _prepared_builder(name, source, data_dir, manual_dir)


def _source(name):
    if name not in _SOURCES:
        raise ValueError(f"Unknown dataset: {name!r}. Supported: {', '.join(SUPPORTED)}.")
    return _SOURCES[name]


def _check_arguments(batch_size, shuffle_buffer, data_dir, manual_dir):
    if batch_size <= 0:
        raise ValueError(f"`batch_size` must be positive. Received: batch_size={batch_size}")
    if shuffle_buffer <= 0:
        raise ValueError(
            f"`shuffle_buffer` must be positive. Received: shuffle_buffer={shuffle_buffer}"
        )
    for argument, path in (("data_dir", data_dir), ("manual_dir", manual_dir)):
        if path is not None and not os.path.isdir(path):
            raise ValueError(
                f"`{argument}` must be an existing directory. Received: {argument}={str(path)!r}"
            )


def _bundled_mnist_dir():
    """The original MNIST files shipped in keras_draw/data/mnist/."""
    return pathlib.Path(__file__).resolve().parent / "data" / "mnist"


def _prepared_builder(name, source, data_dir, manual_dir):
    """Returns the tfds builder, building the data set first when it is not prepared yet."""
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
    except _DOWNLOAD_ERRORS as err:
        first_line = str(err).strip().split("\n")[0].rstrip(":")
        reason = f"{type(err).__name__}: {first_line}"
        raise DatasetUnavailableError(_unavailable_message(name, source, reason)) from err
    print(f"Dataset {name} prepared in {time.monotonic() - start:.0f} s.", flush=True)
    return builder


@contextlib.contextmanager
def _tfds_quiet():
    """tfds's progress bars, printed lines and absl warnings off while it builds:
    `_prepared_builder` says in two lines what is happening. `KERAS_DRAW_TF_LOGS=1` keeps them."""
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


def _images(builder, split, white):
    """Images of one split as float32 in [0, 1], cached after decoding."""

    def to_float(example):
        return tf.cast(example["image"], tf.float32) / white  # the only scaling (docs/paper.md pitfall 7)

    images = builder.as_dataset(split=split, shuffle_files=False)
    return images.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).cache()


def _binarize_mnist(train, validation, test, seed):
    """Dynamic binarization: training images are sampled afresh every epoch (the same
    sequence of epochs for the same seed); validation and test once, seeded by image index,
    so they are identical in every epoch and every run."""
    train = _binarize(train, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True))
    validation, test = (_binarize(ds, tf.data.Dataset.counter()) for ds in (validation, test))
    return train, validation, test


def _binarize(images, seeds, stream=0):
    """Samples each pixel as Bernoulli(intensity); `seeds` yields one int64 per element (an image
    or a batch), and the stateless seed of element k is (seeds[k], stream)."""

    def sample(image, seed):
        noise = tf.random.stateless_uniform(tf.shape(image), seed=tf.stack([seed, stream]))
        return tf.cast(noise < image, tf.float32)

    pairs = tf.data.Dataset.zip(images, seeds)
    return pairs.map(sample, num_parallel_calls=tf.data.AUTOTUNE)


def _batched(images, batch_size):
    return images.batch(batch_size).prefetch(tf.data.AUTOTUNE)
