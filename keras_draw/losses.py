"""DRAW's probabilistic core, with tensorflow-probability: the distributions of the model, the
two terms of its loss, the negative ELBO (eqs. 9-12), and the importance weights of evaluation.

Following the information-theory names of TFP's examples: `distortion` is L^x = −log D(x | c_T)
and `rate` is L^z = Σ_t KL(Q(Z_t | h^enc_t) ‖ P(Z_t)). Both are in nats per image. The
distributions are built here, from tensors, and nowhere else in the package.
"""

import tensorflow as tf


def distributions():
    """`tfp.distributions`, imported on first use: TFP takes seconds to import (it loads tf-keras),
    and `import keras_draw` with keras, which imports this module, stays light."""
    import tensorflow_probability as tfp

    return tfp.distributions


def likelihood(canvas):
    """D(X | c_T) = Bernoulli(σ(c_T)) per pixel (eq. 9)."""
    return distributions().Bernoulli(logits=canvas, dtype=canvas.dtype)


def posterior(mu, log_sigma):
    """Q(Z_t | h^enc_t) = N(μ_t, σ_t²) per step and unit (eq. 6)."""
    return distributions().Normal(loc=mu, scale=tf.exp(log_sigma))


def prior(like):
    """P(Z_t) = N(0, I), shaped like the tensor `like`."""
    return distributions().Normal(loc=tf.zeros_like(like), scale=tf.ones_like(like))


def distortion(x, canvas):
    """L^x = −log D(x | c_T) (eq. 9). Shape (batch,).

    For binary images this is a true log-likelihood. For greyscale or colour intensities in
    [0, 1] it is the paper's choice of reading each intensity as a Bernoulli probability: the
    cross-entropy between x and σ(c_T), which is not a normalised likelihood for continuous data.
    """
    return -tf.reduce_sum(likelihood(canvas).log_prob(x), axis=[1, 2, 3])


def rate(mu, log_sigma):
    """L^z = Σ_t KL(N(μ_t, σ_t²) ‖ N(0, I)), summed over steps and units (eqs. 10-11).

    Args:
        mu, log_sigma: posterior parameters of every step, shape (batch, T, latent_dim).

    Returns:
        (batch,) KL in nats; TFP's kl_divergence has eq. 11's constant −T·|z|/2 right (docs/paper.md pitfall 3).
    """
    return tf.reduce_sum(distributions().kl_divergence(posterior(mu, log_sigma), prior(mu)), axis=[1, 2])  # eq. 10


def negative_elbo(x, canvas, mu, log_sigma):
    """The per-image loss terms, shape (batch,) each: `reconstruction_loss` L^x, `kl_loss` L^z and
    their sum `loss`, the negative ELBO of one z sample per step (eq. 12)."""
    reconstruction_loss = distortion(x, canvas)  # eq. 9
    kl_loss = rate(mu, log_sigma)  # eqs. 10-11
    loss = reconstruction_loss + kl_loss  # eq. 12
    return {"loss": loss, "reconstruction_loss": reconstruction_loss, "kl_loss": kl_loss}


def log_weight(x, canvas, z, mu, log_sigma):
    """log w = log p(x, z) − log q(z | x) = log D(x | c_T) + Σ_t [log P(z_t) − log Q(z_t | h^enc_t)]
    of one inference pass that drew z (Burda et al. 2016); shape (batch,)."""
    log_ratio = prior(z).log_prob(z) - posterior(mu, log_sigma).log_prob(z)  # (batch, T, |z|)
    return -distortion(x, canvas) + tf.reduce_sum(log_ratio, axis=[1, 2])
