"""The DRAW model: the unrolled equations (3-8, 13-16), noise, training and saving."""

import json

import keras
import re

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


def numpy_negative_elbo(model, x, epsilon):
    """eqs. 3-12 in numpy from the layers' weights, with keras.layers.LSTMCell's equations.

    Independent of the model's code paths (its loop, filterbank and read/write matmuls): only
    the weights are shared.
    """
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))
    w = lambda layer: [np.asarray(v, np.float64) for v in layer.weights]
    x = np.asarray(x, np.float64)
    epsilon = np.asarray(epsilon, np.float64)
    batch, height, width, channels = x.shape

    def lstm(cell, inputs, h, c):  # keras.layers.LSTMCell: gates i, f, c, o
        kernel, recurrent_kernel, bias = w(cell)
        z_i, z_f, z_c, z_o = np.split(inputs @ kernel + h @ recurrent_kernel + bias, 4, axis=-1)
        c = sigmoid(z_f) * c + sigmoid(z_i) * np.tanh(z_c)
        return sigmoid(z_o) * np.tanh(c), c

    def window(layer, h_dec):  # eqs. 21-24
        kernel, bias = w(layer.dense)
        g_x, g_y, log_sigma2, log_delta, log_gamma = np.moveaxis(h_dec @ kernel + bias, -1, 0)
        log_sigma2, log_delta, log_gamma = (np.clip(v, -10, 10) for v in (log_sigma2, log_delta, log_gamma))
        delta = (max(height, width) - 1) / (layer.n - 1) * np.exp(log_delta)
        return (width + 1) / 2 * (g_x + 1), (height + 1) / 2 * (g_y + 1), delta, np.exp(log_sigma2), np.exp(log_gamma)

    def filters(g, delta, sigma2, n, size):  # eqs. 19-20, 25-26, 1-based grid and pixels
        mu = g[:, None] + (np.arange(1, n + 1) - n / 2 - 0.5)[None] * delta[:, None]
        f = np.exp(-((np.arange(1, size + 1)[None, None] - mu[:, :, None]) ** 2) / (2 * sigma2[:, None, None]))
        return f / np.maximum(f.sum(-1, keepdims=True), 1e-8)

    tile = lambda v: np.tile(np.asarray(v, np.float64)[None], (batch,) + (1,) * len(v.shape))
    c, h_enc, cell_enc = tile(model.c_0), tile(model.h_enc_0), tile(model.cell_enc_0)
    h_dec, cell_dec = tile(model.h_dec_0), tile(model.cell_dec_0)
    kl = np.zeros(batch)
    for t in range(model.num_steps):
        x_hat = x - sigmoid(c)  # eq. 3
        if model.attention:
            g_x, g_y, delta, sigma2, gamma = window(model.reader.window, h_dec)
            f_x, f_y = (filters(g, delta, sigma2, model.read_n, size) for g, size in ((g_x, width), (g_y, height)))
            read = lambda image: gamma[:, None, None, None] * np.einsum("bnh,bhwc,bmw->bnmc", f_y, image, f_x)
            r = np.concatenate([read(x).reshape(batch, -1), read(x_hat).reshape(batch, -1)], -1)  # eq. 27
        else:
            r = np.concatenate([x.reshape(batch, -1), x_hat.reshape(batch, -1)], -1)  # eq. 17
        h_enc, cell_enc = lstm(model.encoder, np.concatenate([r, h_dec], -1), h_enc, cell_enc)  # eq. 5
        (mu_kernel, mu_bias), (sigma_kernel, sigma_bias) = w(model.latent.mu), w(model.latent.log_sigma)
        mu = h_enc @ mu_kernel + mu_bias  # eq. 1
        log_sigma = np.clip(h_enc @ sigma_kernel + sigma_bias, -10, 5)  # eq. 2
        z = mu + np.exp(log_sigma) * epsilon[:, t]  # eq. 6
        kl += np.sum(0.5 * (mu**2 + np.exp(2 * log_sigma) - 2 * log_sigma - 1), -1)  # eq. 11
        h_dec, cell_dec = lstm(model.decoder, z, h_dec, cell_dec)  # eq. 7
        if model.attention:
            patch_kernel, patch_bias = w(model.writer.patch)
            patch = (h_dec @ patch_kernel + patch_bias).reshape(batch, model.write_n, model.write_n, channels)
            g_x, g_y, delta, sigma2, gamma = window(model.writer.window, h_dec)
            f_x, f_y = (filters(g, delta, sigma2, model.write_n, size) for g, size in ((g_x, width), (g_y, height)))
            update = np.einsum("bnh,bnmc,bmw->bhwc", f_y, patch, f_x) / gamma[:, None, None, None]  # eq. 29
        else:
            kernel, bias = w(model.writer.dense)
            update = (h_dec @ kernel + bias).reshape(x.shape)  # eq. 18
        c = c + update  # eq. 8
    p = sigmoid(c)
    distortion = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))  # eq. 9
    return distortion + kl  # eq. 12


