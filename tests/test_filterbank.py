"""The attention filterbank (eqs. 19-26) on inputs small enough to check by hand."""

import numpy as np
import pytest

from keras_draw.filterbank import axis_filterbank, filter_centres, filterbank, grid_offsets


def as_batch(*values):
    return [np.array([v], dtype=np.float32) for v in values]


def test_grid_offsets_are_one_based_and_centred():
    # eq. 19 with i = 1..N: offsets i − N/2 − 0.5 are symmetric about 0 (docs/paper.md pitfall 1).
    np.testing.assert_allclose(grid_offsets(2), [-0.5, 0.5])
    np.testing.assert_allclose(grid_offsets(3), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(grid_offsets(5), [-2.0, -1.0, 0.0, 1.0, 2.0])


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_filter_centres_are_delta_apart_and_average_to_g(n):
    g, delta = as_batch(7.3, 1.7)
    mu = np.asarray(filter_centres(g, delta, n))[0]
    np.testing.assert_allclose(np.diff(mu), np.full(n - 1, 1.7), rtol=1e-5)
    np.testing.assert_allclose(mu.mean(), 7.3, rtol=1e-6)


def test_filter_rows_sum_to_one():
    g_x, g_y, delta, sigma2 = as_batch(4.0, 2.5, 1.2, 0.8)
    f_x, f_y = filterbank(g_x, g_y, delta, sigma2, 3, image_height=6, image_width=9)
    assert f_x.shape == (1, 3, 9) and f_y.shape == (1, 3, 6)  # (batch, N, A), (batch, N, B)
    np.testing.assert_allclose(np.sum(f_x, axis=-1), np.ones((1, 3)), rtol=1e-6)
    np.testing.assert_allclose(np.sum(f_y, axis=-1), np.ones((1, 3)), rtol=1e-6)


def test_filters_match_eq_25_by_hand():
    # N = 2, g = 3, δ = 1: centres 2.5 and 3.5 on pixels a = 1..5; σ² = 2 so 2σ² = 4.
    g, delta, sigma2 = as_batch(3.0, 1.0, 2.0)
    f = np.asarray(axis_filterbank(g, delta, sigma2, 2, 5))[0]
    a = np.arange(1, 6)
    for row, mu in zip(f, (2.5, 3.5)):
        expected = np.exp(-((a - mu) ** 2) / 4.0)  # exp(−(a − μ)² / (2σ²)), docs/paper.md pitfall 2
        np.testing.assert_allclose(row, expected / expected.sum(), rtol=1e-5)


def test_filter_mass_centres_lie_on_the_grid():
    # Narrow filters far from the border: each row's centre of mass is its μ^i, so the
    # filterbank itself (not only filter_centres) averages to g.
    g_x, g_y, delta, sigma2 = as_batch(15.0, 10.0, 2.0, 0.3)
    f_x, f_y = filterbank(g_x, g_y, delta, sigma2, 4, image_height=20, image_width=30)
    for f, g, size in ((f_x, 15.0, 30), (f_y, 10.0, 20)):
        a = np.arange(1, size + 1)
        centres = np.asarray(f)[0] @ a
        np.testing.assert_allclose(centres, g + np.array([-3.0, -1.0, 1.0, 3.0]), atol=1e-4)


def test_a_window_off_the_image_reads_its_nearest_pixels_and_passes_a_gradient():
    # σ² tiny and the window far off the image: exp then divide would underflow to 0/0; eq. 25's
    # rows still sum to 1, all their mass on the pixel nearest each centre (a = 1 here).
    g_x, g_y, delta, sigma2 = as_batch(-50.0, -50.0, 1.0, 1e-4)
    f_x, f_y = filterbank(g_x, g_y, delta, sigma2, 2, image_height=5, image_width=5)
    expected = np.zeros((1, 2, 5))
    expected[:, :, 0] = 1.0
    np.testing.assert_allclose(f_x, expected, atol=1e-6)
    np.testing.assert_allclose(f_y, expected, atol=1e-6)
    # Moderately off the image (centre 3 pixels left of pixel 1, σ² = 4), the gradient of the read
    # of a ramp image with respect to the centre is finite and pulls the window onto the image.
    import tensorflow as tf

    g = tf.Variable([-2.0])
    with tf.GradientTape() as tape:
        f = axis_filterbank(g, tf.constant([1.0]), tf.constant([4.0]), 1, 5)
        read = tf.reduce_sum(f * tf.range(1.0, 6.0))
    gradient = float(tape.gradient(read, g)[0])
    assert np.isfinite(gradient) and gradient > 0.0
