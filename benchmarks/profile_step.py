"""Where a DRAW training step spends its time, read from a TensorFlow profiler trace (issue 14).

    python benchmarks/profile_step.py                    # the mnist preset, batch 100, as train.py
    python benchmarks/profile_step.py --unroll --steps 3

Traces `--steps` training steps (after `--warmup` untraced ones) with `tf.profiler`, then prints,
from the trace's host events:
  - the training step's wall time (median over the traced steps);
  - the XLA executions per step, their wall time, and the thread time of the work inside them
    (its leaf operations on all threads) as a number of busy cores: with step-body XLA there is
    one execution per DRAW step forward and one backward, so this says how much of the machine
    the recurrence keeps busy;
  - the thread time per step of each kind of leaf work (XLA dots, XLA fusions, XLA copies,
    TensorFlow operations outside XLA), for each XLA module (the step body's forward and
    backward) and outside XLA;
  - the leaf operations with the most thread time.
Thread times of operations that ran concurrently with others count in full, so a share of
cores below 1 means that the other cores waited.
"""

import argparse
import collections
import glob
import os
import re
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Host events that wrap others (the executors' and XLA's own bookkeeping), not leaf work.
WRAPPERS = {"ExecutorState::Process", "ExecutorState::ProcessAsync::Start", "ExecutorState::ProcessAsync::Done",
            "CpuExecutable::ExecuteAsyncOnStream", "BlockUntilReady", "ThunkExecutor::Execute",
            "SlinkyThreadPool::Await", "ParallelFor"}
XLA_CALL = "ExecutorState::ProcessAsync::Start"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist", help="a keras_draw preset (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=100, help="images per step (default: %(default)s)")
    parser.add_argument("--unroll", choices=("auto", "on", "off"), default="auto",
                        help="Draw.compile unroll: auto (unrolled where the step body alone is compiled), on, off")
    parser.add_argument("--steps", type=int, default=3, help="traced training steps (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untraced steps after the first (default: %(default)s)")
    parser.add_argument("--top", type=int, default=10, help="leaf operations listed (default: %(default)s)")
    return parser.parse_args(argv)


def kind_of(name):
    """The kind of leaf work an XLA host event names."""
    if re.match(r"(MatMul|dot|einsum|Einsum)", name):
        return "dots"
    if "copy" in name:
        return "copies"
    return "fusions"


def trace_steps(args, log_dir):
    """Runs and traces the training steps; returns their wall times in seconds."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_draw import Draw, presets
    from keras_draw.train_options import SWITCH_CHOICES

    model = Draw(**presets.get(args.preset), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), unroll=SWITCH_CHOICES[args.unroll])
    shape = (args.batch_size, *model.image_shape)
    x = (np.random.default_rng(0).random(shape) > 0.5).astype(np.float32)
    iterator = iter(tf.data.Dataset.from_tensors(x).repeat())
    model.make_train_function()
    for _ in range(1 + args.warmup):
        model.train_function(iterator)["loss"].numpy()
    seconds = []
    tf.profiler.experimental.start(log_dir)
    for _ in range(args.steps):
        start = time.perf_counter()
        model.train_function(iterator)["loss"].numpy()
        seconds.append(time.perf_counter() - start)
    tf.profiler.experimental.stop()
    return seconds


def host_events(log_dir):
    """(thread name, event name, start ps, duration ps, XLA module or None) of the host plane."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(os.path.join(log_dir, "plugins", "profile", "*", "*.xplane.pb"))
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    (plane,) = [p for p in space.planes if p.name == "/host:CPU"]
    stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
    for line in plane.lines:
        for event in line.events:
            name = plane.event_metadata[event.metadata_id].name
            module = next((s.str_value or stat_names.get(s.ref_value) for s in event.stats
                           if stat_names.get(s.metadata_id) == "hlo_module"), None)
            yield line.name, name, line.timestamp_ns * 1000 + event.offset_ps, event.duration_ps, module


def concurrency(leaves, calls):
    """Of the calls' wall time (intervals (start, duration), not overlapping), the time with no
    leaf running and the time with two or more running (leaves: (start, duration))."""
    edges = sorted([(start, 1) for start, _ in leaves] + [(start + duration, -1) for start, duration in leaves])
    idle = sum(duration for _, duration in calls)
    two, depth, last = 0, 0, None
    for time_ps, change in edges:
        if last is not None and depth >= 1:
            idle -= time_ps - last
        if last is not None and depth >= 2:
            two += time_ps - last
        depth, last = depth + change, time_ps
    return idle, two


def report(events, seconds, top):
    """The figures, as printed lines."""
    steps = len(seconds)
    ms = 1e-9 / steps  # picoseconds over all traced steps -> milliseconds per step
    calls = [(start, duration) for _, name, start, duration, _ in events if name == XLA_CALL]
    work = collections.Counter()
    ops = collections.Counter()
    inside_xla = 0
    for thread, name, _, duration, module in events:
        if name in WRAPPERS or not thread.startswith(("tf_Compute", "tf_numa", "tf_XLA", "tf_inter")):
            continue
        if module is not None:  # a leaf of an XLA execution
            where = "backward" if "backward" in module else ("forward" if "forward" in module else module)
            work[(where, kind_of(name))] += duration
            inside_xla += duration
        else:
            where = "outside XLA"
            work[(where, "TensorFlow ops")] += duration
        ops[(where, name)] += duration
    wall = sum(d for _, d in calls)
    idle, two = concurrency([(start, duration) for thread, name, start, duration, module in events
                             if module is not None and name not in WRAPPERS], calls)
    lines = [
        f"training step: median {statistics.median(seconds) * 1e3:.0f} ms over {steps} traced steps "
        f"(min {min(seconds) * 1e3:.0f}, max {max(seconds) * 1e3:.0f})",
        f"XLA executions: {len(calls) / steps:.0f} per step, median {statistics.median(d for _, d in calls) * 1e-9:.2f} ms "
        f"each, {wall * ms:.0f} ms per step in all; the work inside them kept "
        f"{inside_xla / wall if wall else 0:.2f} cores busy on average",
        f"  of their wall time: {idle / wall if wall else 0:.0%} with no leaf operation running (the runtimes' "
        f"own overhead), {two / wall if wall else 0:.0%} with two or more",
        "thread time per step, by where and kind of work:",
    ]
    for (where, kind), duration in sorted(work.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {where:12s} {kind:15s} {duration * ms:8.1f} ms")
    lines.append(f"the {top} leaf operations with the most thread time per step:")
    for (where, name), duration in ops.most_common(top):
        lines.append(f"  {where:12s} {name[:60]:60s} {duration * ms:8.1f} ms")
    return lines


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as log_dir:
        seconds = trace_steps(args, log_dir)
        events = list(host_events(log_dir))
    print(f"preset {args.preset}, batch {args.batch_size}, unroll {args.unroll}, {os.cpu_count()} CPU cores")
    for line in report(events, seconds, args.top):
        print(line)
    return 0


if __name__ == "__main__":
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # keras_draw, uninstalled
    sys.exit(main())
