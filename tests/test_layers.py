"""Every layer: the equations it cites, output shape, weight count and config round trip."""

import json

import keras
import numpy as np
import pytest

from keras_draw.filterbank import filterbank
from keras_draw.layers import (
    AttentionWindow,
    AttentiveRead,
    AttentiveWrite,
    GaussianLatent,
    Read,
    Write,
    unpack_window,
)
from keras_draw.layers.attentive_read import read_patch
from keras_draw.layers.attentive_write import write_patch

RNG = np.random.default_rng(0)


def random(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def set_window_bias(window_layer, g_x_tilde, g_y_tilde, log_sigma2, log_delta_tilde, log_gamma):
    """Zero kernel, so the window is the bias: (g̃_X, g̃_Y, log σ², log δ̃, log γ) (eq. 21)."""
    kernel, _ = window_layer.dense.get_weights()
    bias = np.array([g_x_tilde, g_y_tilde, log_sigma2, log_delta_tilde, log_gamma], np.float32)
    window_layer.dense.set_weights([np.zeros_like(kernel), bias])


def round_trip(layer):
    """The layer rebuilt from its config through JSON."""
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    return keras.saving.deserialize_keras_object(config)


def test_attention_window_follows_eqs_22_to_24():
    layer = AttentionWindow(image_height=5, image_width=7, n=3)  # A = 7 ≠ B = 5
    layer.build((None, 4))
    set_window_bias(layer, 0.5, -0.5, np.log(0.3), np.log(0.8), np.log(1.5))
    g_x, g_y, delta, sigma2, gamma = (np.asarray(v) for v in unpack_window(layer(random(2, 4))))
    np.testing.assert_allclose(g_x, [(7 + 1) / 2 * 1.5] * 2, rtol=1e-6)  # eq. 22
    np.testing.assert_allclose(g_y, [(5 + 1) / 2 * 0.5] * 2, rtol=1e-6)  # eq. 23
    np.testing.assert_allclose(delta, [(7 - 1) / (3 - 1) * 0.8] * 2, rtol=1e-6)  # eq. 24
    np.testing.assert_allclose(sigma2, [0.3] * 2, rtol=1e-6)
    np.testing.assert_allclose(gamma, [1.5] * 2, rtol=1e-6)


def test_attention_window_bounds_its_log_parameters():
    # log σ², log δ̃ and log γ are clipped to ±10 before exp: e^±10, never e^±500 (inf or 0).
    layer = AttentionWindow(image_height=5, image_width=5, n=2)
    layer.build((None, 3))
    stride_scale = (5 - 1) / (2 - 1.0)  # eq. 24's (max(A, B) − 1)/(N − 1)
    for sign in (1.0, -1.0):
        set_window_bias(layer, 0.0, 0.0, sign * 500.0, -sign * 500.0, sign * 500.0)
        _, _, delta, sigma2, gamma = np.asarray(layer(random(1, 3)))[0]
        np.testing.assert_allclose([sigma2, delta, gamma], [np.exp(sign * 10), stride_scale * np.exp(-sign * 10),
                                                            np.exp(sign * 10)], rtol=1e-5)
    set_window_bias(layer, 0.0, 0.0, 9.0, -9.0, 9.0)  # inside the bound: untouched
    _, _, delta, sigma2, gamma = np.asarray(layer(random(1, 3)))[0]
    np.testing.assert_allclose([sigma2, delta, gamma], [np.exp(9.0), stride_scale * np.exp(-9.0), np.exp(9.0)], rtol=1e-5)


@pytest.mark.parametrize("n, size", [(2, 60), (5, 60), (3, 28)])
def test_a_covering_window_tiles_the_image_into_n_cells(n, size):
    layer = AttentionWindow(image_height=size, image_width=size, n=n)
    layer.build((None, 4))
    layer.cover_image()
    window = layer(np.zeros((1, 4), np.float32))  # h^dec = 0: the window is the bias
    g_x, g_y, delta, sigma2, gamma = (float(np.asarray(v)[0]) for v in unpack_window(window))
    cell = size / n
    np.testing.assert_allclose([g_x, g_y, delta, sigma2, gamma], [(size + 1) / 2, (size + 1) / 2, cell, (cell / 2) ** 2, 1.0],
                               rtol=1e-5)
    # The filter centres (eqs. 19-20, 1-based pixels) are the centres of the N cells of the image.
    f_x, _ = filterbank(*(np.array([v], np.float32) for v in (g_x, g_y, delta, sigma2)), n, size, size)
    centres = (np.arange(n) + 0.5) * cell + 0.5  # cell k spans pixels k·cell + 1 .. (k + 1)·cell
    peaks = np.argmax(np.asarray(f_x)[0], axis=1) + 1  # each filter's brightest pixel, 1-based
    assert np.all(np.abs(peaks - centres) <= 0.5)
    # Every pixel is seen: the weakest column weighs at least a third of the strongest's.
    coverage = np.asarray(f_x)[0].sum(axis=0)
    assert coverage.min() > coverage.max() / 3


@pytest.mark.parametrize("n", [0, 1])
def test_grid_below_two_is_rejected(n):
    with pytest.raises(ValueError, match=f"Received: n={n}"):
        AttentionWindow(image_height=5, image_width=5, n=n)


def test_grid_larger_than_the_image_is_rejected():
    with pytest.raises(ValueError, match="Received: n=9"):
        AttentiveRead(image_height=5, image_width=8, channels=1, n=9)


def test_write_is_the_adjoint_of_read_when_gamma_is_one():
    # ⟨F_Y x F_Xᵀ, w⟩ = ⟨x, F_Yᵀ w F_X⟩ for every channel, with A ≠ B and 3 channels.
    g_x, g_y, delta, sigma2 = (np.array(v, np.float32) for v in ([3.0, 5.5], [2.0, 4.0], [1.3, 0.7], [0.9, 2.0]))
    f_x, f_y = filterbank(g_x, g_y, delta, sigma2, 3, image_height=6, image_width=8)
    gamma = np.ones(2, np.float32)
    x, w = random(2, 6, 8, 3), random(2, 3, 3, 3)
    read_x = np.asarray(read_patch(x, f_x, f_y, gamma))
    written = np.asarray(write_patch(w, f_x, f_y, gamma))
    assert read_x.shape == (2, 3, 3, 3) and written.shape == (2, 6, 8, 3)
    np.testing.assert_allclose(np.sum(read_x * w), np.sum(x * written), rtol=1e-4)


def test_gamma_scales_read_and_divides_write():
    g, delta, sigma2 = (np.array([v], np.float32) for v in (3.0, 1.0, 1.0))
    f_x, f_y = filterbank(g, g, delta, sigma2, 2, image_height=5, image_width=5)
    x, w = random(1, 5, 5, 1), random(1, 2, 2, 1)
    one, two = np.ones(1, np.float32), np.full(1, 2.0, np.float32)
    np.testing.assert_allclose(read_patch(x, f_x, f_y, two), 2 * np.asarray(read_patch(x, f_x, f_y, one)), rtol=1e-6)
    np.testing.assert_allclose(write_patch(w, f_x, f_y, two), np.asarray(write_patch(w, f_x, f_y, one)) / 2, rtol=1e-6)


def test_attentive_read_applies_eq_27_to_each_channel():
    layer = AttentiveRead(image_height=6, image_width=8, channels=3, n=2)
    layer.build((None, 6, 8, 3), (None, 6, 8, 3), (None, 4))
    set_window_bias(layer.window, 0.1, -0.2, np.log(0.7), np.log(0.9), np.log(1.3))
    x, x_hat = random(2, 6, 8, 3), random(2, 6, 8, 3)
    r, window = layer(x, x_hat, random(2, 4))
    assert r.shape == (2, 2 * 2 * 2 * 3) and window.shape == (2, 5)  # 2·N²·C
    g_x, g_y, delta, sigma2, gamma = unpack_window(window)
    f_x, f_y = (np.asarray(f) for f in filterbank(g_x, g_y, delta, sigma2, 2, 6, 8))
    expected = [1.3 * f_y[0] @ image[0, :, :, c] @ f_x[0].T for image in (x, x_hat) for c in range(3)]
    r = np.asarray(r)[0].reshape(2, 2, 2, 3)  # ([x, x̂], N, N, C)
    got = [r[k, :, :, c] for k in range(2) for c in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_attentive_write_applies_eq_29():
    layer = AttentiveWrite(image_height=5, image_width=7, channels=1, n=3)
    layer.build((None, 4))
    set_window_bias(layer.window, 0.0, 0.0, 0.0, 0.0, np.log(2.0))
    h_dec = random(1, 4)
    update, window = layer(h_dec)
    kernel, bias = layer.patch.get_weights()
    w = (h_dec @ kernel + bias).reshape(3, 3)  # eq. 28
    g_x, g_y, delta, sigma2, _ = unpack_window(window)
    f_x, f_y = (np.asarray(f)[0] for f in filterbank(g_x, g_y, delta, sigma2, 3, 5, 7))
    np.testing.assert_allclose(np.asarray(update)[0, :, :, 0], f_y.T @ w @ f_x / 2.0, rtol=1e-4, atol=1e-6)


def test_read_without_attention_is_x_and_x_hat():
    x, x_hat = random(2, 3, 4, 2), random(2, 3, 4, 2)
    r = np.asarray(Read()(x, x_hat, random(2, 5)))
    np.testing.assert_array_equal(r, np.concatenate([x.reshape(2, -1), x_hat.reshape(2, -1)], axis=1))


def test_write_without_attention_is_linear():
    keras.utils.set_random_seed(0)  # the kernel's initial values
    layer = Write(image_height=3, image_width=4, channels=2)
    h_dec = random(2, 5)
    update = np.asarray(layer(h_dec))
    kernel, bias = layer.dense.get_weights()
    np.testing.assert_allclose(update, (h_dec @ kernel + bias).reshape(2, 3, 4, 2), rtol=1e-5, atol=1e-6)  # eq. 18, float32 sums


def test_gaussian_latent_is_eqs_1_2_6():
    layer = GaussianLatent(latent_dim=3)
    h_enc, epsilon = random(4, 6), random(4, 3)
    z, mu, log_sigma = (np.asarray(v) for v in layer(h_enc, epsilon))
    mu_kernel, mu_bias = layer.mu.get_weights()
    sigma_kernel, sigma_bias = layer.log_sigma.get_weights()
    np.testing.assert_allclose(mu, h_enc @ mu_kernel + mu_bias, rtol=1e-5, atol=1e-6)  # eq. 1
    np.testing.assert_allclose(log_sigma, h_enc @ sigma_kernel + sigma_bias, rtol=1e-5, atol=1e-6)  # eq. 2
    np.testing.assert_allclose(z, mu + np.exp(log_sigma) * epsilon, rtol=1e-5, atol=1e-6)  # eq. 6


LAYER_CASES = [
    # (layer, build input shapes, call inputs, expected output shapes, expected weight count)
    (lambda: AttentionWindow(5, 7, 3), [(None, 4)], lambda: [random(2, 4)], [(2, 5)], 2),
    (lambda: AttentiveRead(6, 8, 3, 2), [(None, 6, 8, 3), (None, 6, 8, 3), (None, 4)],
     lambda: [random(2, 6, 8, 3), random(2, 6, 8, 3), random(2, 4)], [(2, 24), (2, 5)], 2),
    (lambda: AttentiveWrite(6, 8, 3, 2), [(None, 4)], lambda: [random(2, 4)], [(2, 6, 8, 3), (2, 5)], 4),
    (lambda: Read(), None, lambda: [random(2, 3, 4, 2), random(2, 3, 4, 2), random(2, 5)], [(2, 48)], 0),
    (lambda: Write(3, 4, 2), [(None, 5)], lambda: [random(2, 5)], [(2, 3, 4, 2)], 2),
    (lambda: GaussianLatent(3), [(None, 6)], lambda: [random(2, 6), random(2, 3)], [(2, 3)] * 3, 4),
]


@pytest.mark.parametrize("make, build_shapes, make_inputs, output_shapes, num_weights", LAYER_CASES)
def test_layer_shapes_weights_and_config_round_trip(make, build_shapes, make_inputs, output_shapes, num_weights):
    layer = make()
    if build_shapes:
        layer.build(*build_shapes)
    inputs = make_inputs()
    outputs = layer(*inputs)
    outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
    assert [tuple(o.shape) for o in outputs] == output_shapes
    assert len(layer.weights) == num_weights
    clone = round_trip(layer)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    if build_shapes and not clone.built:
        clone.build(*build_shapes)
    clone.set_weights(layer.get_weights())
    clone_outputs = clone(*inputs)
    clone_outputs = list(clone_outputs) if isinstance(clone_outputs, (tuple, list)) else [clone_outputs]
    for a, b in zip(outputs, clone_outputs):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
