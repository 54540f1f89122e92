"""The approximate posterior Q(Z_t | h^enc_t) and its sample (eqs. 1-2, 6)."""

import keras
from keras import ops

from keras_draw.layers.validation import check_positive

# Bound on log σ_t: a deviation from the paper, which leaves it unbounded. σ in
# [exp(−10), exp(5)] spans any useful posterior width and keeps σ² and the KL finite.
LOG_SIGMA_MIN = -10.0
LOG_SIGMA_MAX = 5.0


@keras.saving.register_keras_serializable(package="keras_draw")
class GaussianLatent(keras.layers.Layer):
    """A diagonal Gaussian over z_t from the encoder state, sampled by reparameterisation.

    μ_t = W(h^enc_t)                 (eq. 1)
    σ_t = exp(W(h^enc_t))            (eq. 2)
    z_t = μ_t + σ_t ε_t ~ Q(Z_t | h^enc_t),  ε_t ~ N(0, I)   (eq. 6)

    The noise ε_t is an input, drawn by the caller fresh for every step and image, so the layer
    is deterministic and the same ε reproduces the same z. Returns z_t, μ_t and log σ_t, each of
    shape (batch, latent_dim).
    """

    def __init__(self, latent_dim, **kwargs):
        super().__init__(**kwargs)
        check_positive(latent_dim=latent_dim)
        # === Layers ===
        self.mu = keras.layers.Dense(latent_dim, name="mu", dtype=self.dtype_policy)  # W of eq. 1
        self.log_sigma = keras.layers.Dense(latent_dim, name="log_sigma", dtype=self.dtype_policy)  # W of eq. 2
        # === Config ===
        self.latent_dim = latent_dim

    def build(self, h_enc_shape, epsilon_shape=None):
        self.mu.build(h_enc_shape)
        self.log_sigma.build(h_enc_shape)

    def call(self, h_enc, epsilon):
        mu = self.mu(h_enc)  # eq. 1
        log_sigma = ops.clip(self.log_sigma(h_enc), LOG_SIGMA_MIN, LOG_SIGMA_MAX)  # eq. 2, bounded
        z = mu + ops.exp(log_sigma) * epsilon  # eq. 6, reparameterised
        return z, mu, log_sigma

    def compute_output_shape(self, h_enc_shape, epsilon_shape=None):
        shape = (h_enc_shape[0], self.latent_dim)
        return shape, shape, shape

    def get_config(self):
        config = super().get_config()
        config.update(latent_dim=self.latent_dim)
        return config
