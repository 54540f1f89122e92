"""keras_draw.evaluate: the negative ELBO, the importance-weighted bound, and the command line."""

import json
import math
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_draw import Draw, losses
from keras_draw import evaluate as evaluate_module
from keras_draw.evaluate import NON_BINARY_NOTE, evaluate, log_importance_weights, main, per_image_bounds
from keras_draw.files import WriteError


def block_patterns(count, seed, flip=0.0, size=28):
    """Binary images of a random 3×3 pattern of on and off blocks; `flip` of the pixels flipped."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 2, size=(count, 3, 3))
    block = np.arange(size) * 3 // size  # the block of each pixel row (or column)
    images = patterns[:, block][:, :, block][..., None]  # (count, size, size, 1)
    return np.abs(images - (rng.random(images.shape) < flip)).astype(np.float32)


@pytest.fixture(scope="module")
def trained_model():
    """A tiny DRAW trained until its posteriors carry information (a KL of several nats).

    Without attention, a tiny DRAW learns to use its latents within seconds; the bounds do not
    depend on how the canvas is written.
    """
    keras.utils.set_random_seed(0)
    model = Draw.from_preset("tiny", attention=False, seed=0)
    model.compile(jit_compile=False, optimizer=keras.optimizers.Adam(1e-2))
    model.fit(block_patterns(1000, seed=1), batch_size=50, epochs=4, verbose=0)
    return model


def test_log_weight_is_log_likelihood_plus_log_prior_minus_log_posterior(trained_model):
    model, x = trained_model, block_patterns(5, seed=2)
    epsilon = model.sample_noise(5, seed=3)
    outputs = model.infer(x, epsilon)
    z = np.asarray(outputs["z"], np.float64)
    sigma = np.exp(np.asarray(outputs["log_sigma"], np.float64))
    # log N(z; 0, 1) − log N(z; μ, σ) with z = μ + σε: the 2π terms cancel, ε² and log σ remain.
    log_ratio = -0.5 * z**2 + 0.5 * np.asarray(epsilon, np.float64) ** 2 + np.log(sigma)
    expected = -np.asarray(losses.distortion(x, outputs["canvas"])) + log_ratio.sum(axis=(1, 2))
    np.testing.assert_allclose(log_importance_weights(model, x, epsilon), expected, rtol=1e-5, atol=1e-3)


def test_one_sample_estimate_equals_the_elbo_in_expectation(trained_model):
    # With K = 1, −log w is an unbiased estimate of the negative ELBO. Paired image by image
    # (independent noise for the two), so the spread between images cancels.
    bounds = per_image_bounds(trained_model, np.array_split(block_patterns(600, seed=4), 6), importance_samples=1, seed=5)
    difference = bounds["negative_log_likelihood"] - bounds["loss"]
    standard_error = difference.std(ddof=1) / math.sqrt(difference.size)
    assert abs(difference.mean()) < 4 * standard_error
    # The check has power: an error of half a nat per latent unit (eq. 11's constant T·|z|/2; a
    # dropped prior or posterior density, a wrong sign or a lost 2π are all larger) stands out.
    assert 4 * standard_error < trained_model.num_steps * trained_model.latent_dim / 2
    assert bounds["kl_loss"].mean() > 1.0  # and the posteriors carry information


def test_importance_weighted_estimate_is_below_the_elbo(trained_model):
    x = block_patterns(100, seed=6)
    bounds = per_image_bounds(trained_model, [x[:50], x[50:]], importance_samples=200, seed=7)
    gap = bounds["loss"] - bounds["negative_log_likelihood"]
    assert np.all(np.isfinite(bounds["negative_log_likelihood"])) and np.all(np.isfinite(bounds["loss"]))
    assert gap.mean() > -3 * gap.std(ddof=1) / math.sqrt(gap.size)  # IW ≤ ELBO, up to noise
    assert gap.mean() > 0.0  # and tighter, for a model whose KL is not negligible


@pytest.mark.parametrize("importance_batch_size", [1, 6, 10_000])
def test_batched_samples_stay_with_their_image_and_all_count(trained_model, monkeypatch, importance_batch_size):
    # A stand-in log w that is the same for every sample of an image and differs between
    # images: the log-mean-exp of K copies must give it back exactly, however the K samples
    # are split into passes (here 1, 3 or 7 at a time: chunks of 3, 3 and 1 for 6).
    def pixel_sum(model, x, epsilon):
        return tf.reduce_sum(x, axis=[1, 2, 3]) + 0.0 * tf.reduce_sum(epsilon, axis=[1, 2])

    monkeypatch.setattr(evaluate_module, "log_importance_weights", pixel_sum)
    x = block_patterns(2, seed=8, flip=0.1)
    bounds = per_image_bounds(trained_model, [x], importance_samples=7, seed=9, importance_batch_size=importance_batch_size)
    np.testing.assert_allclose(bounds["negative_log_likelihood"], -x.sum(axis=(1, 2, 3)), rtol=1e-6)


def test_evaluate_reports_nats_with_standard_errors_and_bits_per_dim(trained_model, mnist_data_dir):
    result = evaluate(
        trained_model, "mnist", data_dir=mnist_data_dir, max_images=150, batch_size=64, importance_samples=5, seed=1
    )
    assert (result["dataset"], result["split"], result["num_images"], result["importance_samples"]) == ("mnist", "test", 150, 5)
    np.testing.assert_allclose(result["negative_elbo"], result["reconstruction_loss"] + result["kl_loss"], rtol=1e-6)
    np.testing.assert_allclose(result["negative_elbo_bits_per_dim"], result["negative_elbo"] / (784 * math.log(2)))
    np.testing.assert_allclose(
        result["negative_log_likelihood_bits_per_dim"], result["negative_log_likelihood"] / (784 * math.log(2))
    )
    for key in ("negative_elbo", "kl_loss", "negative_log_likelihood", "bound_gap"):
        assert 0 < result[f"{key}_standard_error"] < abs(result[key]) + 1
    assert "true -log p(x)" in result["note"]
    json.dumps(result, allow_nan=False)


def test_colour_figures_are_in_bits_per_dimension_and_flagged_as_not_a_likelihood():
    model = Draw.from_preset("tiny", image_height=8, image_width=6, channels=3, seed=0)
    images = np.random.default_rng(0).random((20, 8, 6, 3)).astype(np.float32)
    result = evaluate(model, images, importance_samples=3, batch_size=8)
    assert result["num_images"] == 20 and result["dataset"] is None
    np.testing.assert_allclose(result["negative_elbo_bits_per_dim"], result["negative_elbo"] / (8 * 6 * 3 * math.log(2)))
    assert result["note"] == NON_BINARY_NOTE


@pytest.mark.parametrize(
    "options, message",
    [
        ({"split": "dev"}, "Received: split='dev'"),
        ({"importance_samples": -1}, "--importance-samples must be a non-negative integer. Received: --importance-samples=-1"),
        ({"importance_samples": True}, "Received: --importance-samples=True"),
        ({"max_images": 0}, "--max-images must be a positive integer. Received: --max-images=0"),
        ({"batch_size": 2.5}, "--batch-size must be a positive integer. Received: --batch-size=2.5"),
        ({"importance_batch_size": 2**20 + 1}, "--importance-batch-size must be at most 1,048,576"),
    ],
)
def test_bad_options_are_rejected_with_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        evaluate(Draw.from_preset("tiny"), np.zeros((2, 28, 28, 1), np.float32), **options)


def test_passes_beyond_memory_are_refused_before_any_data_is_read(monkeypatch):
    from keras_draw.layers import validation

    model = Draw.from_preset("tiny")  # T = 3, |z| = 4, 28x28x1, 16 units each
    assert evaluate_module.pass_bytes(model) == 4 * (6 * 3 * 4 + 8 * 784 + 40 * 32)
    monkeypatch.setattr(validation, "machine_memory", lambda: 2 * 1000 * evaluate_module.pass_bytes(model))
    monkeypatch.setattr(evaluate_module.datasets, "load", lambda *a, **k: pytest.fail("data read before the check"))
    for flag in ("batch_size", "importance_batch_size"):
        with pytest.raises(ValueError, match=rf"--{flag.replace('_', '-')} must be at most 1,000 on this machine"):
            evaluate(model, "mnist", **{flag: 1001})


def test_an_importance_batch_beyond_memory_is_refused_in_one_line_and_nothing_written(tmp_path, monkeypatch, capsys):
    """2**20 pairs of the tiny preset's pass on a 24 GiB machine: at the 24 KiB per pair that
    `python benchmarks/memory.py --preset tiny` measures, 24 GiB, twice the half of memory a size may
    take; an estimate of 10 KiB per pair (three images per pair, six floats per unit) let it run."""
    from keras_draw.layers import validation

    monkeypatch.setattr(validation, "machine_memory", lambda: 24 * 2**30)
    Draw.from_preset("tiny").save(tmp_path / "model.keras")
    monkeypatch.setattr(evaluate_module.datasets, "load", lambda *a, **k: pytest.fail("data read before the check"))
    status = main(["--model", str(tmp_path / "model.keras"), "--dataset", "mnist", "--importance-batch-size",
                   str(2**20), "--max-images", "5"])
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1
    assert error.startswith("evaluate: error: --importance-batch-size must be at most 422,511 ")
    assert "Received: --importance-batch-size=1048576" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_counts_of_any_integer_type_are_taken(trained_model):
    x = block_patterns(6, seed=8)
    plain = evaluate(trained_model, x, importance_samples=2, batch_size=4, max_images=5, seed=1)
    numpy = evaluate(trained_model, x, importance_samples=np.int64(2), batch_size=np.int32(4), max_images=np.uint8(5),
                     importance_batch_size=np.int64(1000), seed=1)
    assert numpy == plain and json.loads(json.dumps(numpy)) == numpy


def test_images_of_the_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match=r"Received: shape=\(2, 28, 27, 1\)"):
        evaluate(Draw.from_preset("tiny"), np.zeros((2, 28, 27, 1), np.float32))


def test_command_line_writes_json_next_to_the_model(trained_model, mnist_data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    trained_model.save(run / "model.keras")
    options = {"dataset": "mnist", "data_dir": mnist_data_dir, "manual_dir": None}  # as train.py writes them
    (run / "config.json").write_text(json.dumps({"options": options}))
    argv = ["--model", str(run / "model.keras"), "--max-images", "40", "--importance-samples", "3"]
    assert main(argv) == 0
    result = json.loads((run / "evaluation_mnist_test.json").read_text())
    assert result["num_images"] == 40 and result["importance_samples"] == 3
    printed = capsys.readouterr().out
    assert "negative ELBO" in printed and f"{result['negative_elbo']:.2f}" in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "no/such/model.keras", "--dataset", "mnist"], "Model file not found"),
        (["--model", "m.keras", "--dataset", "mnist", "--importance-samples", "-2"], "Received: --importance-samples=-2"),
        (["--model", "m.keras", "--max-images", "0"], "--max-images must be a positive integer"),
        (["--model", "m.keras", "--batch-size", str(10**12)], "--batch-size must be at most 65,536"),
        (["--model", "m.keras", "--importance-samples", str(10**9)], "--importance-samples must be at most 1,000,000"),
        (["--dataset", "mnist"], "Give a model: --model RUN/model.keras, or --preset NAME with --weights"),
        (["--preset", "tiny", "--dataset", "mnist"], "Received: --preset='tiny', --weights=None"),
        (["--model", "m.keras", "--preset", "mnist", "--weights", "binarized_mnist"], "not both"),
        (["--preset", "mnist", "--weights", "cifar10"], "No shipped weights for preset 'mnist' trained on 'cifar10'"),
        (["--preset", "tiny", "--weights", "no/such.weights.h5", "--dataset", "mnist"], "Weights file not found"),
        (["--preset", "mnist", "--weights", "binarized_mnist", "--output", "no/such/folder/e.json"],
         "Cannot write a file there. Received: --output='no/such/folder/e.json'"),
    ],
)
def test_command_line_errors_are_one_line_with_exit_status_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and error.startswith("evaluate: error:")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--model", "m.keras", "--out", "e.json"], "unrecognized arguments: --out e.json"),  # now --output
    (["--model", "m.keras", "--verbose", "loud"], "argument --verbose: invalid choice: 'loud'"),
    (["--model", "m.keras", "--split", "dev"], "argument --split: invalid choice: 'dev'"),
])
def test_flags_it_does_not_know_exit_2_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in error and error.count("\n") == 1, error


def test_a_preset_with_weights_evaluates_as_that_model_into_a_json_named_after_it(mnist_data_dir, tmp_path,
                                                                                  monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = Draw.from_preset("tiny", seed=5)
    model.save_weights(tmp_path / "tiny5.weights.h5")
    argv = ["--preset", "tiny", "--weights", "tiny5.weights.h5", "--dataset", "mnist", "--data-dir", mnist_data_dir,
            "--max-images", "30", "--importance-samples", "2", "--seed", "4", "--verbose", "0"]
    assert main(argv) == 0
    written = json.loads((tmp_path / "evaluation_tiny-tiny5_mnist_test.json").read_text())
    expected = evaluate(model, "mnist", data_dir=mnist_data_dir, max_images=30, importance_samples=2, seed=4, verbose=0)
    assert written == json.loads(json.dumps(expected)) and written["num_images"] == 30
    assert "Next: python -m keras_draw.visualize --preset tiny --weights tiny5.weights.h5" in capsys.readouterr().out


def test_the_progress_bar_counts_batches_and_ends_on_the_results_figures(capsys):
    images = block_patterns(250, seed=1)
    result = evaluate(Draw.from_preset("tiny", seed=0), images, batch_size=100, importance_samples=3, verbose=1)
    bar = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out.split("\r")[-1])  # as last redrawn, without colours
    assert bar.startswith("3/3 ") and "batch" in bar, bar
    assert f"negative_elbo: {result['negative_elbo']:.4f}" in bar, bar
    assert f"negative_log_likelihood: {result['negative_log_likelihood']:.4f}" in bar, bar
    evaluate(Draw.from_preset("tiny", seed=0), images, batch_size=100, importance_samples=0, verbose=0)
    assert capsys.readouterr().out == ""


def test_a_write_that_fails_is_a_failure_of_the_run_with_exit_status_1(tmp_path, monkeypatch, capsys):
    Draw.from_preset("tiny").save(tmp_path / "model.keras")
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *args, **kwargs: {})

    def full_disk(path, value):
        raise WriteError(f"could not write {path}: No space left on device")

    monkeypatch.setattr(evaluate_module, "write_json", full_disk)
    assert main(["--model", str(tmp_path / "model.keras"), "--dataset", "mnist"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("evaluate: error: could not write") and error.count("\n") == 1


@pytest.mark.parametrize("stop, status, said", [("KeyboardInterrupt", 130, "interrupted"),
                                                ("Terminated", 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_while_evaluating_prints_one_line_and_writes_nothing(stop, status, said, tmp_path,
                                                                              monkeypatch, capsys):
    from keras_draw import console

    stop = KeyboardInterrupt if stop == "KeyboardInterrupt" else console.Terminated
    Draw.from_preset("tiny").save(tmp_path / "model.keras")

    def stopped(*args, **kwargs):
        raise stop()

    monkeypatch.setattr(evaluate_module, "per_image_bounds", stopped)
    try:
        assert main(["--model", str(tmp_path / "model.keras"), "--dataset", "mnist"]) == status
    except (KeyboardInterrupt, console.Terminated):
        pytest.fail("the stop escaped main")
    assert capsys.readouterr().err == f"evaluate: {said}; nothing was written.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


@pytest.mark.parametrize("existed", [False, True])
def test_ctrl_c_while_the_json_is_written_says_what_the_file_holds(existed, tmp_path, monkeypatch, capsys):
    Draw.from_preset("tiny").save(tmp_path / "model.keras")
    output = tmp_path / "evaluation_mnist_test.json"
    if existed:
        output.write_text('{"old": 1}')
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *args, **kwargs: {"new": 1})

    def interrupted(path, value):
        raise KeyboardInterrupt()

    monkeypatch.setattr(evaluate_module, "write_json", interrupted)
    assert main(["--model", str(tmp_path / "model.keras"), "--dataset", "mnist"]) == 130
    said = ("is whole (the new result, or what it held before)" if existed
            else "holds the whole new result, or was not written")
    assert capsys.readouterr().err == f"evaluate: interrupted; {output} {said}.\n"
    assert (output.read_text() == '{"old": 1}') if existed else not output.exists()


def test_an_output_that_is_a_fifo_is_refused_before_evaluating_and_left_as_it_is(tmp_path, monkeypatch, capsys):
    import stat

    Draw.from_preset("tiny").save(tmp_path / "model.keras")
    os.mkfifo(tmp_path / "out.json")
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: pytest.fail("evaluated before the check"))
    output = str(tmp_path / "out.json")
    assert main(["--model", str(tmp_path / "model.keras"), "--dataset", "mnist", "--output", output]) == 2
    error = capsys.readouterr().err
    assert error.startswith("evaluate: error: ") and "out.json is a FIFO, not a file to write" in error and error.count("\n") == 1
    assert stat.S_ISFIFO(os.lstat(tmp_path / "out.json").st_mode)
