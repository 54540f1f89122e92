"""Input pipelines for DRAW: `tf.data` datasets, one builder for notebooks and train.py.

`load(name)` returns the `Splits` of a data set; `train, validation, test = load(name)` unpacks
its three pipelines. Every element is a float32 batch of images, shape
`(batch, height, width, channels)` with values in [0, 1] and an unknown batch dimension. The
generative data sets drop their labels, since DRAW models p(x) only; a classification data set
(`cluttered_mnist`, for `DrawClassifier`) gives (images, labels) pairs, labels int64 of shape
(batch,). Where the images come from is `keras_draw.data_sources`.

Each training epoch is a pure function of (seed, epoch) (`Splits.epoch`): its order comes from a
shuffle seeded by both and, for `mnist`, its binarization from seeds of (seed, epoch, batch).
`mnist` (and `two_digit_mnist`, made of its digits: `BINARIZED_AFRESH`) is binarized
dynamically: every training image is re-sampled as Bernoulli(intensity)
each epoch, while validation and test are sampled once, seeded by image index, so evaluation
figures are comparable between epochs and runs; its numbers are not comparable with the paper's
(docs/paper.md, pitfall 5: that is `binarized_mnist`, a fixed binarization). `greyscale=True`
keeps their intensities.

`cluttered_mnist` (`CLUTTERED_AFRESH`) composes its training images afresh each epoch: every
training digit gets a new position and new clutter (from the other training digits), drawn from
seeds of (seed, epoch, batch), as the generator of Mnih et al. 2014 draws each training image; its
validation and test images are the fixed ones of the data set. `fresh_clutter=False` trains on the
stored training images instead.
"""

import functools
import itertools
import random

import numpy as np
import tensorflow as tf

from keras_draw.data_sources import (SUPPORTED, DatasetUnavailableError, has_labels, image_shape, split_images,
                                     training_digits)
from keras_draw.layers.validation import check_positive

# The data sets of MNIST's greyscale digits, binarized afresh each training epoch.
BINARIZED_AFRESH = ("mnist", "two_digit_mnist")
# The data sets whose training images are composed afresh each epoch from their training digits.
CLUTTERED_AFRESH = ("cluttered_mnist",)

__all__ = ["SUPPORTED", "DatasetUnavailableError", "Splits", "has_labels", "image_shape", "load"]


