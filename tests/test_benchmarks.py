"""benchmarks/: the FLOP counts behind the GFLOP/s figures, against the model's own graph."""

import importlib.util
import math
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from keras_draw import Draw, loop

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"

# Odd sizes everywhere, colour, a non-square image, so that no factor of the count hides another.
CONFIG = dict(image_height=12, image_width=10, channels=3, num_steps=3, encoder_units=16,
              decoder_units=12, latent_dim=5, read_n=3, write_n=4)


def load(name):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def forward_matmul_flops(model, batch=7):
    """2·M·K·N of every MatMul and BatchMatMul in the traced forward pass, per image:
    (2-D products, batched products)."""
    function = tf.function(lambda x, epsilon: model.negative_elbo(x, epsilon)["loss"])
    graph = function.get_concrete_function(
        tf.TensorSpec((batch, *model.image_shape)), tf.TensorSpec((batch, model.num_steps, model.latent_dim))
    ).graph
    flops = {"MatMul": 0, "BatchMatMulV2": 0}
    for op in graph.get_operations():
        if op.type not in flops:
            continue
        lhs = op.inputs[0].shape.as_list()
        inner = lhs[-2] if op.get_attr("adj_x" if op.type == "BatchMatMulV2" else "transpose_a") else lhs[-1]
        flops[op.type] += 2 * math.prod(op.outputs[0].shape.as_list()) * inner / batch
    return flops["MatMul"], flops["BatchMatMulV2"]


@pytest.mark.parametrize("attention", [True, False])
def test_flop_counts_match_every_matmul_in_the_models_graph(monkeypatch, attention):
    scan = loop.scan  # unrolled, so that every step's ops lie in the one graph walked below
    monkeypatch.setattr(loop, "scan", lambda *args, **kwargs: scan(*args, **{**kwargs, "unroll": True}))
    config = dict(CONFIG, attention=attention)
    dense, batched = forward_matmul_flops(Draw(**config, seed=0))
    assert dense > 0 and (batched > 0) == attention
    # Backward counted as twice the forward: × 3.
    assert load("train_throughput").flops_per_image(config) == 3 * (dense + batched)


@pytest.mark.slow
def test_throughput_benchmark_prints_every_figure(capsys):
    module = load("train_throughput")
    args = module.parse_args(["--preset", "tiny", "--num-steps", "2", "--batch-size", "4", "--steps", "2",
                              "--warmup", "0", "--matmul-repeats", "2", "--jit", "off", "--compare-unroll",
                              "--compare-graph"])
    figures = module.benchmark(args)
    printed = capsys.readouterr().out
    for label in ("malloc: ", "matmul rate 2048x2048x2048", "time to first step", "roofline", "training images/s",
                  "training with unroll=True",
                  "unroll=False / unroll=True", "the plain TensorFlow graph DRAW", "model / plain graph DRAW",
                  "evaluation (the model's test_function", "importance-weighted estimate", "evaluation / training",
                  "K = 1000 over 10,000 test images", "peak memory"):
        assert label in printed
    assert all(np.isfinite(value) and value > 0 for value in figures.values())


def test_the_plain_graph_draw_learns_its_batch_down_to_the_pixels_entropy():
    # Its images are Bernoulli(0.2) pixels: from a near-zero canvas (784 ln 2 nats, plus a little
    # KL) it must fall to about their entropy, 784 · H(0.2), the best a model of them can do on
    # average (the baseline is a working DRAW, not just an op count).
    from keras_draw import presets

    config = {**presets.get("tiny"), "num_steps": 4}
    step = load("graph_baseline").graph_draw_train_step(tf, config, batch_size=16, learning_rate=1e-2)
    losses = [step() for _ in range(60)]
    entropy = -784 * (0.2 * math.log(0.2) + 0.8 * math.log(0.8))  # 392.4 nats
    assert abs(losses[0] - 784 * math.log(2)) < 10, losses[0]
    assert np.mean(losses[-10:]) < 1.05 * entropy, losses[::10]


def test_the_plain_graph_draws_filterbanks_read_write_and_kl_are_keras_draws():
    # The same equations (19-20, 25-27, 29, 11) as the package's, which the equation tests pin.
    from keras_draw import losses
    from keras_draw.filterbank import filterbank
    from keras_draw.layers.attentive_read import read_patch
    from keras_draw.layers.attentive_write import write_patch

    baseline = load("graph_baseline")
    rng = np.random.default_rng(0)
    g_x, g_y, delta, sigma2, gamma = (np.array(v, np.float32) for v in
                                      ([3.0, 5.5], [2.0, 4.0], [1.3, 0.7], [0.9, 2.0], [1.5, 0.6]))
    column = lambda v: tf.constant(v[:, None])
    f_x, f_y = baseline.filterbank(tf, column(g_x), column(g_y), column(delta), column(sigma2), 3, 6, 8)
    expected_x, expected_y = filterbank(g_x, g_y, delta, sigma2, 3, image_height=6, image_width=8)
    np.testing.assert_allclose(f_x, expected_x, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(f_y, expected_y, rtol=1e-5, atol=1e-7)
    image, w = rng.random((2, 6, 8, 3), np.float32), rng.random((2, 3, 3, 3), np.float32)
    np.testing.assert_allclose(baseline.read_patch(tf, image, f_x, f_y, column(gamma)),
                               read_patch(image, expected_x, expected_y, gamma), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(baseline.write_patch(tf, w, f_x, f_y, column(gamma)),
                               write_patch(w, expected_x, expected_y, gamma), rtol=1e-5, atol=1e-6)
    mu, log_sigma = rng.standard_normal((2, 1, 4), np.float32), rng.standard_normal((2, 1, 4), np.float32)
    np.testing.assert_allclose(baseline.kl_divergence(tf, mu[:, 0], log_sigma[:, 0]),
                               losses.rate(mu, log_sigma), rtol=1e-5)
