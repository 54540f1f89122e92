"""DrawClassifier: its glimpses are eq. 27 computed independently, its windows follow its state,
its loss is the cross-entropy; saving, presets and input checks."""

import inspect

import keras
import numpy as np
import pytest

from keras_draw import Draw, DrawClassifier, draw_classifier
from keras_draw.layers import AttentiveRead

TINY = dict(image_height=20, image_width=30, channels=1, num_steps=3, units=6, read_n=4, num_classes=5)


def numpy_window(h, kernel, bias, height, width, n):
    """Eqs. 21-24 in numpy: (g_x, g_y, δ, σ², γ) of each row of h."""
    g_x_tilde, g_y_tilde, log_sigma2, log_delta_tilde, log_gamma = (h @ kernel + bias).T  # eq. 21
    g_x = (width + 1) / 2 * (g_x_tilde + 1)  # eq. 22
    g_y = (height + 1) / 2 * (g_y_tilde + 1)  # eq. 23
    delta = (max(height, width) - 1) / (n - 1) * np.exp(log_delta_tilde)  # eq. 24
    return np.stack([g_x, g_y, delta, np.exp(log_sigma2), np.exp(log_gamma)], axis=-1)


def numpy_glimpse(image, window, n):
    """γ F_Y x F_Xᵀ (eqs. 19-20, 25-27) for one image (B, A, C) and window, by loops over i, j."""
    g_x, g_y, delta, sigma2, gamma = window
    height, width, channels = image.shape

    def bank(g, size):
        f = np.zeros((n, size))
        for i in range(1, n + 1):  # the paper's 1-based grid
            mu = g + (i - n / 2 - 0.5) * delta  # eqs. 19-20
            for a in range(1, size + 1):  # 1-based pixels
                f[i - 1, a - 1] = np.exp(-((a - mu) ** 2) / (2 * sigma2))  # eqs. 25-26
        return f / f.sum(axis=1, keepdims=True)

    f_x, f_y = bank(g_x, width), bank(g_y, height)
    return np.stack([gamma * f_y @ image[:, :, c] @ f_x.T for c in range(channels)], axis=-1)


def test_a_glimpse_is_eq_27_at_a_known_window():
    reader = AttentiveRead(20, 30, 2, 4)
    reader.build((None, 20, 30, 2), None, (None, 3))
    # A zero kernel: the window is the bias, (g̃_X, g̃_Y, log σ², log δ̃, log γ), whatever h is.
    bias = np.array([0.2, -0.3, np.log(1.5), np.log(0.4), np.log(0.8)], np.float32)
    reader.window.dense.set_weights([np.zeros((3, 5), np.float32), bias])
    image = np.random.default_rng(1).uniform(size=(2, 20, 30, 2)).astype(np.float32)
    glimpse, window = reader.glimpse(image, np.ones((2, 3), np.float32))
    expected_window = [31 / 2 * 1.2, 21 / 2 * 0.7, 29 / 3 * 0.4, 1.5, 0.8]  # eqs. 22-24 by hand
    np.testing.assert_allclose(np.asarray(window), [expected_window] * 2, rtol=1e-5)
    for k in range(2):
        np.testing.assert_allclose(np.asarray(glimpse)[k], numpy_glimpse(image[k], expected_window, 4),
                                   rtol=1e-4, atol=1e-6)