@pytest.mark.parametrize("attention", [True, False])
def test_loss_at_a_fixed_seed_matches_a_numpy_reference(attention):
    model = small(attention=attention, image_height=6, image_width=9, channels=3)
    x = binary_images(3, 6, 9, 3)
    epsilon = model.sample_noise(3, seed=5)
    expected = numpy_negative_elbo(model, x, epsilon)
    np.testing.assert_allclose(model.negative_elbo(x, epsilon)["loss"], expected, rtol=1e-4)
    model.compile()  # the training path: XLA on the loop's step body on a CPU
    assert model.loop_jit_compile or model.jit_compile
    loss = tf.function(lambda x, e: model._negative_elbo(x, e, jit_step=True)["loss"])(x, epsilon)
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_the_unrolled_training_loop_gives_the_symbolic_loops_gradients():
    model = small(image_height=6, image_width=9, channels=3)
    x = binary_images(3, 6, 9, 3)
    epsilon = model.sample_noise(3, seed=5)

    @tf.function
    def gradients(unroll):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model._negative_elbo(x, epsilon, jit_step=unroll, unroll=unroll)["loss"])
        return tape.gradient(loss, model.trainable_weights)

    for unrolled, symbolic in zip(gradients(True), gradients(False)):
        assert np.abs(symbolic).sum() > 0
        np.testing.assert_allclose(unrolled, symbolic, rtol=1e-3, atol=1e-5)


def test_compile_unrolls_by_default_where_the_step_body_alone_is_compiled():
    model = small()
    assert model.loop_settings() == (True, True)  # before compile: its defaults, on a CPU
    model.compile()
    assert (model.loop_jit_compile, model.loop_unroll) == (True, True)
    assert model.get_compile_config()["unroll"] == "auto"
    model.compile(unroll=False)
    assert model.loop_settings() == (True, False)
    model.compile(jit_compile=False)  # unrolled without XLA, tracing would grow with T
    assert model.loop_settings() == (False, False)
    with pytest.raises(ValueError, match="`unroll` must be True, False or 'auto'. Received: unroll='yes'"):
        model.compile(unroll="yes")


def test_compiled_passes_give_the_plain_passes_results():
    model = small(image_height=6, image_width=9, channels=3)
    x = binary_images(3, 6, 9, 3)
    epsilon = model.sample_noise(3, seed=5)
    plain = model.infer(x, epsilon, return_sequence=True)
    compiled = tf.function(lambda x, e: model.infer(x, e, return_sequence=True, compiled=True))(x, epsilon)
    assert set(compiled) == set(plain)
    for name in plain:
        np.testing.assert_allclose(compiled[name], plain[name], rtol=1e-4, atol=1e-5, err_msg=name)
    loss = tf.function(lambda x, e: model.negative_elbo(x, e, compiled=True)["loss"])(x, epsilon)
    np.testing.assert_allclose(loss, numpy_negative_elbo(model, x, epsilon), rtol=1e-4)


@pytest.mark.slow
def test_an_unrolled_model_trains_and_reloads_unrolled(tmp_path):
    model = small(image_height=6, image_width=9, channels=3)
    x = binary_images(3, 6, 9, 3)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), unroll=True)
    before = model.evaluate(x, batch_size=3, verbose=0, return_dict=True)["loss"]
    model.fit(x, batch_size=3, epochs=5, verbose=0)
    assert model.evaluate(x, batch_size=3, verbose=0, return_dict=True)["loss"] < before
    model.save(tmp_path / "draw.keras")
    assert keras.saving.load_model(tmp_path / "draw.keras").loop_unroll


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
    assert not np.allclose(first[:, 0], first[:, 1])  # two steps: different noise (docs/paper.md pitfall 4)
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
    model.compile(jit_compile=False, optimizer=keras.optimizers.Adam(1e-2))
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
    assert loaded.get_compile_config()["jit_compile"] == "auto" and loaded.loop_jit_compile == model.loop_jit_compile
    np.testing.assert_array_equal(loaded.generate(5, seed=11), model.generate(5, seed=11))
    x = binary_images(4)
    np.testing.assert_array_equal(loaded.reconstruct(x, seed=2), model.reconstruct(x, seed=2))


