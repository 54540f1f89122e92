"""Latency of the exported `generate` signature: through TF Serving's loader alone, then under load.

    python benchmarks/serving_latency.py                          # the mnist preset, its initial weights
    python benchmarks/serving_latency.py --model runs/mnist/model.keras --repeats 50
    python benchmarks/serving_latency.py --clients 50 --requests 10 --load-batch 4

Exports the model (by default `Draw.from_preset("mnist")`: the latency does not depend on the
weights' values) into a temporary folder, loads it as TF Serving does (keras_draw.serving.session:
a session through TensorFlow's C API), and times `generate` on fresh noise for each batch size:
median and 95th percentile over the repeated calls, after warm-up calls, and the throughput at the
median, in images per second. This measures the graph alone; TF Serving adds its request decoding
and the network.

Then, with `--clients N` (default 16; 0 skips it), the stand-in server (export/stand_in_server.py,
in a process of its own, at its default limits) serves `generate_seeded` over REST to N
concurrent clients, each sending `--requests` requests of `--load-batch` seeds one after the
other: p50 and p99 of the request latencies (queueing behind --max-concurrent included), the
requests per second, the answers by HTTP status, and the server's peak resident memory.
"""

import argparse
import importlib.util
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .keras file (default: the preset with its initial weights)")
    parser.add_argument("--preset", default="mnist", help="used without --model (default: %(default)s)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per batch size (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent REST clients; 0: no load test (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=20, help="requests per client (default: %(default)s)")
    parser.add_argument("--load-batch", type=int, default=1, help="seeds per request under load (default: %(default)s)")
    args = parser.parse_args(argv)
    for flag, value, low in (("--clients", args.clients, 0), ("--requests", args.requests, 1),
                             ("--load-batch", args.load_batch, 1), ("--repeats", args.repeats, 1)):
        if not low <= value <= 10_000:
            parser.error(f"{flag} must be from {low} to 10000. Received: {flag}={value}")
    return args


def time_calls(function, repeats, warmup):
    """Seconds taken by each of `repeats` calls of function(), after `warmup` calls."""
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def benchmark(export_path, noise_shape, batch_sizes, repeats, warmup):
    """[(batch size, median s, p95 s, images per s)] of `generate` from the SavedModel, through TF
    Serving's loader. `noise_shape` is (T, |z|)."""
    import numpy as np

    from keras_draw.serving.session import ServingSession

    rows = []
    with ServingSession(export_path) as session:
        for batch_size in batch_sizes:
            noise = np.random.default_rng(0).standard_normal((batch_size, *noise_shape)).astype(np.float32)
            seconds = np.array(time_calls(lambda: session.predict("generate", {"noise": noise}), repeats, warmup))
            median, p95 = np.median(seconds), np.percentile(seconds, 95)
            rows.append((batch_size, median, p95, batch_size / median))
    return rows


def serving_load():
    """benchmarks/serving_load.py, beside this file (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("serving_load", Path(__file__).with_name("serving_load.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_test(export_dir, clients, requests, batch):
    """{"seconds": [...], "statuses": {status: count}, "wall": s, "peak_rss": bytes} of `clients`
    concurrent clients against the stand-in serving `export_dir`, after one warm-up request."""
    load = serving_load()
    with load.ServerProcess(export_dir) as server:
        status, answer, _ = load.post(server.rest_url, load.seeds_body(batch))  # the server loads the model
        if status != 200:
            raise RuntimeError(f"The warm-up request failed: HTTP {status}: {answer}")
        start = time.perf_counter()
        results = load.fire(server.rest_url, clients, requests, rows=batch)
        wall = time.perf_counter() - start
        peak = server.memory()["VmHWM"]
    statuses = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    seconds = [s for status, s in results if status == 200] or [math.nan]
    return {"p50": load.percentile(seconds, 50), "p99": load.percentile(seconds, 99), "max": max(seconds),
            "statuses": statuses, "wall": wall, "count": len(results), "peak_rss": peak}


def print_load(figures, clients, requests, batch):
    print(f"REST generate_seeded through the stand-in server (its own process, default flags): {clients} "
          f"concurrent clients x {requests} requests of {batch} seed(s)")
    print(f"{'clients':>8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'requests/s':>11}  answers by HTTP status; server peak RSS")
    answers = ", ".join(f"{status}: {count}" for status, count in sorted(figures["statuses"].items()))
    print(f"{clients:>8} {figures['p50'] * 1e3:>9.1f} {figures['p99'] * 1e3:>9.1f} {figures['max'] * 1e3:>9.1f} "
          f"{figures['count'] / figures['wall']:>11.1f}  {answers}; {figures['peak_rss'] / 2**20:.0f} MiB")


def main(argv=None):
    args = parse_args(argv)
    import keras
    import tensorflow as tf

    from keras_draw import Draw, serving

    model = keras.saving.load_model(args.model, compile=False) if args.model else Draw.from_preset(args.preset, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        path = serving.export(model, folder)
        rows = benchmark(path, (model.num_steps, model.latent_dim), args.batch_sizes, args.repeats, args.warmup)
        load = load_test(folder, args.clients, args.requests, args.load_batch) if args.clients else None
    devices = ", ".join(d.device_type for d in tf.config.list_logical_devices()) or "CPU"
    source = args.model or f"preset {args.preset}"
    print(f"generate through TF Serving's loader (the C API): {source}, T={model.num_steps}, z={model.latent_dim}, "
          f"{model.image_height}x{model.image_width}x{model.channels}; TensorFlow {tf.__version__} on {devices}, "
          f"{os.cpu_count()} CPU cores; {args.repeats} calls after {args.warmup} warm-up")
    print(f"{'batch':>6} {'median ms':>10} {'p95 ms':>10} {'images/s':>10}")
    for batch_size, median, p95, throughput in rows:
        print(f"{batch_size:>6} {median * 1e3:>10.1f} {p95 * 1e3:>10.1f} {throughput:>10.1f}")
    if load is not None:
        print_load(load, args.clients, args.requests, args.load_batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
