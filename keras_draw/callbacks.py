"""Keras callbacks for DRAW's training runs."""

import contextlib

import keras
import tensorflow as tf

from keras_draw.images import image_grid
from keras_draw.inputs import SMALLEST_GENERATION_BYTES, check_num_images
from keras_draw.layers.validation import check_count, check_fits_in_memory


class SampleGrid(keras.callbacks.Callback):
    """Logs a grid of generated images to TensorBoard at the end of every epoch.

    The noise is the same every epoch (`seed`), so the pictures show the same samples improving.
    The images appear under the tag `name` of the run in `log_dir` (needs `tensorboard`, which
    implements `tf.summary.image`).

    Args:
        log_dir: the folder of the event files, e.g. RUN/logs/samples.
        num_images: images in the grid: refused here if no Draw could generate so many in
            memory, and when training starts if the model cannot.
        seed: seed of the generated noise.
        name: the summary's tag.
    """

    def __init__(self, log_dir, num_images=16, seed=0, name="samples"):
        super().__init__()
        self.log_dir = log_dir
        self.num_images = check_count("num_images", num_images)
        check_fits_in_memory("num_images", self.num_images, SMALLEST_GENERATION_BYTES, "a generated image (of "
                             "the smallest Draw)")
        self.seed = seed
        self.name = name
        self._writer = None

    def on_train_begin(self, logs=None):
        check_num_images(self.model, self.num_images)  # before the first step, not after an epoch

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        grid = image_grid(self.model.generate(self.num_images, seed=self.seed))  # (H, W, C) uint8
        with self._writer.as_default():
            tf.summary.image(self.name, grid[None], step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class TestMetrics(keras.callbacks.Callback):
    """Adds the test split's metrics, as `test_<name>`, to the logs at the end of every epoch.

    For learning curves only: models are selected by the validation split, never by these.
    Put it before the callbacks that read the logs (Keras passes them the same dict in order).

    Args:
        test_ds: the test batches.
        averager: the run's `keras_draw.averaging.WeightAverage`, if it averages its weights:
            the test split is then evaluated with the averages, as the validation split is.
    """

    def __init__(self, test_ds, averager=None):
        super().__init__()
        self.test_ds = test_ds
        self.averager = averager

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        with self.averager.averaged() if self.averager else contextlib.nullcontext():
            metrics = self.model.evaluate(self.test_ds, return_dict=True, verbose=0)
        logs.update({f"test_{name}": float(value) for name, value in metrics.items()})


class RunProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, counting epochs out of the whole run ("Epoch 8/1000") while
    train.py calls `fit` one epoch at a time (which Keras would show as "Epoch 8/8").

    Args:
        epochs: the run's number of epochs.
    """

    def __init__(self, epochs):
        super().__init__()
        self.run_epochs = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.run_epochs
