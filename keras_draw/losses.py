"""The two terms of DRAW's loss, the negative ELBO (eqs. 9-12), with tensorflow-probability.

Following the information-theory names of TFP's examples: `distortion` is L^x = −log D(x | c_T)
and `rate` is L^z = Σ_t KL(Q(Z_t | h^enc_t) ‖ P(Z_t)). Both are in nats per image. The
distributions are built here, from tensors, and never leave these functions.
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def distortion(x, canvas):
    """L^x = −log D(x | c_T), D = Bernoulli(σ(c_T)) per pixel (eq. 9). Shape (batch,).

    For binary images this is a true log-likelihood. For greyscale or colour intensities in
    [0, 1] it is the paper's choice of reading each intensity as a Bernoulli probability: the
    cross-entropy between x and σ(c_T), which is not a normalised likelihood for continuous data.
    """
    d = tfd.Bernoulli(logits=canvas, dtype=canvas.dtype)  # D(X | c_T), eq. 9
    return -tf.reduce_sum(d.log_prob(x), axis=[1, 2, 3])


def rate(mu, log_sigma):
    """L^z = Σ_t KL(N(μ_t, σ_t²) ‖ N(0, I)), summed over steps and units (eqs. 10-11).

    Args:
        mu, log_sigma: posterior parameters of every step, shape (batch, T, latent_dim).

    Returns:
        (batch,) KL in nats; tfd.kl_divergence has eq. 11's constant −T·|z|/2 right (docs/paper.md pitfall 3).
    """
    q = tfd.Normal(loc=mu, scale=tf.exp(log_sigma))  # Q(Z_t | h^enc_t), eq. 6
    p = tfd.Normal(loc=tf.zeros_like(mu), scale=tf.ones_like(mu))  # P(Z_t) = N(0, I)
    return tf.reduce_sum(tfd.kl_divergence(q, p), axis=[1, 2])  # eq. 10
