"""Attentive read (eqs. 19-27)."""

import keras
from keras import ops

from keras_draw.layers.attention_window import AttentionWindow, window_filters


def read_patch(image, f_x, f_y, gamma):
    """γ F_Y x F_Xᵀ for every channel (eq. 27): (batch, B, A, C) → (batch, N, N, C).

    Two batched matmuls over channels-first images (faster than one einsum on a CPU); the
    transposes move a size-1 axis when C = 1, which TensorFlow does without a copy.
    """
    channels_first = ops.transpose(image, (0, 3, 1, 2))  # (batch, C, B, A)
    f_x_t = ops.expand_dims(ops.swapaxes(f_x, 1, 2), 1)  # (batch, 1, A, N)
    patch = ops.matmul(ops.matmul(ops.expand_dims(f_y, 1), channels_first), f_x_t)  # (batch, C, N, N)
    patch = patch * gamma[:, None, None, None]
    return ops.transpose(patch, (0, 2, 3, 1))  # (batch, N, N, C)


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
        # The window in float32 under any policy (see `AttentionWindow`): 5 units, and eqs. 19-26
        # need float32's range and precision.
        self.window = AttentionWindow(image_height, image_width, n, name="read_window", dtype="float32")
        # === Config ===
        self.image_height = image_height
        self.image_width = image_width
        self.channels = channels
        self.n = n

    def build(self, x_shape, x_hat_shape=None, h_dec_prev_shape=None):
        self.window.build(h_dec_prev_shape)

    def call(self, x, x_hat, h_dec_prev):
        n, channels = self.n, self.channels
        patches, window = self.glimpse(ops.concatenate([x, x_hat], axis=-1), h_dec_prev)  # (batch, N, N, 2C)
        patches = ops.reshape(patches, (-1, n, n, 2, channels))  # (batch, N, N, [x, x̂], C)
        r = ops.transpose(patches, (0, 3, 1, 2, 4))  # (batch, [x, x̂], N, N, C)
        r = ops.reshape(r, (-1, 2 * n * n * channels))  # [r_x, r_x̂], each (N, N, C) flattened
        return r, ops.cast(window, self.compute_dtype)

    def glimpse(self, image, h):
        """γ F_Y image F_Xᵀ through the window that state h places (eqs. 19-27), for images of any
        number of channels: (batch, B, A, C') → the patch (batch, N, N, C') in the image's dtype and
        the window (batch, 5) in float32.

        `call` reads [x, x̂] with it; `keras_draw.DrawClassifier` reads the image alone.
        """
        window = self.window(h)  # eqs. 21-24
        f_x, f_y, gamma = window_filters(window, self.n, self.image_height, self.image_width, image.dtype)  # eqs. 19-26
        return read_patch(image, f_x, f_y, gamma), window  # eq. 27

    def compute_output_shape(self, x_shape, x_hat_shape=None, h_dec_prev_shape=None):
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
