"""Read without attention (eq. 17)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_draw")
class Read(keras.layers.Layer):
    """read(x, x̂_t, h^dec_{t−1}) = [x, x̂_t] (eq. 17): the whole image and error image.

    h^dec_{t−1} is accepted for the same call signature as `AttentiveRead` and ignored. Returns
    r_t of shape (batch, 2·B·A·C). The layer has no weights.
    """

    def build(self, x_shape, x_hat_shape=None, h_dec_prev_shape=None):
        pass  # no weights; argument names match `call`'s, as Keras checks

    def call(self, x, x_hat, h_dec_prev=None):
        image_dim = x.shape[1] * x.shape[2] * x.shape[3]
        r_x = ops.reshape(x, (-1, image_dim))  # (batch, B·A·C)
        r_x_hat = ops.reshape(x_hat, (-1, image_dim))  # (batch, B·A·C)
        return ops.concatenate([r_x, r_x_hat], axis=-1)  # eq. 17

    def compute_output_shape(self, x_shape, x_hat_shape=None, h_dec_prev_shape=None):
        return (x_shape[0], 2 * x_shape[1] * x_shape[2] * x_shape[3])
