"""Attentive write (eqs. 19-26, 28-29)."""

import keras
from keras import ops

from keras_draw.layers.attention_window import AttentionWindow, window_filters


def write_patch(w, f_x, f_y, gamma):
    """(1/γ) F_Yᵀ w F_X for every channel (eq. 29): (batch, N, N, C) → (batch, B, A, C).

    Two batched matmuls over channels-first patches (faster than one einsum on a CPU); 1/γ
    scales the N×N patch rather than the image, the same product in another order.
    """
    w = w / gamma[:, None, None, None]  # (batch, N, N, C)
    channels_first = ops.transpose(w, (0, 3, 1, 2))  # (batch, C, N, N)
    f_y_t = ops.expand_dims(ops.swapaxes(f_y, 1, 2), 1)  # (batch, 1, B, N)
    image = ops.matmul(ops.matmul(f_y_t, channels_first), ops.expand_dims(f_x, 1))  # (batch, C, B, A)
    return ops.transpose(image, (0, 2, 3, 1))  # (batch, B, A, C)


@keras.saving.register_keras_serializable(package="keras_draw")
class AttentiveWrite(keras.layers.Layer):
    """write(h^dec_t) = (1/γ̂) F̂_Yᵀ w_t F̂_X, with w_t = W(h^dec_t) an N×N patch (eqs. 28-29).

    The window (eqs. 21-24) has its own parameters, apart from the read's; the same filters
    write every colour channel. Returns the canvas update, shape (batch, B, A, C), and the
    window, shape (batch, 5).
    """

    def __init__(self, image_height, image_width, channels, n, **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.patch = keras.layers.Dense(n * n * channels, name="patch", dtype=self.dtype_policy)  # W of eq. 28
        # The window in float32 under any policy (see `AttentionWindow`): 5 units, and eqs. 19-26
        # need float32's range and precision.
        self.window = AttentionWindow(image_height, image_width, n, name="write_window", dtype="float32")
        # === Config ===
        self.image_height = image_height
        self.image_width = image_width
        self.channels = channels
        self.n = n

    def build(self, h_dec_shape):
        self.patch.build(h_dec_shape)
        self.window.build(h_dec_shape)

    def call(self, h_dec):
        w = ops.reshape(self.patch(h_dec), (-1, self.n, self.n, self.channels))  # eq. 28, (batch, N, N, C)
        window = self.window(h_dec)  # eqs. 21-24 with ĝ, δ̂, σ̂², γ̂
        f_x, f_y, gamma = window_filters(window, self.n, self.image_height, self.image_width, w.dtype)  # eqs. 19-26
        return write_patch(w, f_x, f_y, gamma), ops.cast(window, self.compute_dtype)  # eq. 29

    def compute_output_shape(self, h_dec_shape):
        image_shape = (h_dec_shape[0], self.image_height, self.image_width, self.channels)
        return image_shape, (h_dec_shape[0], 5)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_height=self.image_height,
            image_width=self.image_width,
            channels=self.channels,
            n=self.n,
        )
        return config
