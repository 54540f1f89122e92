"""DRAW's read attention as a classifier: the paper's §4.1 (Table 1), on cluttered MNIST.

For t = 1..T, with h_0 and the LSTM's initial cell state learned:
    g_t = read(x, h_{t−1})             (eqs. 19-27: an N×N glimpse of the image alone, through
                                        the window that h_{t−1} places; no error image)
    h_t = LSTM(h_{t−1}, g_t)
    p(y | x) = softmax(W h_T)          (over the classes, from the last state only)
The loss is the cross-entropy −log p(y | x) of the true class. The read is `AttentiveRead.glimpse`,
the code that reads [x, x̂_t] in `Draw`; the window and filterbank are `Draw`'s
(`keras_draw.filterbank`). Trained with Keras's own `fit`: `compile` defaults to the sparse
cross-entropy and accuracy.
"""

import math

import keras
from keras import ops

from keras_draw import inputs, presets
from keras_draw.layers import AttentiveRead
from keras_draw.layers.validation import check_grid_size, check_positive


@keras.saving.register_keras_serializable(package="keras_draw")
class DrawClassifier(keras.Model):
    """Classifies images in [0, 1] from T glimpses; `predict` gives the class probabilities.

    Args:
        image_height, image_width, channels: B, A and the number of colour channels.
        num_steps: T, the number of glimpses.
        units: size of the LSTM.
        read_n: N of the read grid (N×N glimpses).
        num_classes: classes of the softmax.
        seed: seed of the initial weights: the same seed builds the same model. None: drawn afresh.
    """

    def __init__(self, image_height=100, image_width=100, channels=1, num_steps=8, units=256, read_n=12,
                 num_classes=10, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_positive(image_height=image_height, image_width=image_width, channels=channels, num_steps=num_steps,
                       units=units, num_classes=num_classes)
        check_grid_size("read_n", read_n, image_height, image_width)
        # === Layers ===
        with inputs.seeded_initializers(seed):  # the same seed, the same initial weights
            self.reader = AttentiveRead(image_height, image_width, channels, read_n, name="read")
            self.lstm = keras.layers.LSTMCell(units, name="lstm")
            self.classes = keras.layers.Dense(num_classes, name="classes")  # W of the softmax
        # === Config ===
        self.image_height = image_height
        self.image_width = image_width
        self.channels = channels
        self.num_steps = num_steps
        self.units = units
        self.read_n = read_n
        self.num_classes = num_classes
        self.seed = seed
        self.build((None, *self.image_shape))

    @classmethod
    def from_preset(cls, name, weights=None, **overrides):
        """A classifier with a named configuration (`keras_draw.presets`), any argument overridden;
        `weights`: the name of a dataset with shipped weights, or the path of a `.weights.h5` file."""
        return presets.build(cls, name, weights=weights, **overrides)

    @property
    def image_shape(self):
        return (self.image_height, self.image_width, self.channels)

    def build(self, input_shape=None):
        glimpse_dim = self.read_n * self.read_n * self.channels
        self.reader.build((None, *self.image_shape), None, (None, self.units))
        self.lstm.build((None, glimpse_dim))
        self.classes.build((None, self.units))
        self.initialize_window()
        self.h_0 = self.add_weight(shape=(self.units,), initializer="zeros", name="h_0")
        self.cell_0 = self.add_weight(shape=(self.units,), initializer="zeros", name="cell_0")

    def initialize_window(self):
        """Starts the windows with σ = δ/2, half their stride (eq. 24 at δ̃ = 1), by the bias of log σ²
        (eq. 21): the glimpse starts as a smooth view of the whole image, not as N×N point samples of
        it (σ² = 1, which a zero bias would give, sees a pixel or two in every δ ≈ 9)."""
        stride = (max(self.image_height, self.image_width) - 1) / (self.read_n - 1.0)  # δ at δ̃ = 1, eq. 24
        bias = self.reader.window.dense.bias
        bias.assign(ops.convert_to_tensor([0.0, 0.0, 2.0 * math.log(stride / 2.0), 0.0, 0.0]))  # log σ² = log (δ/2)²

    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=("accuracy",),
                jit_compile=True, **kwargs):
        """`keras.Model.compile`, by default with the cross-entropy of the true class, accuracy, and
        XLA over the whole step, on a CPU too (Keras's "auto" leaves XLA off there): it trains
        more than twice as fast as without (docs/speed.md)."""
        super().compile(optimizer=optimizer, loss=loss, metrics=list(metrics or []), jit_compile=jit_compile,
                        **kwargs)
        # Keras makes the metrics' variables when it first traces a step; made now, a resumed run can
        # put back the sums of an unfinished epoch before that (`keras_draw.checkpoint`).
        probabilities = ops.full((1, self.num_classes), 1.0 / self.num_classes)
        self.compute_metrics(None, ops.zeros((1,), dtype="int64"), probabilities)
        self.reset_metrics()

    def compile_from_config(self, config):
        """Compiles a loaded model as it was saved (Keras skips models with a custom `compile`)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def predict(self, x, *args, **kwargs):
        """Class probabilities p(y | x), (n, classes), of images x (n, B, A, C) in [0, 1]: an
        array is checked first (under XLA, the graph's range assertion is dropped); a
        `tf.data.Dataset` or generator goes to `keras.Model.predict` as it is."""
        if not hasattr(x, "element_spec") and not hasattr(x, "__next__"):
            x = inputs.check_image_array(self.image_shape, x)
        return super().predict(x, *args, **kwargs)

    # === The steps of the algorithm ===

    def glimpse_sequence(self, x, names=("window", "glimpse")):
        """The T steps on images x (batch, B, A, C): a dict of `logits` (batch, classes) and, for
        each of `names`, its value at every step: `window` (batch, T, 5) (ordered as
        `keras_draw.layers.attention_window.WINDOW_PARAMETERS`), `glimpse` (batch, T, N, N, C),
        `h` the LSTM's state after the step (batch, T, units).

        The T steps are unrolled: under XLA that trains more than twice as fast as a `tf.while_loop`
        (docs/speed.md), and tracing T = 8 steps is quick.
        """
        batch_size = ops.shape(x)[0]
        h = ops.broadcast_to(self.h_0, (batch_size, self.units))
        cell = ops.broadcast_to(self.cell_0, (batch_size, self.units))
        outputs = {name: [] for name in names}
        for _ in range(self.num_steps):
            g, window = self.reader.glimpse(x, h)  # eqs. 19-27: the window from h_{t−1}, (batch, N, N, C)
            h, (_, cell) = self.lstm(ops.reshape(g, (batch_size, -1)), [h, cell])  # h_t from g_t
            step = {"window": window, "glimpse": g, "h": h}
            for name in names:
                outputs[name].append(step[name])
        outputs = {name: ops.stack(values, axis=1) for name, values in outputs.items()}  # (batch, T, ...)
        outputs["logits"] = self.classes(h)  # W h_T
        return outputs

    def call(self, x, training=False):
        """p(y | x), (batch, classes): the softmax over the classes on the last state."""
        x = inputs.check_images(self.image_shape, x)
        logits = self.glimpse_sequence(x, names=())["logits"]
        return keras.activations.softmax(logits)  # keeps the logits for Keras's cross-entropy

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in _CONFIG})
        return config


# The arguments of `DrawClassifier.__init__`, each stored under its own name.
_CONFIG = ("image_height", "image_width", "channels", "num_steps", "units", "read_n", "num_classes", "seed")
