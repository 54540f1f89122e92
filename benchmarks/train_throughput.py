"""Training and evaluation throughput of DRAW, against a plain TF graph DRAW and the matmul rate.

    python benchmarks/train_throughput.py                       # the mnist preset, batch 100, T = 64
    python benchmarks/train_throughput.py --num-steps 16 --steps 5 --jit on
    python benchmarks/train_throughput.py --compare-unroll    # unrolled and while loop, alternating
    python benchmarks/train_throughput.py --compare-graph     # against a plain TF graph DRAW (the peer)

Prints one labelled figure per line, all measured in this one process:
  - the dense float32 matmul rate: a 2048×2048 product, and the LSTM-shaped products at the
    benchmark's batch size, [input, h] (batch, in + units) × (in + units, 4·units);
  - time to the first training step: from the start of model construction to the end of the
    first step through the model's `train_function` (tracing and graph optimisation included);
  - training images/s over `--steps` timed steps after `--warmup` untimed ones: median, min, max;
  - achieved GFLOP/s at the median and its fraction of each matmul rate;
  - evaluation, forward passes only, its steps alternating with training's: images/s of the
    model's `test_function` (what `fit`'s validation and `evaluate` run), and (image, sample)
    passes/s of the importance-weighted estimate (`keras_draw.evaluate.log_importance_weights`,
    1000 passes per call as `keras_draw.evaluate` makes them), each as a multiple of the
    training rate, and the hours that K = 1000 over 10,000 test images takes at that rate;
  - with `--compare-unroll`, the same for the model with the other `unroll` setting; with
    `--compare-graph`, for the plain TensorFlow graph DRAW of benchmarks/graph_baseline.py (what a
    user would pick instead), and the model's images/s as a multiple of it; their steps alternate
    with the model's, so that all see the same machine;
  - the roofline: the images/s of a step that did nothing but its matmuls, at the LSTM-shaped
    rate (a bound for any implementation of these products on this machine);
  - peak memory: the process's maximum resident set (resource.getrusage ru_maxrss), also right
    after importing TensorFlow and Keras (what any TensorFlow program holds before its first
    model), and on a GPU the device's peak (tf.config.experimental.get_memory_info).

FLOPs per image of one training step, counted from the configuration (matmuls only, 2 FLOPs per
multiply-add; elementwise ops, the filterbank's exponentials and the optimizer are not counted):
    per step t, with R = 2·N_r²·C read values (2·B·A·C without attention), E, D the encoder and
    decoder units and Z = |z|:
      encoder LSTM      2 · (R + D + E) · 4E            ([r_t, h^dec_{t−1}, h^enc_{t−1}] → gates)
      decoder LSTM      2 · (Z + D) · 4D                ([z_t, h^dec_{t−1}] → gates)
      latent heads      2 · E · 2Z                      (μ_t and log σ_t)
      with attention:
        windows         2 · D · 5 · 2                   (read and write windows, eq. 21)
        write patch     2 · D · N_w²·C                  (eq. 28)
        read einsums    2 · 2C · (N_r·B·A + N_r·A·N_r)  (F_Y x F_Xᵀ for x and x̂, eq. 27)
        write einsums   2 · C · (B·N_w·N_w + B·N_w·A)   (F̂_Yᵀ w F̂_X, eq. 29)
      without attention:
        write           2 · D · B·A·C                   (eq. 18)
    × T steps, × 3 for forward and backward (the backward counted as twice the forward).
At the mnist preset this is 370.6 MFLOP per image.
"""

import argparse
import importlib.util
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# mixed_bfloat16: the LSTMs in bfloat16, attention, sampling and loss in float32 (see Draw).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