def test_gradient_clipping_bounds_the_update():
    model = small(clip_norm=1e-3)
    model.compile(jit_compile=False, optimizer=keras.optimizers.SGD(1.0))
    before = [np.asarray(w) for w in model.trainable_weights]
    model.fit(binary_images(10), batch_size=10, epochs=1, verbose=0)
    change = np.sqrt(sum(np.sum((np.asarray(w) - b) ** 2) for w, b in zip(model.trainable_weights, before)))
    assert 0 < change <= 1e-3 * (1 + 1e-4)  # SGD(1.0) moves by the clipped gradient norm


def test_images_outside_zero_one_are_refused_by_fit_evaluate_predict_call_reconstruct_and_the_elbo():
    from keras_draw import evaluate

    model = small()  # one model for every value: fit and evaluate are traced once
    model.compile(jit_compile=False, optimizer="adam")
    for bad in (np.nan, -0.5, 255.0):
        images = binary_images(4)
        images[1, 3, 4, 0] = bad
        for run in (lambda: model.fit(images, batch_size=4, verbose=0),
                    lambda: model.evaluate(images, batch_size=4, verbose=0),
                    lambda: model.predict(images, batch_size=4, verbose=0),
                    lambda: model(images),
                    lambda: model.reconstruct(images),
                    lambda: model.negative_elbo(images),
                    lambda: evaluate.evaluate(model, images, importance_samples=2)):
            with pytest.raises(tf.errors.InvalidArgumentError, match=r"values in \[0, 1\]"):
                run()


def test_images_outside_zero_one_are_refused_where_xla_compiles_the_whole_step():
    """XLA drops assertions from what it compiles: fit, evaluate and predict check outside it."""
    model = small()
    model.compile(jit_compile=True, optimizer="adam")
    images = binary_images(4)
    images[1, 3, 4, 0] = 255.0
    pipeline = tf.data.Dataset.from_tensor_slices(images).batch(2)
    for run in (lambda: model.fit(images, batch_size=4, verbose=0),
                lambda: model.fit(pipeline, verbose=0),
                lambda: model.fit(binary_images(4), batch_size=4, validation_data=pipeline, verbose=0),
                lambda: model.evaluate(pipeline, verbose=0),
                lambda: model.predict(images, batch_size=4, verbose=0),
                lambda: model.predict(pipeline, verbose=0)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"values in \[0, 1\]"):
            run()
    assert model.predict(binary_images(4), batch_size=4, verbose=0).shape == (4, 28, 28, 1)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_an_empty_batch_is_refused_in_one_line_everywhere(jit_compile):
    """Zero images are refused as generate(0) is: Keras's LSTM cell fails on an empty batch
    ("Biases must be 1D") and keras.Model.predict on no data with an UnboundLocalError."""
    model = small()
    model.compile(jit_compile=jit_compile, optimizer="adam")
    no_images, no_noise = np.zeros((0, 28, 28, 1), np.float32), np.zeros((0, 3, 4), np.float32)
    for run in (lambda: model.reconstruct(no_images), lambda: model.reconstruct_sequence(no_images),
                lambda: model(no_images), lambda: model.negative_elbo(no_images),
                lambda: model.predict(no_images, verbose=0), lambda: model.fit(no_images, verbose=0),
                lambda: model.evaluate(no_images, verbose=0)):
        with pytest.raises(ValueError, match=r"`images` must hold at least one image\. "
                                             r"Received: shape=\(0, 28, 28, 1\)"):
            run()
    for run in (lambda: model.decode(no_noise), lambda: model.infer(binary_images(2)[:0], no_noise)):
        with pytest.raises(ValueError, match=r"`noise` must hold at least one image.s noise\. "
                                             r"Received: shape=\(0, 3, 4\)"):
            run()
    # a batch size known only when the graph runs is not refused at trace time
    traced = tf.function(lambda x: model.reconstruct(x, seed=1), input_signature=[tf.TensorSpec((None, 28, 28, 1))])
    x = binary_images(2)
    np.testing.assert_allclose(traced(x), model.reconstruct(x, seed=1), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 5, 4), (2, 3, 7), (2, 3)])
