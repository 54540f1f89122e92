"""The DRAW model: the unrolled equations (3-8, 13-16), noise, training and saving."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_draw import Draw, losses

RNG = np.random.default_rng(2)


def binary_images(count, height=28, width=28, channels=1):
    return (RNG.random((count, height, width, channels)) > 0.5).astype(np.float32)


def small(**overrides):
    return Draw.from_preset("tiny", seed=3, **overrides)


def reference_infer(model, x, epsilon):
    """eqs. 3-8 written out step by step in Python, the straightforward way."""
    batch = x.shape[0]
    tile = lambda w: np.tile(np.asarray(w)[None], (batch,) + (1,) * len(w.shape))
    c, h_enc, cell_enc = tile(model.c_0), tile(model.h_enc_0), tile(model.cell_enc_0)
    h_dec, cell_dec = tile(model.h_dec_0), tile(model.cell_dec_0)
    mus, log_sigmas = [], []
    for t in range(model.num_steps):
        x_hat = x - tf.sigmoid(c)  # eq. 3
        r = model.reader(x, x_hat, h_dec)  # eq. 4
        r = r[0] if model.attention else r
        h_enc, (_, cell_enc) = model.encoder(tf.concat([r, h_dec], -1), [h_enc, cell_enc])  # eq. 5
        z, mu, log_sigma = model.latent(h_enc, epsilon[:, t])  # eq. 6
        h_dec, (_, cell_dec) = model.decoder(z, [h_dec, cell_dec])  # eq. 7
        update = model.writer(h_dec)
        c = c + (update[0] if model.attention else update)  # eq. 8
        mus.append(mu)
        log_sigmas.append(log_sigma)
    return c, tf.stack(mus, 1), tf.stack(log_sigmas, 1)


@pytest.mark.parametrize("attention", [True, False])
def test_symbolic_loop_matches_the_equations_step_by_step(attention):
    model = small(attention=attention, image_height=6, image_width=9, channels=3)
    x = binary_images(2, 6, 9, 3)
    epsilon = model.sample_noise(2)
    outputs = model.infer(x, epsilon)
    canvas, mu, log_sigma = reference_infer(model, x, epsilon)
    np.testing.assert_allclose(outputs["canvas"], canvas, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs["mu"], mu, rtol=1e-4, atol=1e-5)
    expected = losses.distortion(x, canvas) + losses.rate(mu, log_sigma)
    np.testing.assert_allclose(model.negative_elbo(x, epsilon)["loss"], expected, rtol=1e-5)


def test_generation_runs_the_decoder_alone_and_returns_the_mean_image():
    model = small()
    epsilon = model.sample_noise(3)
    c, h_dec, cell_dec = (np.tile(np.asarray(w)[None], (3,) + (1,) * len(w.shape)) for w in (model.c_0, model.h_dec_0, model.cell_dec_0))
    for t in range(model.num_steps):  # eqs. 13-15, z̃_t = ε_t
        h_dec, (_, cell_dec) = model.decoder(epsilon[:, t], [h_dec, cell_dec])
        c = c + model.writer(h_dec)[0]
    images = model.decode(epsilon)["images"]
    np.testing.assert_allclose(images, tf.sigmoid(c), rtol=1e-4, atol=1e-6)  # eq. 16: σ(c̃_T)
    generated = np.asarray(model.generate(16))
    assert generated.shape == (16, 28, 28, 1)
    assert generated.min() >= 0.0 and generated.max() <= 1.0


def test_noise_is_fresh_for_every_step_image_and_call():
    model = small()
    first, second = np.asarray(model.sample_noise(4)), np.asarray(model.sample_noise(4))
    assert first.shape == (4, 3, 4)  # (batch, T, |z|)
    assert not np.allclose(first[:, 0], first[:, 1])  # two steps: different noise (pitfall 4)
    assert not np.allclose(first[0], first[1])  # two images
    assert not np.allclose(first, second)  # two calls
    np.testing.assert_array_equal(model.sample_noise(4, seed=7), model.sample_noise(4, seed=7))


def test_drawing_sequence_exposes_canvases_and_windows():
    model = small(image_height=10, image_width=12)
    x = binary_images(2, 10, 12, 1)
    sequence = model.reconstruct_sequence(x, seed=1)
    assert sequence["canvases"].shape == (2, 3, 10, 12, 1)
    assert sequence["read_window"].shape == (2, 3, 5) and sequence["write_window"].shape == (2, 3, 5)
    np.testing.assert_allclose(sequence["canvases"][:, -1], tf.sigmoid(sequence["canvas"]), rtol=1e-6)
    generated = model.generate_sequence(2, seed=1)
    assert generated["canvases"].shape == (2, 3, 10, 12, 1) and generated["write_window"].shape == (2, 3, 5)
    np.testing.assert_allclose(generated["canvases"][:, -1], model.generate(2, seed=1), rtol=1e-6)


@pytest.mark.parametrize("argument, value", [("read_n", 1), ("write_n", 0), ("write_n", 29), ("num_steps", 0), ("latent_dim", -1)])
def test_bad_arguments_are_rejected_with_the_value(argument, value):
    with pytest.raises(ValueError, match=f"Received: {argument}={value}"):
        small(**{argument: value})


def test_wrong_image_shape_is_rejected():
    with pytest.raises(ValueError, match=r"Received: shape=\(2, 28, 27, 1\)"):
        small().reconstruct(np.zeros((2, 28, 27, 1), np.float32))


def test_presets_match_table_3_and_overrides_apply():
    mnist = Draw.from_preset("mnist")
    assert (mnist.num_steps, mnist.encoder_units, mnist.latent_dim, mnist.read_n, mnist.write_n) == (64, 256, 100, 2, 5)
    svhn = Draw.from_preset("svhn", num_steps=4)
    assert (svhn.image_shape, svhn.num_steps, svhn.decoder_units, svhn.read_n) == ((32, 32, 3), 4, 800, 12)
    assert not Draw.from_preset("mnist_no_attention").attention
    with pytest.raises(ValueError, match="Supported: mnist"):
        Draw.from_preset("imagenet")


def test_config_round_trips_through_json():
    model = small(image_height=6, image_width=9, channels=3, attention=False)
    config = json.loads(json.dumps(model.get_config()))
    assert Draw.from_config(config).get_config() == model.get_config()


def test_fit_and_evaluate_report_the_three_terms_in_nats():
    model = small()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = binary_images(40)
    history = model.fit(x, batch_size=20, epochs=2, verbose=0)
    assert set(history.history) == {"loss", "reconstruction_loss", "kl_loss"}
    results = model.evaluate(x, batch_size=20, return_dict=True, verbose=0)
    assert set(results) == {"loss", "reconstruction_loss", "kl_loss"}
    np.testing.assert_allclose(results["loss"], results["reconstruction_loss"] + results["kl_loss"], rtol=1e-4)
    assert 0 < results["kl_loss"] < results["reconstruction_loss"] < 784 * 2


def test_saved_model_reloads_with_identical_outputs(tmp_path):
    model = small()
    model.compile(optimizer="adam")
    model.fit(binary_images(20), batch_size=10, epochs=1, verbose=0)
    path = tmp_path / "draw.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Draw) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.generate(5, seed=11), model.generate(5, seed=11))
    x = binary_images(4)
    np.testing.assert_array_equal(loaded.reconstruct(x, seed=2), model.reconstruct(x, seed=2))


def test_gradient_clipping_bounds_the_update():
    model = small(clip_norm=1e-3)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    before = [np.asarray(w) for w in model.trainable_weights]
    model.fit(binary_images(10), batch_size=10, epochs=1, verbose=0)
    change = np.sqrt(sum(np.sum((np.asarray(w) - b) ** 2) for w, b in zip(model.trainable_weights, before)))
    assert 0 < change <= 1e-3 * (1 + 1e-4)  # SGD(1.0) moves by the clipped gradient norm