# (image, sample) passes per call of the importance-weighted estimate, as keras_draw.evaluate
# makes them (its `importance_batch_size`).
IMPORTANCE_PASSES = 1000


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist", help="a keras_draw preset (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=100, help="images per step (default: %(default)s)")
    parser.add_argument("--num-steps", type=int, default=None, help="T, overriding the preset's")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first (default: %(default)s)")
    parser.add_argument("--jit", choices=("on", "off", "auto"), default="auto",
                        help="Draw.compile jit_compile: auto (step body on CPU, whole step on GPU), on (whole step), off (none)")
    parser.add_argument("--unroll", choices=("auto", "on", "off"), default="auto",
                        help="Draw.compile unroll: auto (unrolled where the step body alone is compiled), on, off")
    parser.add_argument("--compare-unroll", action="store_true",
                        help="also time a model with the other unroll setting, its steps alternating with the first's")
    parser.add_argument("--compare-graph", action="store_true",
                        help="also time the plain TF graph DRAW (benchmarks/graph_baseline.py), steps alternating")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="keras dtype policy (default: %(default)s)")
    parser.add_argument("--inter-op-threads", type=int, default=0, help="tf.config.threading; 0: TensorFlow's choice")
    parser.add_argument("--intra-op-threads", type=int, default=0, help="tf.config.threading; 0: TensorFlow's choice")
    parser.add_argument("--matmul-repeats", type=int, default=20, help="timed matmul calls (default: %(default)s)")
    return parser.parse_args(argv)


def read_dim(config):
    """The size of the encoder's read input r_t: two N×N glimpses, or two whole images without attention."""
    c = config["channels"]
    if config.get("attention", True):
        return 2 * config["read_n"] ** 2 * c
    return 2 * config["image_height"] * config["image_width"] * c


def flops_per_image(config):
    """Matmul FLOPs of one training step per image (forward + backward), see the docstring."""
    c, e, d, z, t = (config[k] for k in ("channels", "encoder_units", "decoder_units", "latent_dim", "num_steps"))
    b, a = config["image_height"], config["image_width"]
    attention = config.get("attention", True)
    step = 2 * (read_dim(config) + d + e) * 4 * e  # encoder LSTM
    step += 2 * (z + d) * 4 * d  # decoder LSTM
    step += 2 * e * 2 * z  # μ and log σ heads
    if attention:
        n_r, n_w = config["read_n"], config["write_n"]
        step += 2 * d * 5 * 2  # read and write windows
        step += 2 * d * n_w * n_w * c  # write patch
        step += 2 * 2 * c * (n_r * b * a + n_r * a * n_r)  # read einsums, x and x̂
        step += 2 * c * (b * n_w * n_w + b * n_w * a)  # write einsums
    else:
        step += 2 * d * b * a * c  # write
    return 3 * t * step


def matmul_rate(tf, m, k, n, repeats, products_per_call):
    """Median float32 GFLOP/s of (m, k) × (k, n) products, `products_per_call` per tf.function."""
    lhs = tf.random.normal((products_per_call, m, k))
    rhs = tf.random.normal((k, n))

    @tf.function
    def products(lhs, rhs):
        total = tf.zeros((m, n))
        for i in range(products_per_call):  # distinct operands, so nothing is folded away
            total += tf.matmul(lhs[i], rhs)
        return total

    products(lhs, rhs).numpy()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        products(lhs, rhs).numpy()
        seconds.append(time.perf_counter() - start)
    return 2.0 * m * k * n * products_per_call / statistics.median(seconds) / 1e9


def _max_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def peak_memory_lines(tf, imported):
    lines = [f"peak memory (process max RSS): {_max_rss_gib():.2f} GiB; "
             f"{imported:.2f} GiB of it right after importing TensorFlow and Keras"]
    for device in tf.config.list_logical_devices("GPU"):
        peak = tf.config.experimental.get_memory_info(device.name)["peak"]
        lines.append(f"peak memory ({device.name}): {peak / 2**30:.2f} GiB")
    return lines