def set_random_window_and_start(model, seed=2):
    """A random window map and h_0, so the windows depend on the state (they would not at init)."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(scale=0.3, size=(model.units, 5)).astype(np.float32)
    bias = np.array([0.1, -0.2, 0.0, -0.5, 0.0], np.float32)
    model.reader.window.dense.set_weights([kernel, bias])
    model.h_0.assign(rng.normal(size=model.units).astype(np.float32))
    return kernel, bias


def test_every_glimpse_is_read_through_the_window_of_the_previous_state():
    model = DrawClassifier(**TINY, seed=0)
    kernel, bias = set_random_window_and_start(model)
    x = np.random.default_rng(3).uniform(size=(2, 20, 30, 1)).astype(np.float32)
    outputs = model.glimpse_sequence(x, names=("window", "glimpse", "h"))
    windows, glimpses, h = (np.asarray(outputs[k]) for k in ("window", "glimpse", "h"))
    assert windows.shape == (2, 3, 5) and glimpses.shape == (2, 3, 4, 4, 1) and h.shape == (2, 3, 6)
    h_prev = np.concatenate([np.broadcast_to(model.h_0.numpy(), (2, 1, 6)), h[:, :-1]], axis=1)  # h_0 .. h_{T−1}
    for t in range(3):
        expected = numpy_window(h_prev[:, t], kernel, bias, 20, 30, 4)
        np.testing.assert_allclose(windows[:, t], expected, rtol=1e-4)
        for k in range(2):
            np.testing.assert_allclose(glimpses[k, t], numpy_glimpse(x[k], expected[k], 4), rtol=1e-3, atol=1e-5)
    # The windows move as the state does: no two steps share one.
    assert np.min(np.abs(np.diff(windows[..., :2], axis=1))) > 1e-3
    # The class scores are the softmax of W h_T.
    w, b = model.classes.get_weights()
    logits = h[:, -1] @ w + b
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4)


def test_the_loss_is_the_cross_entropy_of_the_true_class_and_accuracy_the_argmax():
    model = DrawClassifier(**TINY, seed=0)
    set_random_window_and_start(model)
    model.compile()
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(12, 20, 30, 1)).astype(np.float32)
    y = rng.integers(0, 5, size=12)
    p = model.predict(x, verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), np.ones(12), rtol=1e-5)
    metrics = model.evaluate(x, y, batch_size=12, return_dict=True, verbose=0)
    np.testing.assert_allclose(metrics["loss"], -np.mean(np.log(p[np.arange(12), y])), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], np.mean(np.argmax(p, axis=1) == y))


def test_fit_learns_where_the_digit_is():
    # Class k: a bright 4×4 square in the k-th of 3 places; 2 glimpses learn it within a few epochs.
    x = np.zeros((60, 20, 30, 1), np.float32)
    y = np.arange(60) % 3
    for k, label in enumerate(y):
        x[k, 8:12, 3 + 10 * label : 7 + 10 * label] = 1.0
    model = DrawClassifier(**{**TINY, "num_classes": 3, "num_steps": 2, "units": 16}, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-2))
    history = model.fit(x, y, batch_size=20, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] == 1.0


def test_saved_and_loaded_it_predicts_the_same(tmp_path):
    model = DrawClassifier(**TINY, seed=0)
    set_random_window_and_start(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    path = tmp_path / "classifier.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(5).uniform(size=(3, 20, 30, 1)).astype(np.float32)
    assert isinstance(loaded, DrawClassifier) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.compiled and loaded.optimizer.learning_rate.numpy() == pytest.approx(1e-3)


def test_get_config_holds_every_constructor_argument():
    arguments = [p for p in inspect.signature(DrawClassifier.__init__).parameters if p not in ("self", "kwargs")]
    assert sorted(arguments) == sorted(draw_classifier._CONFIG)
    config = DrawClassifier(**TINY, seed=7).get_config()
    assert {k: config[k] for k in TINY} == TINY and config["seed"] == 7


def test_the_same_seed_builds_the_same_weights():
    first, second = DrawClassifier(**TINY, seed=3), DrawClassifier(**TINY, seed=3)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_cluttered_mnist_preset_is_table_3s_first_row():
    model = DrawClassifier.from_preset("cluttered_mnist")
    assert (model.image_shape, model.num_steps, model.units, model.read_n, model.num_classes) == (
        (100, 100, 1), 8, 256, 12, 10)
    with pytest.raises(ValueError, match="configures a DrawClassifier, not a Draw"):
        Draw.from_preset("cluttered_mnist")
    with pytest.raises(ValueError, match="configures a Draw, not a DrawClassifier"):
        DrawClassifier.from_preset("mnist")


def test_from_preset_loads_weights_from_a_file(tmp_path):
    model = DrawClassifier.from_preset("tiny_classifier", seed=1)
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    loaded = DrawClassifier.from_preset("tiny_classifier", weights=str(path), seed=2)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 20, 20, 1)), r"Expected images of shape \(batch, 20, 30, 1\)"),
    (np.full((2, 20, 30, 1), 255.0), r"values in \[0, 1\]"),
    (np.full((2, 20, 30, 1), np.nan), r"values in \[0, 1\]"),
])
def test_predict_refuses_images_of_another_shape_or_range(images, message):
    with pytest.raises(ValueError, match=message):
        DrawClassifier(**TINY, seed=0).predict(images, verbose=0)


@pytest.mark.parametrize("argument, value", [("num_steps", 0), ("units", -1), ("read_n", 1), ("read_n", 31),
                                             ("num_classes", 0)])
def test_bad_sizes_are_refused_with_the_value(argument, value):
    with pytest.raises(ValueError, match=f"{argument}={value}"):
        DrawClassifier(**{**TINY, argument: value})


def test_windows_start_with_sigma_half_the_stride_over_the_whole_image():
    model = DrawClassifier.from_preset("cluttered_mnist", seed=0)
    windows = np.asarray(model.reader.window(np.zeros((1, 256), np.float32)))[0]  # the bias alone
    g_x, g_y, delta, sigma2, gamma = windows
    assert (g_x, g_y, delta, gamma) == pytest.approx((50.5, 50.5, 9.0, 1.0))  # eqs. 22-24 at zero: centred, δ = 99/11
    assert np.sqrt(sigma2) == pytest.approx(delta / 2, rel=1e-5)
