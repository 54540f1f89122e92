"""benchmarks/: the FLOP counts behind the GFLOP/s figures, against the model's own graph."""

import importlib.util
import json
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
    # The recurrence alone has the same dense products and none of the filterbank's.
    assert load("recurrence").recurrence_flops_per_image(config) == 3 * dense


def test_the_recurrence_alone_gives_every_kernel_a_finite_nonzero_gradient():
    gradients = load("recurrence").recurrence_train_step(tf, dict(CONFIG, attention=True), batch_size=4)()
    assert len(gradients) == 4
    assert all(np.all(np.isfinite(g)) and np.abs(g).sum() > 0 for g in gradients)


@pytest.mark.slow
def test_throughput_benchmark_prints_every_figure(capsys):
    module = load("train_throughput")
    args = module.parse_args(["--preset", "tiny", "--num-steps", "2", "--batch-size", "4", "--steps", "2",
                              "--warmup", "0", "--matmul-repeats", "2", "--jit", "off", "--compare-unroll",
                              "--compare-graph"])
    figures = module.benchmark(args)
    printed = capsys.readouterr().out
    for label in ("malloc: ", "matmul rate 2048x2048x2048", "time to first step", "roofline", "training images/s",
                  "the recurrence alone", "model / recurrence alone", "training with unroll=True",
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


def test_the_profile_report_divides_thread_time_by_steps_and_by_the_wall_time_of_xla_calls():
    profile = load("profile_step")
    ps = 10**9  # one millisecond in picoseconds
    call = profile.XLA_CALL
    events = [  # two steps: in each, one forward call of 4 ms and one backward call of 5 ms
        ("tf_Compute/1", call, 0, 4 * ps, None), ("tf_Compute/1", call, 10 * ps, 5 * ps, None),
        ("tf_Compute/1", call, 20 * ps, 4 * ps, None), ("tf_Compute/1", call, 30 * ps, 5 * ps, None),
        ("tf_numa_Eigen/2", "MatMul.26", 0, 3 * ps, "a_forward_step_1"),
        ("tf_numa_Eigen/3", "add_divide_fusion.6", 0, 3 * ps, "a_forward_step_1"),
        ("tf_numa_Eigen/2", "MatMul.44", 10 * ps, 6 * ps, "a_inference___backward_step_1"),
        ("tf_numa_Eigen/2", "copy.61", 20 * ps, 2 * ps, "a_forward_step_1"),
        ("tf_numa_Eigen/2", "ThunkExecutor::Execute", 0, 40 * ps, "a_forward_step_1"),  # a wrapper: not counted
        ("tf_Compute/1", "AddN_9:AddN", 40 * ps, 4 * ps, None),
        ("python", "multi_step_on_iterator", 0, 50 * ps, None),  # not a compute thread
    ]
    lines = profile.report(events, seconds=[0.05, 0.07], top=2)
    assert lines[0].startswith("training step: median 60 ms over 2 traced steps (min 50, max 70)")
    # 4 calls over 2 steps, 18 ms of calls, 14 ms of leaf work inside them: 0.78 cores.
    assert lines[1] == ("XLA executions: 2 per step, median 4.50 ms each, 9 ms per step in all; "
                        "the work inside them kept 0.78 cores busy on average")
    # Leaves run during 0-3 ms (two at once), 10-16 and 20-22 ms: 11 of the calls' 18 ms, 3 of them doubly.
    assert lines[2] == "  of their wall time: 39% with no leaf operation running (the runtimes' own overhead), 17% with two or more"
    rows = {tuple(line.split()[:-2]): float(line.split()[-2]) for line in lines[4:-3]}
    assert rows == {("forward", "dots"): 1.5, ("forward", "fusions"): 1.5, ("forward", "copies"): 1.0,
                    ("backward", "dots"): 3.0, ("outside", "XLA", "TensorFlow", "ops"): 2.0}
    assert "MatMul.44" in lines[-2] and lines[-2].endswith("3.0 ms")  # the most thread time first


@pytest.mark.slow
def test_the_profile_of_a_real_step_finds_the_step_bodys_xla_calls(capsys):
    profile = load("profile_step")
    assert profile.main(["--preset", "tiny", "--batch-size", "4", "--steps", "1", "--warmup", "0"]) == 0
    printed = capsys.readouterr().out
    # T = 3, unrolled two steps per call: a call of two steps and one of one, forward and
    # backward, and one more XLA execution of the training step (129 at the paper's T = 64 with
    # one step per call).
    calls = int(printed.split("XLA executions: ")[1].split()[0])
    assert loop.STEPS_PER_CALL == 2 and calls == 2 + 2 + 1
    for kind in ("forward", "backward", "outside XLA"):
        assert f"  {kind}" in printed


@pytest.mark.slow
def test_the_gpu_session_script_runs_every_stage_and_resumes_the_run_under_out(copy_run, mnist_data_dir, tmp_path):
    """`--smoke` on the CPU: the loss checks pass, the benchmarks print, and the run gets one
    epoch more under OUT, its checkpoint with it, while the run given is left as it was."""
    session = load("gpu_session")
    before = (copy_run / "metrics.csv").read_text()
    out = tmp_path / "out"
    assert session.main(["--out", str(out), "--smoke", "--run-dir", str(copy_run), "--data-dir", mnist_data_dir,
                         "--budget-s", "400"]) == 0
    figures = json.loads((out / "gpu_session.json").read_text())
    assert not any("error" in figures[stage] for stage in ("check", "throughput", "campaign"))
    check = figures["check"]
    assert abs(check["float32"] - check["cpu_float32"]) <= 1e-4 * check["cpu_float32"]
    assert check["trained"] < check["cpu_float32"]
    assert set(figures["throughput"]) == {"float32_batch100", "float32_batch500", "mixed_bfloat16_batch100"}
    assert all(run["images_per_s"] > 0 for run in figures["throughput"].values())
    epochs = (out / "run" / "metrics.csv").read_text().splitlines()
    assert figures["campaign"]["status"] == 0 and len(epochs) == len(before.splitlines()) + 1
    assert (out / "run" / "checkpoint" / "state.json").is_file()
    assert (copy_run / "metrics.csv").read_text() == before


def test_the_gpu_session_resumes_with_the_runs_own_options():
    flags = load("gpu_session").train_flags({"preset": "mnist", "epochs": 1000, "log_test": True, "unroll": True,
                                             "resume": False, "output_dir": "runs/x", "manual_dir": "../shared",
                                             "lr_patience": 4, "early_stopping": None, "weight_average": 0.999})
    assert flags == ["--epochs", "1000", "--log-test", "--lr-patience", "4", "--preset", "mnist", "--unroll",
                     "--weight-average", "0.999"]


def test_the_allocator_benchmark_compares_each_allocator_with_the_systems_round_by_round(monkeypatch):
    allocator = load("allocator")
    rounds = [{"system": {"images_per_s": 200.0, "peak_gib": 1.5}, "tcmalloc": {"images_per_s": 240.0, "peak_gib": 1.4}},
              {"system": {"images_per_s": 100.0, "peak_gib": 1.6}, "tcmalloc": {"images_per_s": 150.0, "peak_gib": 1.4}},
              {"system": {"images_per_s": 180.0, "peak_gib": 1.5}, "tcmalloc": {"images_per_s": 198.0, "peak_gib": 1.5}}]
    lines = allocator.summarize(rounds, ["system", "tcmalloc"])
    assert lines[0] == "system: images_per_s median 180.00 over 3 processes (min 100.00, max 200.00)"
    assert lines[3] == "tcmalloc: peak_gib median 1.40 over 3 processes (min 1.40, max 1.50)"
    # Medians 198 / 180; the rounds' ratios 1.2, 1.5 and 1.1.
    assert lines[4] == "tcmalloc / system, speed: 1.100 (ratio of the medians), 1.200 (median of the rounds' ratios)"
    assert len(lines) == 5
    # Wall times: a speed-up is the system's time over the other's (100/80, 120/100, 90/90).
    timed = [{"system": {"seconds": s}, "tcmalloc": {"seconds": t}} for s, t in ((100, 80), (120, 100), (90, 90))]
    assert allocator.summarize(timed, ["system", "tcmalloc"])[-1] == (
        "tcmalloc / system, speed: 1.111 (ratio of the medians), 1.200 (median of the rounds' ratios)")
    # Each process is told what to preload, and train.py not to preload anything itself.
    monkeypatch.setenv("LD_PRELOAD", "/opt/a.so")
    assert allocator.environment("/lib/t.so")["LD_PRELOAD"] == "/lib/t.so:/opt/a.so"
    assert allocator.environment(None)["LD_PRELOAD"] == "/opt/a.so"
    assert allocator.environment(None)["KERAS_DRAW_MALLOC"] == "system"