def _sibling_module(name):
    """benchmarks/NAME.py, imported whether or not benchmarks/ is on sys.path."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _first_step(draw, config, args, iterator, unroll):
    """A compiled model, its training step (a function), and the seconds from construction to
    the end of its first step (tracing and graph optimisation included); prints both."""
    import keras

    from keras_draw.train_options import SWITCH_CHOICES

    start = time.perf_counter()
    model = draw(**config, seed=0)
    jit_compile = SWITCH_CHOICES[args.jit]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile, unroll=unroll)
    model.optimizer.build(model.trainable_variables)
    model.make_train_function()
    train_function = model.train_function
    first_loss = float(train_function(iterator)["loss"])
    first_step = time.perf_counter() - start
    print(f"jit_compile: whole step {model.jit_compile}, step body {model.loop_jit_compile}; unrolled {model.loop_unroll}")
    print(f"time to first step (construction + tracing + one step): {first_step:.1f} s  (loss {first_loss:.2f})")
    return model, (lambda: float(train_function(iterator)["loss"])), first_step


def _evaluation_steps(model, x, importance_passes):
    """The model's evaluation step (`test_function`, on the batch x) and one call of the
    importance-weighted estimate's pass (`importance_passes` (image, sample) pairs), as
    functions; each is run once here, so that timing excludes tracing."""
    import numpy as np
    import tensorflow as tf

    from keras_draw.evaluate import log_importance_weights

    iterator = iter(tf.data.Dataset.from_tensors(x).repeat())
    model.make_test_function()
    test_function = model.test_function
    x_tiled = tf.constant(x[np.arange(importance_passes) % len(x)])
    epsilon = model.sample_noise(importance_passes, seed=0)
    log_weights = tf.function(lambda x, epsilon: log_importance_weights(model, x, epsilon))
    steps = (lambda: float(test_function(iterator)["loss"])), (lambda: float(log_weights(x_tiled, epsilon)[0]))
    for step in steps:
        step()
    return steps


def benchmark(args):
    """Prints the figures; returns them as a dict too (for tests and notebooks)."""
    import keras
    import numpy as np
    import tensorflow as tf

    imported = _max_rss_gib()
    from keras_draw import Draw, malloc, presets
    from keras_draw.train_options import SWITCH_CHOICES

    if args.inter_op_threads:  # settable only before TensorFlow's first op
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    config = presets.get(args.preset)
    if args.num_steps is not None:
        config["num_steps"] = args.num_steps
    devices = ", ".join(d.name for d in tf.config.list_logical_devices())
    print(f"machine: TensorFlow {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} CPU cores; devices: {devices}; "
          f"malloc: {malloc.active()}")
    print(f"configuration: preset {args.preset}, batch {args.batch_size}, T={config['num_steps']}, "
          f"units {config['encoder_units']}/{config['decoder_units']}, z={config['latent_dim']}, "
          f"read {config.get('read_n')}, write {config.get('write_n')}, jit {args.jit}, unroll {args.unroll}, precision {args.precision}, "
          f"threads inter/intra {args.inter_op_threads}/{args.intra_op_threads} (0: default)")

    square = matmul_rate(tf, 2048, 2048, 2048, max(3, args.matmul_repeats // 4), 1)
    e, d = config["encoder_units"], config["decoder_units"]
    r = read_dim(config)
    encoder_rate = matmul_rate(tf, args.batch_size, r + d + e, 4 * e, args.matmul_repeats, 20)
    decoder_rate = matmul_rate(tf, args.batch_size, config["latent_dim"] + d, 4 * d, args.matmul_repeats, 20)
    lstm_rate = statistics.mean([encoder_rate, decoder_rate])
    print(f"matmul rate 2048x2048x2048 float32: {square:.1f} GFLOP/s")
    print(f"matmul rate encoder LSTM {args.batch_size}x{r + d + e}x{4 * e} float32: {encoder_rate:.1f} GFLOP/s")
    print(f"matmul rate decoder LSTM {args.batch_size}x{config['latent_dim'] + d}x{4 * d} float32: {decoder_rate:.1f} GFLOP/s")

    keras.mixed_precision.set_global_policy(args.precision)
    rng = np.random.default_rng(0)
    shape = (args.batch_size, config["image_height"], config["image_width"], config["channels"])
    x = (rng.random(shape) > 0.5).astype(np.float32)
    iterator = iter(tf.data.Dataset.from_tensors(x).repeat())

    unroll = SWITCH_CHOICES[args.unroll]
    model, model_step, first_step = _first_step(Draw, config, args, iterator, unroll)
    # The peak so far is the model's; the models compared add their own tensors afterwards.
    memory = peak_memory_lines(tf, imported)
    timed = {"model": model_step}
    timed["evaluation"], timed["importance"] = _evaluation_steps(model, x, IMPORTANCE_PASSES)
    other_unroll = not model.loop_unroll
    if args.compare_unroll:
        _, timed["other"], _ = _first_step(Draw, config, args, iterator, other_unroll)
    if args.compare_graph:
        start = time.perf_counter()
        timed["graph"] = _sibling_module("graph_baseline").graph_draw_train_step(tf, config, args.batch_size)
        print(f"plain graph DRAW: time to first step (construction + tracing + one step): "
              f"{time.perf_counter() - start:.1f} s")
    for _ in range(args.warmup):
        for run in timed.values():
            run()
    seconds = {name: [] for name in timed}
    for _ in range(args.steps):
        for name, run in timed.items():  # alternating, so that all see the same machine
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    flops = {name: flops_per_image(config) for name in ("model", "other", "graph")}
    print(f"FLOPs per image per training step: {flops['model'] / 1e6:.1f} MFLOP (matmuls, forward + backward)")
    roofline = lstm_rate * 1e9 / flops["model"]
    print(f"roofline: {roofline:.1f} images/s for a step doing nothing but its matmuls, at the LSTM-shaped rate")
    figures = {"first_step_s": first_step, "matmul_gflops": square, "lstm_matmul_gflops": lstm_rate,
               "roofline_images_per_s": roofline}
    for name in ("evaluation", "importance"):
        rates = sorted({"evaluation": args.batch_size, "importance": IMPORTANCE_PASSES}[name] / s for s in seconds.pop(name))
        figures[f"{name}_per_s"] = statistics.median(rates)
        unit = {"evaluation": "images/s", "importance": "(image, sample) passes/s"}[name]
        label = {"evaluation": "evaluation (the model's test_function, forward only)",
                 "importance": "importance-weighted estimate (keras_draw.evaluate.log_importance_weights)"}[name]
        print(f"{label} {unit} over {args.steps} steps: median {figures[f'{name}_per_s']:.1f}, "
              f"min {rates[0]:.1f}, max {rates[-1]:.1f}")
    training = args.batch_size / statistics.median(seconds["model"])
    print(f"evaluation / training: {figures['evaluation_per_s'] / training:.2f}; importance-weighted / training: "
          f"{figures['importance_per_s'] / training:.2f}; K = 1000 over 10,000 test images: "
          f"{1e7 / figures['importance_per_s'] / 3600:.1f} hours at this rate")
    for name in seconds:
        rates = sorted(args.batch_size / s for s in seconds[name])
        median = statistics.median(rates)
        achieved = median * flops[name] / 1e9
        label = {"model": "training", "other": f"training with unroll={other_unroll}",
                 "graph": "the plain TensorFlow graph DRAW (benchmarks/graph_baseline.py), training"}[name]
        print(f"{label} images/s over {args.steps} steps: median {median:.1f}, min {rates[0]:.1f}, max {rates[-1]:.1f}")
        print(f"  seconds per step: median {args.batch_size / median:.3f}; achieved {achieved:.1f} GFLOP/s "
              f"({flops[name] / 1e6:.1f} MFLOP per image) = {achieved / square:.0%} of the 2048^3 matmul rate, "
              f"{achieved / lstm_rate:.0%} of the LSTM-shaped matmul rate")
        figures.update({f"{name}_images_per_s": median, f"{name}_gflops": achieved})
    figures["images_per_s"], figures["gflops"] = figures.pop("model_images_per_s"), figures.pop("model_gflops")
    if "other" in timed:
        print(f"unroll={model.loop_unroll} / unroll={other_unroll}, images/s: "
              f"{figures['images_per_s'] / figures['other_images_per_s']:.2f}")
    if "graph" in timed:
        print(f"model / plain graph DRAW, images/s: {figures['images_per_s'] / figures['graph_images_per_s']:.2f}")
    for line in memory:
        print(line)
    return figures


def main(argv=None):
    benchmark(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
