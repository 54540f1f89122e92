"""Weight averaging: an exponential moving average of the weights along training, for evaluation.

With momentum m, after every training step

    w̄ ← m · w̄ + (1 − m) · w

where w̄ starts at the weights w when averaging starts. Training goes on with w; validation, the
test split's logs, the kept best weights and the final model use w̄: the average smooths out the
noise of the last steps' updates, which lowers the validation loss (docs/results.md measures it).
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf


class WeightAverage(keras.callbacks.Callback):
    """Keeps w̄ of the model's trainable weights, and evaluates with it in place of w.

    Put it first among `fit`'s callbacks, so that every other callback sees w̄ updated by the
    step that just ended. `fit` calls `on_test_begin` and `on_test_end` around its validation,
    which therefore runs on w̄.

    Args:
        momentum: m, in (0, 1).
        initial: w̄ to start from (arrays in the order of `model.trainable_variables`, as
            `values()` returns them, e.g. from a checkpoint); None: the weights when training
            starts.
    """

    def __init__(self, momentum, initial=None):
        super().__init__()
        if isinstance(momentum, bool) or not 0 < momentum < 1:
            raise ValueError(f"`momentum` must be in (0, 1). Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.initial = initial
        self.averages = None  # w̄, one variable per trainable weight
        self.saved = None  # w, while w̄ stands in for it

    def build(self):
        """Creates w̄ (from `initial`, else from the weights); does nothing once built."""
        if self.averages is not None:
            return
        weights = self.model.trainable_variables
        if self.initial is not None and len(self.initial) != len(weights):
            raise ValueError(f"Expected {len(weights)} averaged weights. Received: {len(self.initial)}")
        start = self.initial if self.initial is not None else [w.numpy() for w in weights]
        with self.model.distribute_strategy.scope():
            self.averages = [tf.Variable(np.asarray(a, dtype=w.dtype), trainable=False) for a, w in zip(start, weights)]
            self.saved = [tf.Variable(a, trainable=False) for a in self.averages]
        self._update = tf.function(self._update_averages)

    def _update_averages(self):
        m = self.momentum
        for average, w in zip(self.averages, self.model.trainable_variables):
            average.assign(m * average + (1.0 - m) * w)

    def values(self):
        """w̄ as numpy arrays, in the order of `model.trainable_variables`."""
        return [average.numpy() for average in self.averages]

    @contextlib.contextmanager
    def averaged(self):
        """Within the block, the model's weights are w̄; afterwards w again."""
        self.build()
        self._swap_in()
        try:
            yield
        finally:
            self._swap_out()

    def apply(self):
        """Sets the model's weights to w̄ for good (at the end of training)."""
        self.build()
        for w, average in zip(self.model.trainable_variables, self.averages):
            w.assign(average)

    def _swap_in(self):
        for w, average, saved in zip(self.model.trainable_variables, self.averages, self.saved):
            saved.assign(w)
            w.assign(average)

    def _swap_out(self):
        for w, saved in zip(self.model.trainable_variables, self.saved):
            w.assign(saved)

    def on_train_begin(self, logs=None):
        self.build()

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    def on_test_begin(self, logs=None):
        if self.averages is not None:  # inside `fit`: validation runs on w̄
            self._swap_in()

    def on_test_end(self, logs=None):
        if self.averages is not None:
            self._swap_out()
