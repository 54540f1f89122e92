"""Attentive read (eqs. 19-27)."""

import keras
from keras import ops

from keras_draw.filterbank import filterbank
from keras_draw.layers.attention_window import AttentionWindow, unpack_window


def read_patch(image, f_x, f_y, gamma):
    """γ F_Y x F_Xᵀ for every channel (eq. 27): (batch, B, A, C) → (batch, N, N, C)."""
    patch = ops.einsum("bnh,bhwc,bmw->bnmc", f_y, image, f_x)  # F_Y x F_Xᵀ per channel
    return gamma[:, None, None, None] * patch


@keras.saving.register_keras_serializable(package="keras_draw")
class AttentiveRead(keras.layers.Layer):
    """read(x, x̂_t, h^dec_{t−1}) = γ [F_Y x F_Xᵀ, F_Y x̂ F_Xᵀ] (eq. 27).

    The window comes from h^dec_{t−1} (eqs. 21-24) and the filterbank from eqs. 19-26; the same
    filters read every colour channel. Returns r_t, shape (batch, 2·N²·C), and the window,
    shape (batch, 5) (see `AttentionWindow`).
    """

    def __init__(self, image_height, image_width, channels, n, **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.window = AttentionWindow(image_height, image_width, n, name="read_window")
        # === Config ===
        self.image_height = image_height
        self.image_width = image_width
        self.channels = channels
        self.n = n

    def build(self, x_shape, x_hat_shape=None, h_dec_shape=None):
        self.window.build(h_dec_shape)

    def call(self, x, x_hat, h_dec_prev):
        window = self.window(h_dec_prev)  # eqs. 21-24
        g_x, g_y, delta, sigma2, gamma = unpack_window(window)
        f_x, f_y = filterbank(
            g_x, g_y, delta, sigma2, self.n, self.image_height, self.image_width
        )  # eqs. 19-26
        patch_dim = self.n * self.n * self.channels
        r_x = ops.reshape(read_patch(x, f_x, f_y, gamma), (-1, patch_dim))  # eq. 27
        r_x_hat = ops.reshape(read_patch(x_hat, f_x, f_y, gamma), (-1, patch_dim))  # eq. 27
        return ops.concatenate([r_x, r_x_hat], axis=-1), window

    def compute_output_shape(self, x_shape, x_hat_shape=None, h_dec_shape=None):
        return (x_shape[0], 2 * self.n * self.n * self.channels), (x_shape[0], 5)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_height=self.image_height,
            image_width=self.image_width,
            channels=self.channels,
            n=self.n,
        )
        return config
