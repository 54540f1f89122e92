"""Every layer and `Draw` through Keras's own layer test harness, `run_layer_test`, as Keras and
keras-hub test theirs: building from shapes, symbolic and eager calls, the config's round trip,
a training step, and the mixed_float16 policy (float32 weights, outputs of the dtype Keras
predicts)."""

import keras
import numpy as np
from keras import ops
from keras.src.testing import TestCase

from keras_draw import Draw
from keras_draw.layers import AttentionWindow, AttentiveRead, AttentiveWrite, GaussianLatent, Read, Write

IMAGE = {"image_height": 6, "image_width": 7}  # A ≠ B
TINY_DRAW = {"image_height": 8, "image_width": 9, "channels": 3, "num_steps": 3, "encoder_units": 8,
             "decoder_units": 8, "latent_dim": 4, "read_n": 2, "write_n": 3, "seed": 0}


class NamedInputs(keras.Model):
    """The harness's training model for a layer of several inputs, passed by name: the harness's
    own calls `layer(x)` with one input (so Keras's MultiHeadAttention test skips that check)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def call(self, inputs, training=False):
        return self.layer(**inputs, training=training)


def sum_of_outputs(y_true, y_pred):
    """The harness's training loss, the sum of every output, for layers of several outputs."""
    return sum(ops.sum(y) for y in keras.tree.flatten(y_pred))


class KerasLayerHarnessTest(TestCase):
    def fit_one_step(self, layer, inputs):
        """The harness's training check (SGD on the outputs' sum, `jit_compile="auto"`, one step)
        for a layer of several named inputs; every weight must move."""
        model = NamedInputs(layer)
        model(inputs)
        before = [np.array(w) for w in layer.trainable_weights]
        model.compile(optimizer="sgd", loss=sum_of_outputs, jit_compile="auto")
        outputs = keras.tree.map_structure(ops.zeros_like, model(inputs))
        model.fit(inputs, outputs, batch_size=len(next(iter(inputs.values()))), epochs=1, verbose=0)
        self.assertTrue(before)
        for old, new in zip(before, layer.trainable_weights):
            self.assertFalse(np.array_equal(old, np.array(new)), msg=new.path)

    def test_attention_window(self):
        self.run_layer_test(AttentionWindow, {**IMAGE, "n": 3}, input_shape=(2, 4), expected_output_shape=(2, 5),
                            expected_num_trainable_weights=2)

    def test_attentive_write(self):
        self.run_layer_test(AttentiveWrite, {**IMAGE, "channels": 3, "n": 3}, input_shape=(2, 4),
                            expected_output_shape=((2, 6, 7, 3), (2, 5)), expected_num_trainable_weights=4)

    def test_write(self):
        self.run_layer_test(Write, {**IMAGE, "channels": 2}, input_shape=(2, 4),
                            expected_output_shape=(2, 6, 7, 2), expected_num_trainable_weights=2)

    def test_attentive_read(self):
        init = {**IMAGE, "channels": 3, "n": 2}
        shapes = {"x_shape": (2, 6, 7, 3), "x_hat_shape": (2, 6, 7, 3), "h_dec_prev_shape": (2, 4)}
        self.run_layer_test(AttentiveRead, init, input_shape=shapes, expected_output_shape=((2, 24), (2, 5)),
                            expected_num_trainable_weights=2, run_training_check=False)
        rng = np.random.default_rng(0)
        self.fit_one_step(AttentiveRead(**init), {"x": rng.uniform(size=(2, 6, 7, 3)).astype("float32"),
                                                  "x_hat": rng.normal(size=(2, 6, 7, 3)).astype("float32"),
                                                  "h_dec_prev": rng.normal(size=(2, 4)).astype("float32")})

    def test_read(self):
        shapes = {"x_shape": (2, 6, 7, 2), "x_hat_shape": (2, 6, 7, 2), "h_dec_prev_shape": (2, 4)}
        self.run_layer_test(Read, {}, input_shape=shapes, expected_output_shape=(2, 168),
                            expected_num_trainable_weights=0, run_training_check=False)
        # No weights to train: the training step runs, and its loss is the inputs' sum.
        model = NamedInputs(Read())
        model.compile(optimizer="sgd", loss=sum_of_outputs, jit_compile="auto")
        inputs = {"x": np.ones((2, 6, 7, 2), "float32"), "x_hat": np.full((2, 6, 7, 2), 0.5, "float32"),
                  "h_dec_prev": np.zeros((2, 4), "float32")}
        history = model.fit(inputs, np.zeros((2, 168), "float32"), batch_size=2, verbose=0)
        self.assertAllClose(history.history["loss"], [2 * 6 * 7 * 2 * 1.5])

    def test_gaussian_latent(self):
        shapes = {"h_enc_shape": (2, 5), "epsilon_shape": (2, 3)}
        self.run_layer_test(GaussianLatent, {"latent_dim": 3}, input_shape=shapes,
                            expected_output_shape=((2, 3), (2, 3), (2, 3)), expected_num_trainable_weights=4,
                            run_training_check=False)
        rng = np.random.default_rng(0)
        self.fit_one_step(GaussianLatent(3), {"h_enc": rng.normal(size=(2, 5)).astype("float32"),
                                              "epsilon": rng.normal(size=(2, 3)).astype("float32")})

    def test_draw(self):
        images = np.random.default_rng(0).uniform(size=(2, 8, 9, 3)).astype("float32")  # in [0, 1]
        self.run_layer_test(Draw, TINY_DRAW, input_data=images, expected_output_shape=(2, 8, 9, 3),
                            expected_output_dtype="float32", expected_num_trainable_weights=len(Draw(**TINY_DRAW).weights),
                            expected_num_seed_generators=3)  # the noise's, and each LSTM cell's (for dropout)
