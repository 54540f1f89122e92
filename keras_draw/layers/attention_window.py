"""The attention window's parameters from the decoder state (eqs. 21-24)."""

import math

import keras
from keras import ops

from keras_draw.filterbank import filterbank
from keras_draw.layers.validation import check_grid_size

# Bound on log σ², log δ̃ and log γ before they are exponentiated. A deviation from the paper,
# which leaves them unbounded: exp(±10) already spans any useful variance, stride or intensity,
# and the bound keeps exp() finite (no inf, no NaN) when a weight blows up.
LOG_PARAMETER_LIMIT = 10.0

# The order of the parameters in the (batch, 5) window tensor this layer returns.
WINDOW_PARAMETERS = ("g_x", "g_y", "delta", "sigma2", "gamma")


@keras.saving.register_keras_serializable(package="keras_draw")
class AttentionWindow(keras.layers.Layer):
    """Maps h^dec to the window (g_X, g_Y, δ, σ², γ) of an N×N grid of Gaussian filters.

    (g̃_X, g̃_Y, log σ², log δ̃, log γ) = W(h^dec)         (eq. 21)
    g_X = (A + 1)/2 (g̃_X + 1),  g_Y = (B + 1)/2 (g̃_Y + 1)   (eqs. 22-23)
    δ = (max(A, B) − 1)/(N − 1) δ̃                         (eq. 24)

    Returns a (batch, 5) tensor ordered as `WINDOW_PARAMETERS`; `unpack_window` splits it. Eqs.
    22-24 run in float32 under any dtype policy, the result cast to the compute dtype: the stride
    reaches (max(A, B) − 1)·e^10 (1.2·10^6 for a 54-pixel image), beyond float16's largest 65504,
    so `AttentiveRead` and `AttentiveWrite` keep their windows in float32.
    """

    def __init__(self, image_height, image_width, n, **kwargs):
        super().__init__(**kwargs)
        check_grid_size("n", n, image_height, image_width)
        # === Layers ===
        self.dense = keras.layers.Dense(5, name="window", dtype=self.dtype_policy)  # W of eq. 21
        # === Config ===
        self.image_height = image_height
        self.image_width = image_width
        self.n = n

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, h_dec):
        params = ops.cast(self.dense(h_dec), "float32")  # eq. 21, (batch, 5)
        g_x_tilde, g_y_tilde, log_sigma2, log_delta_tilde, log_gamma = ops.unstack(params, 5, axis=-1)
        log_sigma2, log_delta_tilde, log_gamma = (
            ops.clip(v, -LOG_PARAMETER_LIMIT, LOG_PARAMETER_LIMIT)
            for v in (log_sigma2, log_delta_tilde, log_gamma)
        )
        g_x = (self.image_width + 1) / 2.0 * (g_x_tilde + 1.0)  # eq. 22 (float, docs/paper.md pitfall 8)
        g_y = (self.image_height + 1) / 2.0 * (g_y_tilde + 1.0)  # eq. 23
        stride_scale = (max(self.image_height, self.image_width) - 1) / (self.n - 1.0)
        delta = stride_scale * ops.exp(log_delta_tilde)  # eq. 24
        sigma2 = ops.exp(log_sigma2)
        gamma = ops.exp(log_gamma)
        return ops.cast(ops.stack([g_x, g_y, delta, sigma2, gamma], axis=-1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 5)

    def cover_image(self):
        """Sets the bias of eq. 21 so that, before training, the window covers the image coarsely.

        The N×N filters tile the image into N×N equal cells: the grid centred (g̃ = 0), the
        stride one cell, δ = max(A, B)/N (by eq. 24, δ̃ = δ (N − 1)/(max(A, B) − 1)), each filter's
        σ half a cell, and γ = 1. The weights stay as initialised, so h^dec moves the window
        from there. A zero bias instead puts the centres of an N = 2 read grid on the image's
        corners, σ = 1 pixel: on images whose ink is small and anywhere, a read that sees nothing
        (docs/paper.md, "Two digits on 60×60").
        """
        size = max(self.image_height, self.image_width)
        delta = size / self.n
        log_delta_tilde = math.log(delta * (self.n - 1) / (size - 1))  # eq. 24 solved for δ̃
        log_sigma2 = 2.0 * math.log(delta / 2.0)
        self.dense.bias.assign([0.0, 0.0, log_sigma2, log_delta_tilde, 0.0])  # the order of eq. 21

    def get_config(self):
        config = super().get_config()
        config.update(image_height=self.image_height, image_width=self.image_width, n=self.n)
        return config


def unpack_window(window):
    """Splits a (..., 5) window tensor into g_x, g_y, delta, sigma2, gamma."""
    return ops.unstack(window, 5, axis=-1)


def window_filters(window, n, image_height, image_width, dtype):
    """F_X (batch, N, A), F_Y (batch, N, B) (eqs. 19-26) and γ (batch,) of a float32 window, in `dtype`.

    The filterbank is computed in float32 under any dtype policy, then cast for the read's or the
    write's products: in float16 or bfloat16 the filter centres μ^i lose their sub-pixel precision.
    """
    g_x, g_y, delta, sigma2, gamma = unpack_window(window)
    f_x, f_y = filterbank(g_x, g_y, delta, sigma2, n, image_height, image_width)  # eqs. 19-26
    return ops.cast(f_x, dtype), ops.cast(f_y, dtype), ops.cast(gamma, dtype)