def test_noise_of_another_number_of_steps_or_size_is_refused(shape):
    model = small()  # T = 3, |z| = 4
    epsilon = np.zeros(shape, np.float32)
    for run in (lambda: model.decode(epsilon), lambda: model.infer(binary_images(2), epsilon),
                lambda: model.negative_elbo(binary_images(2), epsilon)):
        with pytest.raises(ValueError, match=rf"Expected noise of shape \(batch, 3, 4\).*shape={re.escape(str(shape))}"):
            run()


def test_noise_for_another_number_of_images_is_refused_in_one_line():
    model = small()
    x, epsilon = binary_images(4), np.zeros((3, 3, 4), np.float32)
    for run in (lambda: model.infer(x, epsilon), lambda: model.negative_elbo(x, epsilon)):
        with pytest.raises(ValueError, match=r"^Expected noise for each of the 4 images\. "
                                             r"Received: noise of shape \(3, 3, 4\)$"):
            run()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_noise_that_is_not_finite_is_refused(bad):
    model = small()
    epsilon = np.zeros((2, 3, 4), np.float32)
    epsilon[1, 2, 3] = bad
    traced_decode = tf.function(lambda e: model.decode(e)["images"])
    for run in (lambda: model.decode(epsilon), lambda: model.infer(binary_images(2), epsilon),
                lambda: model.negative_elbo(binary_images(2), epsilon), lambda: traced_decode(epsilon)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="Noise must be finite"):
            run()


def test_generate_refuses_a_non_positive_count():
    with pytest.raises(ValueError, match="Received: num_images=0"):
        small().generate(0)


@pytest.mark.parametrize("count", [np.int64(2), np.int32(2), np.uint8(2)])
def test_generate_takes_a_count_of_any_integer_type(count):
    model = small()
    np.testing.assert_array_equal(model.generate(count, seed=1), model.generate(2, seed=1))
    assert model.generate_sequence(count, seed=1)["canvases"].shape[0] == 2


def test_generate_refuses_a_count_beyond_memory_before_drawing_its_noise(monkeypatch):
    from keras_draw.layers import validation

    model = small()  # T = 3, |z| = 4, 28x28x1, 16 decoder units
    per_image = 4 * (2 * 3 * 4 + 2 * 784 + 6 * 16)  # noise twice, canvas and σ, decoder state and gates
    per_drawing = per_image + 4 * 2 * 3 * (784 + 5)  # and the T canvases and windows, twice
    monkeypatch.setattr(validation, "machine_memory", lambda: 2 * per_drawing * 10)
    assert model.generate_sequence(np.int64(10), seed=1)["canvases"].shape[0] == 10
    with pytest.raises(ValueError, match=r"`num_images` must be at most 10 on this machine.*num_images=11"):
        model.generate_sequence(11)
    assert model.generate(2 * per_drawing * 10 // 2 // per_image).shape[0] > 10
    monkeypatch.undo()
    with pytest.raises(ValueError, match=rf"on this machine: a generated image takes about .*num_images={10**12}"):
        model.generate(10**12)


@pytest.mark.parametrize("count", [True, 2.0, np.float32(2), "2", None])
def test_generate_refuses_a_count_that_is_not_an_integer(count):
    for generate in (small().generate, small().generate_sequence):
        with pytest.raises(ValueError, match=re.escape(f"Received: num_images={count!r}")):
            generate(count)


@pytest.mark.parametrize("clip_norm", [np.inf, np.nan, -1.0, True, "10"])
def test_a_clip_norm_that_is_not_a_finite_non_negative_number_is_refused(clip_norm):
    with pytest.raises(ValueError, match=re.escape(f"Received: clip_norm={clip_norm!r}")):
        small(clip_norm=clip_norm)


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_extreme_images_give_finite_loss_and_gradients(fill):
    model = small()
    x = np.full((4, 28, 28, 1), fill, np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.negative_elbo(x)["loss"])
    gradients = tape.gradient(loss, model.trainable_weights)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in gradients)


@pytest.mark.parametrize("bias", [-1e4, 1e4])
def test_extreme_windows_and_weights_give_finite_loss_and_gradients(bias):
    # Every window parameter and posterior log σ driven far past the clipping bounds, and large
    # weights everywhere: stride, variance and γ huge or tiny, filters underflowing.
    model = small()
    for layer in (model.reader.window.dense, model.writer.window.dense, model.latent.log_sigma):
        kernel, b = layer.get_weights()
        layer.set_weights([kernel * 100, np.full_like(b, bias)])
    x = binary_images(4)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.negative_elbo(x)["loss"])
    gradients = tape.gradient(loss, model.trainable_weights)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in gradients)