class Splits:
    """The pipelines of one data set, from `load`.

    `train`, `validation`, `test`: batched pipelines; `train` yields epoch `initial_epoch` when it
    is first iterated, and the next epoch at each later pass (as `fit` does once per epoch).
    `images`: the training images (with their labels, for a classification data set),
    unbatched and cached, in storage order; for a data set composed afresh each epoch, the
    (digit index, label) pairs its images are composed from.
    `epoch(e)`: the batches of epoch e alone, from any step (for exact resumption).
    """

    def __init__(self, images, validation, test, *, batch_size, seed, shuffle_buffer, afresh=None,
                 initial_epoch=0):
        self.images = images
        self.validation = validation
        self.test = test
        self.batch_size = batch_size
        self.afresh = afresh  # None, or (batches, stream) -> the epoch's batches, drawn anew from `stream`
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.train = self._epochs_from(initial_epoch)

    def __iter__(self):
        return iter((self.train, self.validation, self.test))

    def __getitem__(self, index):
        return (self.train, self.validation, self.test)[index]

    def epoch(self, epoch, first_step=0, steps_per_epoch=None):
        """The training batches of epoch `epoch` (from 0), from batch
        `first_step` on: a pure function of (seed, epoch), so a run resumed at epoch e, step s
        sees exactly the batches an uninterrupted run saw.

        `steps_per_epoch`: the epoch's length in batches; None: the whole split, else the first
        `steps_per_epoch` batches (the split cycled if it holds fewer).
        """
        epoch_seed = self.seed * 1_000_003 + epoch  # a plain int: tf.data's shuffle wants one
        batches = self.images.shuffle(self.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        batches = batches.batch(self.batch_size)
        if steps_per_epoch is not None:
            batches = batches.repeat().take(steps_per_epoch)
        if self.afresh is not None:  # a whole batch per call: per image, tf.data's overhead slowed small models by a third
            batches = self.afresh(batches, stream=epoch_seed + 1)
        return batches.skip(first_step).prefetch(tf.data.AUTOTUNE)

    def num_batches(self, steps_per_epoch=None):
        """Batches in one training epoch."""
        return steps_per_epoch or -(-int(self.images.cardinality()) // self.batch_size)

    def mean_image(self):
        """The mean training image (B, A, C), of the intensities: for `Draw.initialize_canvas`."""
        images = self.images.map(lambda x, *label: x)  # without labels, if any
        batches = images.batch(10_000)
        total, count = batches.reduce(
            (tf.zeros(batches.element_spec.shape[1:]), tf.constant(0.0)),
            lambda state, x: (state[0] + tf.reduce_sum(x, axis=0), state[1] + tf.cast(tf.shape(x)[0], tf.float32)),
        )
        return total / count

    def _epochs_from(self, initial_epoch):
        """One epoch per pass: a Python counter, read once each time the pipeline is iterated.
        (Its batches pass through Python: a tensor epoch would make tf.data's shuffle seed a
        tensor, which TensorFlow's seeding rejects under some global seeds.)"""
        epochs = itertools.count(initial_epoch)

        def next_epoch():
            yield from self.epoch(next(epochs)).as_numpy_iterator()

        spec = self.epoch(0).element_spec
        train = tf.data.Dataset.from_generator(next_epoch, output_signature=spec)
        train = train.apply(tf.data.experimental.assert_cardinality(self.num_batches()))
        return train.prefetch(tf.data.AUTOTUNE)


def load(name, batch_size=100, *, data_dir=None, manual_dir=None, greyscale=False, fresh_clutter=True, seed=None,
         shuffle_buffer=10_000, initial_epoch=0):
    """Builds the train, validation and test pipelines of data set `name`.

    Args:
        name: one of `SUPPORTED`.
        batch_size: images per batch; the last, partial batch is kept.
        data_dir: tfds data directory (None: the tfds default, ~/tensorflow_datasets).
        manual_dir: a folder holding the data set's original files, for building without
            network. For `mnist` it defaults to the files bundled with this package.
        greyscale: `BINARIZED_AFRESH` data sets only: keep intensities instead of binarizing.
        fresh_clutter: `CLUTTERED_AFRESH` data sets only: compose the training images afresh
            each epoch (True) or train on the stored ones (False).
        seed: seeds the training shuffle and the per-epoch binarization or clutter; the same seed
            gives the same sequence of epochs in a fresh pipeline. None: one drawn from Python's
            `random` (which `keras.utils.set_random_seed` seeds).
        shuffle_buffer: size of the training shuffle buffer.
        initial_epoch: the epoch that `train` yields first (a resumed run's next epoch).

    Returns:
        `Splits`, which unpacks as `(train_ds, validation_ds, test_ds)`.

    Raises:
        ValueError: an unknown name, a non-positive size or a directory that does not exist.
        DatasetUnavailableError: the data set is not prepared and cannot be built: its
            files are not in `manual_dir`, or, without it, the download server is not
            reachable (known within seconds: see `offline`) or the download fails.
    """
    image_shape(name)  # an unknown name fails first
    check_positive(batch_size=batch_size, shuffle_buffer=shuffle_buffer)
    if seed is None:
        seed = random.randrange(2**31)
    train, validation, test = split_images(name, data_dir=data_dir, manual_dir=manual_dir)
    afresh = None
    if name in BINARIZED_AFRESH and not greyscale:  # validation and test once, seeded by image index
        validation, test = (_binarize(ds, tf.data.Dataset.counter()) for ds in (validation, test))
        afresh = functools.partial(_binarize, seeds=tf.data.Dataset.counter())
    if name in CLUTTERED_AFRESH and fresh_clutter:
        digits, labels = training_digits(name, data_dir=data_dir, manual_dir=manual_dir)
        train = tf.data.Dataset.from_tensor_slices((np.arange(len(digits)), labels))
        afresh = functools.partial(_clutter, digits=digits)
    validation, test = (ds.batch(batch_size).prefetch(tf.data.AUTOTUNE) for ds in (validation, test))
    return Splits(train, validation, test, batch_size=batch_size, afresh=afresh, seed=seed,
                  shuffle_buffer=shuffle_buffer, initial_epoch=initial_epoch)


def _clutter(batches, digits, stream):
    """Composes the images of batches of (digit index, label) pairs from `digits` (n, 28, 28) in
    [0, 1]: batch k from the stream (stream, k), clutter from the other digits."""
    from keras_draw.builders import cluttered_mnist

    def compose(indices, batch):
        return cluttered_mnist.training_images(digits, indices, (stream, int(batch)))[..., None]

    def images(pair, batch):
        indices, labels = pair
        x = tf.numpy_function(compose, [indices, batch], tf.float32, stateful=False)
        return tf.ensure_shape(x, (None, *image_shape("cluttered_mnist"))), labels

    pairs = tf.data.Dataset.zip(batches, tf.data.Dataset.counter())
    return pairs.map(images, num_parallel_calls=tf.data.AUTOTUNE)


def _binarize(images, seeds, stream=0):
    """Samples each pixel as Bernoulli(intensity); `seeds` yields one int64 per element (an image
    or a batch), and the stateless seed of element k is (seeds[k], stream)."""

    def sample(image, seed):
        noise = tf.random.stateless_uniform(tf.shape(image), seed=tf.stack([seed, stream]))
        return tf.cast(noise < image, tf.float32)

    pairs = tf.data.Dataset.zip(images, seeds)
    return pairs.map(sample, num_parallel_calls=tf.data.AUTOTUNE)
