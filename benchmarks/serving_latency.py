"""Latency of the exported `generate` signature, called through the loaded SavedModel.

    python benchmarks/serving_latency.py                          # the mnist preset, its initial weights
    python benchmarks/serving_latency.py --model runs/mnist/model.keras --repeats 50

Exports the model (by default `Draw.from_preset("mnist")`: the latency does not depend on the
weights' values) into a temporary folder, loads it with `tf.saved_model.load` as TF Serving would
hold it, and times `generate` on fresh noise for each batch size: median and 95th percentile over
the repeated calls, after warm-up calls, and the throughput at the median, in images per second.
This measures the graph alone; TF Serving adds its request decoding and the network.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .keras file (default: the preset with its initial weights)")
    parser.add_argument("--preset", default="mnist", help="used without --model (default: %(default)s)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per batch size (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: %(default)s)")
    return parser.parse_args(argv)


def time_calls(function, inputs, repeats, warmup):
    """Seconds taken by each of `repeats` calls of function(**inputs), after `warmup` calls."""
    for _ in range(warmup):
        function(**inputs)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = function(**inputs)
        _ = {name: value.numpy() for name, value in outputs.items()}  # the results, on the host
        seconds.append(time.perf_counter() - start)
    return seconds


def benchmark(export_path, noise_shape, batch_sizes, repeats, warmup):
    """[(batch size, median s, p95 s, images per s)] of `generate` from the SavedModel.

    `noise_shape` is (T, |z|): the signature declares its input's shape open (it checks it).
    """
    import numpy as np
    import tensorflow as tf

    generate = tf.saved_model.load(export_path).signatures["generate"]
    rows = []
    for batch_size in batch_sizes:
        noise = tf.random.normal((batch_size, *noise_shape))
        seconds = np.array(time_calls(generate, {"noise": noise}, repeats, warmup))
        median, p95 = np.median(seconds), np.percentile(seconds, 95)
        rows.append((batch_size, median, p95, batch_size / median))
    return rows


def main(argv=None):
    args = parse_args(argv)
    import keras
    import tensorflow as tf

    from keras_draw import Draw, serving

    model = keras.saving.load_model(args.model, compile=False) if args.model else Draw.from_preset(args.preset, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        path = serving.export(model, folder)
        rows = benchmark(path, (model.num_steps, model.latent_dim), args.batch_sizes, args.repeats, args.warmup)
    devices = ", ".join(d.device_type for d in tf.config.list_logical_devices()) or "CPU"
    source = args.model or f"preset {args.preset}"
    print(f"generate through tf.saved_model.load: {source}, T={model.num_steps}, z={model.latent_dim}, "
          f"{model.image_height}x{model.image_width}x{model.channels}; TensorFlow {tf.__version__} on {devices}, "
          f"{os.cpu_count()} CPU cores; {args.repeats} calls after {args.warmup} warm-up")
    print(f"{'batch':>6} {'median ms':>10} {'p95 ms':>10} {'images/s':>10}")
    for batch_size, median, p95, throughput in rows:
        print(f"{batch_size:>6} {median * 1e3:>10.1f} {p95 * 1e3:>10.1f} {throughput:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # keras_draw, uninstalled
    sys.exit(main())