def test_training_at_a_high_learning_rate_stays_finite():
    model = small()
    model.compile(jit_compile=False, optimizer=keras.optimizers.Adam(0.1))
    history = model.fit(binary_images(200), batch_size=20, epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


@pytest.mark.parametrize("precision, lstm_dtype, rtol", [
    ("mixed_bfloat16", "bfloat16", 1e-2),  # bfloat16 keeps ~3 significant digits
    ("mixed_float16", "float16", 2e-3),  # float16 keeps ~3 significant digits, and a wider range of them
])
def test_mixed_precision_computes_the_lstms_in_half_precision_and_the_loss_as_float32_does(precision, lstm_dtype, rtol):
    full = Draw.from_preset("tiny", seed=0)
    mixed = Draw.from_preset("tiny", seed=0, dtype=precision)
    mixed.set_weights(full.get_weights())
    assert {w.dtype for w in mixed.weights} == {"float32"}
    assert mixed.encoder.compute_dtype == mixed.decoder.compute_dtype == lstm_dtype
    assert mixed.reader.window.dense.compute_dtype == mixed.writer.patch.compute_dtype == "float32"
    assert mixed.latent.mu.compute_dtype == "float32"
    x = (np.random.default_rng(0).random((16, 28, 28, 1)) > 0.5).astype("float32")
    epsilon = full.sample_noise(16, seed=3)
    expected, got = full.negative_elbo(x, epsilon)["loss"], mixed.negative_elbo(x, epsilon)["loss"]
    assert got.dtype == "float32"
    np.testing.assert_allclose(got, expected, rtol=rtol)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_step_body_xla(precision):
    mixed = Draw.from_preset("tiny", seed=0, dtype=precision)
    x = (np.random.default_rng(0).random((16, 28, 28, 1)) > 0.5).astype("float32")
    mixed.compile(optimizer=keras.optimizers.Adam(1e-3))  # step-body XLA on a CPU
    before = [w.copy() for w in mixed.get_weights()]
    logs = mixed.train_on_batch(x, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.array_equal(a, b) for a, b in zip(before, mixed.get_weights()))


def test_mixed_float16_scales_the_loss_and_clips_the_unscaled_gradients():
    # One SGD step clipped to norm 1 moves the weights by exactly learning rate × 1, as in float32:
    # clipping the scaled gradients (2^15 times larger) would not, nor would unscaling them twice.
    x = (np.random.default_rng(0).random((16, 28, 28, 1)) > 0.5).astype("float32")
    updates = {}
    for precision in ("float32", "mixed_float16"):
        model = Draw.from_preset("tiny", seed=0, dtype=precision, clip_norm=1.0)
        model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=False)
        before = model.get_weights()
        model.train_on_batch(x)
        updates[precision] = np.concatenate([(b - a).ravel() for a, b in zip(before, model.get_weights())])
    mixed = model
    assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer)  # Keras's compile wraps it
    assert float(mixed.optimizer.dynamic_scale) == 2.0**15  # finite gradients: the step was not skipped
    for update in updates.values():
        np.testing.assert_allclose(np.linalg.norm(update), 0.01, rtol=1e-4)
    cosine = updates["float32"] @ updates["mixed_float16"] / 0.01**2
    assert cosine > 0.99, cosine


@pytest.mark.slow
def test_a_few_mixed_float16_steps_lower_the_loss_as_float32_does():
    pattern = np.random.default_rng(0).random((1, 28, 28, 1)) > 0.5  # one image to learn, ~543 nats at first
    x = np.repeat(pattern, 32, axis=0).astype("float32")
    losses = {}
    for precision in ("float32", "mixed_float16"):
        model = Draw.from_preset("tiny", seed=0, dtype=precision)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
        before = model.evaluate(x, batch_size=32, return_dict=True, verbose=0)["loss"]
        model.fit(x, batch_size=8, epochs=3, verbose=0, shuffle=False)  # 12 steps
        losses[precision] = before, model.evaluate(x, batch_size=32, return_dict=True, verbose=0)["loss"]
    (before, after), (before_f32, after_f32) = losses["mixed_float16"], losses["float32"]
    np.testing.assert_allclose(before, before_f32, rtol=1e-4)
    assert after < before - 30, losses  # float32: 543.6 -> 496.8
    np.testing.assert_allclose(after, after_f32, rtol=0.02)


