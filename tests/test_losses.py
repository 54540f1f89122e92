"""The two terms of the negative ELBO against their closed forms (eqs. 9-11)."""

import numpy as np

from keras_draw.losses import distortion, rate

RNG = np.random.default_rng(1)


def test_kl_is_eq_11_with_the_per_dimension_constant():
    mu = RNG.standard_normal((3, 4, 5)).astype(np.float32)  # (batch, T, |z|)
    log_sigma = 0.3 * RNG.standard_normal((3, 4, 5)).astype(np.float32)
    sigma2 = np.exp(2 * log_sigma)
    T, z = 4, 5
    eq_11 = 0.5 * np.sum(mu**2 + sigma2 - np.log(sigma2), axis=(1, 2)) - T * z / 2  # docs/paper.md pitfall 3
    np.testing.assert_allclose(rate(mu, log_sigma), eq_11, rtol=1e-5)


def test_kl_is_zero_at_the_prior():
    zeros = np.zeros((2, 3, 4), np.float32)
    np.testing.assert_allclose(rate(zeros, zeros), [0.0, 0.0], atol=1e-6)


def test_distortion_is_bernoulli_cross_entropy():
    canvas = RNG.standard_normal((2, 3, 4, 1)).astype(np.float32)
    p = 1 / (1 + np.exp(-canvas))
    for x in ((RNG.random((2, 3, 4, 1)) > 0.5).astype(np.float32), RNG.random((2, 3, 4, 1)).astype(np.float32)):
        expected = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))  # eq. 9
        np.testing.assert_allclose(distortion(x, canvas), expected, rtol=1e-5)


def test_distortion_is_stable_for_saturated_canvases():
    canvas = np.full((1, 2, 2, 1), 200.0, np.float32)
    x = np.array([[[[1.0], [0.0]], [[1.0], [1.0]]]], np.float32)
    np.testing.assert_allclose(distortion(x, canvas), [200.0], rtol=1e-5)  # one pixel wrong by 200 nats
