"""Weight averaging: w̄ ← m·w̄ + (1 − m)·w after every step, evaluated in place of w, checkpointed."""

import json

import keras
import numpy as np
import pytest

from conftest import TINY_RUN
from keras_draw import Draw
from keras_draw.averaging import WeightAverage
from keras_draw.checkpoint import Checkpoint, CheckpointCallback

M = 0.75  # far from 1, so that every step's weight shows in the average


class Recorder(keras.callbacks.Callback):
    """The raw weights at the start of training and after every step."""

    def on_train_begin(self, logs=None):
        self.weights = [[w.numpy() for w in self.model.trainable_variables]]

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([w.numpy() for w in self.model.trainable_variables])


def small_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


def test_the_average_follows_its_recurrence_from_the_first_weights_and_training_keeps_the_raw_ones():
    model = small_model()
    x, y = data()
    averager, recorder = WeightAverage(M), Recorder()
    model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0, callbacks=[averager, recorder])
    expected = recorder.weights[0]  # w̄_0 = w_0
    for w in recorder.weights[1:]:  # 8 steps
        expected = [M * a + (1 - M) * b for a, b in zip(expected, w)]
    for got, want in zip(averager.values(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    for w, raw in zip(model.trainable_variables, recorder.weights[-1]):  # training's own weights are back
        np.testing.assert_array_equal(w.numpy(), raw)
    assert not np.allclose(averager.values()[0], recorder.weights[-1][0])  # the average is another point


def test_validation_in_fit_and_the_averaged_block_use_the_average_and_then_restore_the_weights():
    model = small_model()
    x, y = data()
    x_val, y_val = data(seed=1)
    averager = WeightAverage(M)
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, validation_data=(x_val, y_val),
                        callbacks=[averager])
    raw = [w.numpy() for w in model.trainable_variables]
    with averager.averaged():
        for w, a in zip(model.trainable_variables, averager.values()):
            np.testing.assert_array_equal(w.numpy(), a)
        kernel, bias = (w.numpy() for w in model.trainable_variables)
        averaged_mse = float(np.mean((x_val @ kernel + bias - y_val) ** 2))
    np.testing.assert_allclose(history.history["val_loss"][0], averaged_mse, rtol=1e-5)
    raw_mse = float(np.mean((x_val @ raw[0] + raw[1] - y_val) ** 2))
    assert abs(raw_mse - averaged_mse) > 1e-4  # so the check above could tell the two apart
    with pytest.raises(RuntimeError), averager.averaged():
        raise RuntimeError("an evaluation that fails")
    for w, r in zip(model.trainable_variables, raw):  # restored all the same
        np.testing.assert_array_equal(w.numpy(), r)
    averager.apply()
    for w, a in zip(model.trainable_variables, averager.values()):
        np.testing.assert_array_equal(w.numpy(), a)


@pytest.mark.parametrize("momentum", [0, 1, 1.5, -0.1, True, float("nan")])
def test_a_momentum_outside_zero_one_is_refused(momentum):
    with pytest.raises(ValueError, match="`momentum` must be in \\(0, 1\\)"):
        WeightAverage(momentum)


def test_averages_from_a_checkpoint_must_match_the_weights():
    averager = WeightAverage(M, initial=[np.zeros((3, 2), "float32")])
    averager.set_model(small_model())
    with pytest.raises(ValueError, match="Expected 2 averaged weights. Received: 1"):
        averager.build()


def test_checkpoints_hold_the_averages_and_the_best_weights_are_the_averages(tmp_path):
    model = Draw.from_preset("tiny", seed=0)
    averager = WeightAverage(M)
    averager.set_model(model)
    averager.build()
    checkpoint = Checkpoint(str(tmp_path / "checkpoint"))
    state = {"epoch": 0, "step": 0, "history": [], "config": {}}
    callback = CheckpointCallback(checkpoint, state, steps_per_epoch=1, best_weights=str(tmp_path / "best.weights.h5"),
                                  averager=averager)
    callback.set_model(model)
    for epoch in range(2):
        model.set_weights([w + 1.0 for w in model.get_weights()])
        averager.on_train_batch_end(0)
        callback.on_epoch_end(epoch, {"loss": 6.0, "val_loss": 5.0 - epoch})
    saved = checkpoint.read_state()
    assert saved["average"] == "epoch00002-step0000000.average.npz"
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == [  # the first epoch's files are gone
        "epoch00002-step0000000.average.npz", "epoch00002-step0000000.weights.h5", "state.json"]
    for got, want in zip(checkpoint.read_averages(saved), averager.values()):
        np.testing.assert_array_equal(got, want)
    best = Draw.from_preset("tiny", seed=0)
    best.load_weights(tmp_path / "best.weights.h5")
    for got, want in zip(best.trainable_variables, averager.values()):
        np.testing.assert_array_equal(got.numpy(), want)
    assert checkpoint.read_averages({**saved, "average": None}) is None


@pytest.mark.parametrize("damage", ["truncated", "missing", "not a file name"])
def test_damaged_averages_are_refused_in_one_line_naming_the_file(tmp_path, damage):
    model = Draw.from_preset("tiny", seed=0)
    checkpoint = Checkpoint(str(tmp_path / "checkpoint"))
    checkpoint.save(model, {"epoch": 1, "step": 0, "history": [], "config": {}},
                    averages=[w.numpy() for w in model.trainable_variables])
    path = tmp_path / "checkpoint" / "epoch00001-step0000000.average.npz"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
        with pytest.raises(ValueError, match=f"Checkpoint averages {path} are corrupt or truncated") as err:
            checkpoint.read_averages(checkpoint.read_state())
    elif damage == "missing":
        path.unlink()
        with pytest.raises(ValueError, match=f"Checkpoint averages {path} are missing") as err:
            checkpoint.read_state()
    else:
        state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
        (tmp_path / "checkpoint" / "state.json").write_text(json.dumps({**state, "average": "../elsewhere.npz"}))
        with pytest.raises(ValueError, match="is corrupt .*'average' must name a file of the folder") as err:
            checkpoint.read_state()
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_an_averaged_run_resumes_exactly_and_may_start_averaging_from_a_plain_checkpoint(tmp_path, mnist_data_dir):
    from keras_draw.training import train

    options = dict(TINY_RUN, epochs=2, steps_per_epoch=2, deterministic=True, data_dir=mnist_data_dir, verbose=0)
    run = {name: str(tmp_path / name) for name in ("straight", "resumed", "late")}
    straight, _ = train(**options, weight_average=M, output_dir=run["straight"])
    train(**options | {"epochs": 1}, weight_average=M, output_dir=run["resumed"])
    resumed, history = train(**options, weight_average=M, output_dir=run["resumed"])  # w̄ from the checkpoint
    assert history.epoch == [0, 1]
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Averaging added on resuming a plain run: accepted; w̄ starts later, training's own weights are the same.
    train(**options | {"epochs": 1}, output_dir=run["late"])
    late, _ = train(**options, weight_average=M, output_dir=run["late"])
    raw = {}
    for name in ("straight", "late"):
        raw[name] = Draw.from_preset("tiny", seed=0)
        raw[name].compile(optimizer="adam")
        Checkpoint(str(tmp_path / name / "checkpoint")).restore(raw[name])
    for a, b in zip(raw["straight"].get_weights(), raw["late"].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(straight.trainable_variables, late.trainable_variables))
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(straight.trainable_variables, raw["straight"].trainable_variables))


@pytest.mark.slow
def test_a_fresh_averaged_run_averages_from_the_initialised_canvas(tmp_path, mnist_data_dir):
    # w̄ starts from the weights as initialised for the run (c_0 = logit of the data's mean), not
    # from the model as built (c_0 = 0): one step at M = 0.999 leaves w̄ within 0.1 % of them.
    from keras_draw import datasets
    from keras_draw.training import train

    model, _ = train(**TINY_RUN | {"epochs": 1}, weight_average=0.999, data_dir=mnist_data_dir, verbose=0,
                     output_dir=str(tmp_path / "run"))  # the final model is w̄
    mean = np.clip(datasets.load("mnist", data_dir=mnist_data_dir).mean_image().numpy(), 1e-3, 1 - 1e-3)
    initialised = np.log(mean) - np.log1p(-mean)
    np.testing.assert_allclose(model.c_0.numpy(), initialised, atol=0.01 * np.abs(initialised).max())


def test_the_callback_is_a_public_name_of_the_package():
    import keras_draw

    assert keras_draw.WeightAverage is WeightAverage and "WeightAverage" in keras_draw.__all__