def test_initialize_canvas_starts_the_canvas_at_the_mean_image():
    model = Draw.from_preset("tiny", seed=0)
    rng = np.random.default_rng(0)
    mean = rng.uniform(0.0, 1.0, size=model.image_shape).astype(np.float32)
    mean[0, 0, 0], mean[0, 1, 0] = 0.0, 1.0  # a pixel always off, one always on
    model.initialize_canvas(mean)
    expected = np.clip(mean, 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(1 / (1 + np.exp(-model.c_0.numpy())), expected, rtol=1e-4)
    assert np.all(np.isfinite(model.c_0.numpy()))
    # Before any write, the first error image (eq. 3) of x = the mean is zero where unclipped.
    unclipped = (mean > 1e-3) & (mean < 1 - 1e-3)
    x_hat = mean - 1 / (1 + np.exp(-model.c_0.numpy()))
    np.testing.assert_allclose(x_hat[unclipped], 0.0, atol=1e-5)
    np.testing.assert_allclose(x_hat[0, :2, 0], [-1e-3, 1e-3], rtol=1e-3)  # clipped: 0 → 1e-3, 1 → 1 − 1e-3


def test_initialize_canvas_refuses_a_mean_of_another_shape():
    model = Draw.from_preset("tiny", seed=0)
    before = model.c_0.numpy()
    with pytest.raises(ValueError, match=r"Received: shape=\(28, 28\)"):
        model.initialize_canvas(np.zeros((28, 28), np.float32))
    np.testing.assert_array_equal(model.c_0.numpy(), before)


@pytest.mark.parametrize("bad", [np.nan, -0.5, 255.0])
def test_initialize_canvas_refuses_a_mean_outside_zero_one(bad):
    model = Draw.from_preset("tiny", seed=0)
    before = model.c_0.numpy()
    mean = np.full(model.image_shape, 0.5, np.float32)
    mean[3, 4, 0] = bad
    with pytest.raises(ValueError, match=r"values in \[0, 1\].*Received: .*" + re.escape(str(bad))):
        model.initialize_canvas(mean)
    np.testing.assert_array_equal(model.c_0.numpy(), before)


def test_the_same_seed_builds_the_same_initial_weights_whatever_the_global_random_state():
    import random

    def weights(seed):
        model = Draw.from_preset("tiny", seed=seed)  # built: its variables exist
        assert model.get_weights()
        return model.get_weights()

    first = weights(5)
    random.seed(123)
    np.random.seed(123)
    keras.utils.set_random_seed(123)
    state = random.getstate()
    again = weights(5)
    assert random.getstate() == state  # the global state is left as it was
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = weights(6)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("preset, overrides", [("tiny", {}), ("mnist", {}), ("mnist_no_attention", {}),
                                               ("tiny", {"image_height": 20, "image_width": 31, "channels": 3})])
def test_the_weight_count_checked_before_building_is_the_built_models(preset, overrides):
    from keras_draw.draw import weight_count

    model = Draw.from_preset(preset, **overrides)
    sizes = {name: getattr(model, name) for name in ("image_height", "image_width", "channels", "encoder_units",
                                                     "decoder_units", "latent_dim", "read_n", "write_n", "attention")}
    assert weight_count(**sizes) == model.count_params()


def test_sizes_whose_weights_exceed_memory_are_refused_before_any_is_made(monkeypatch):
    from keras_draw.layers import validation

    tiny = Draw.from_preset("tiny").count_params()  # 5,275
    monkeypatch.setattr(validation, "machine_memory", lambda: 2 * 4 * tiny)  # room for the tiny preset's weights
    assert Draw.from_preset("tiny").count_params() == tiny
    with pytest.raises(ValueError, match=r"A model of these sizes has 5,303 weights .*more than 50% of this "
                                         r"machine's memory.*Received: image_height=29, image_width=28, channels=1, "
                                         r"encoder_units=16"):
        Draw.from_preset("tiny", image_height=29)  # 28 more pixels of c_0
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"A model of these sizes has 1,000,000,0[0-9,]+ weights"):
        Draw.from_preset("tiny", image_height=10**6, image_width=10**6)  # c_0 alone: 4 TB
