"""One command for a session that is lent a GPU (issue 13): check, measure, then train the campaign.

    python benchmarks/gpu_session.py --out $OUT --data-dir runs/tfds            # on the device
    python benchmarks/gpu_session.py --out /tmp/gpu --smoke --run-dir RUN       # every stage, briefly

Within `--budget-s` seconds in all (default 540: a device command may run 600), in three stages,
each printed under its own heading; a stage that fails prints its error and the next one runs:
  1. check: the tiny preset's negative ELBO at fixed weights and noise under whole-step XLA on
     the default device, in float32 and mixed_bfloat16, against the plain float32 pass on the CPU
     in the same process (float32 within 1e-4 relative, bfloat16 within 2 %); then 20 training
     steps of it there on one batch, whose loss must fall;
  2. throughput: benchmarks/train_throughput.py at the mnist preset (batch 100 and 500 in float32,
     batch 100 in mixed_bfloat16), the default device's `compile` (on a GPU: whole-step XLA);
  3. campaign: the run in `--run-dir` (default results/binarized_mnist-mnist, with the shipped
     weights as its best so far) copied under `--out` and resumed by train.py with the options in
     its config.json, but `unroll` left to `Draw.compile` ("auto": on a GPU, the whole step
     under XLA over a `tf.while_loop`; unrolled, it would compile for minutes), until SIGTERM
     at the budget's end; its checkpoint and history come back in `--out`, and the CPU
     campaign goes on from them.
Figures also go to OUT/gpu_session.json. `--smoke` runs the stages at sizes that take seconds on
a CPU (the tiny preset, two timed steps, one epoch more of the run given), so that a test can run
the script. On a machine that has the requirements and a GPU, copy the prepared dataset beside
the code first (`mkdir -p runs/tfds && cp -r ~/tensorflow_datasets/binarized_mnist runs/tfds/`,
13 MB), then bring OUT/<run> back into results/ to go on on the CPU. The GPU machines lent to our
sessions cannot run it as they are: they hold no TensorFlow, whose wheel is far over the 64 MiB
a command may carry there (docs/results.md).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMPAIGN_RUN = os.path.join(ROOT, "results", "binarized_mnist-mnist")
CAMPAIGN_BEST = os.path.join(ROOT, "keras_draw", "weights", "mnist-binarized_mnist.weights.h5")
# The run options that name places on the machine that made the run, set anew here.
PLACES = ("output_dir", "data_dir", "manual_dir", "model_base_path", "export_dir", "resume")  # export_dir: older runs
STOP_MARGIN_S = 45  # from SIGTERM to train.py's exit, with time left to write gpu_session.json


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the figures, the run's checkpoint and history")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets folder holding the run's dataset")
    parser.add_argument("--run-dir", default=CAMPAIGN_RUN, help="the run to resume (default: the campaign's)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="seconds for all stages (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="every stage at sizes that take seconds on a CPU")
    return parser.parse_args(argv)


def check_tiny(steps=20):
    """Stage 1: the tiny preset's loss on this device against the CPU; returns the figures."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_draw import Draw

    x = (np.random.default_rng(0).random((8, 28, 28, 1)) > 0.5).astype(np.float32)
    with tf.device("/CPU:0"):
        model = Draw.from_preset("tiny", seed=0)
        epsilon = model.sample_noise(8, seed=1)
        reference = float(tf.reduce_mean(model.negative_elbo(x, epsilon)["loss"]))
    figures = {"cpu_float32": reference}
    for precision, tolerance in (("float32", 1e-4), ("mixed_bfloat16", 2e-2)):
        model = Draw.from_preset("tiny", seed=0, dtype=precision)
        loss = float(tf.reduce_mean(tf.function(model.negative_elbo, jit_compile=True)(x, epsilon)["loss"]))
        error = abs(loss - reference) / reference
        print(f"tiny, whole-step XLA, {precision}: negative ELBO {loss:.4f} against {reference:.4f} on the CPU "
              f"(relative difference {error:.1e}, tolerance {tolerance:.0e}): {'ok' if error <= tolerance else 'FAILED'}")
        figures[precision] = loss
        if error > tolerance:
            raise AssertionError(f"{precision} loss {loss} is not within {tolerance} of the CPU's {reference}")
    model = Draw.from_preset("tiny", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    history = model.fit(np.tile(x, (steps, 1, 1, 1)), batch_size=8, epochs=1, verbose=0).history
    first, last = reference, float(model.evaluate(x, batch_size=8, verbose=0, return_dict=True)["loss"])
    print(f"tiny, {steps} training steps with whole-step XLA: loss {first:.2f} -> {last:.2f} "
          f"({history['loss'][0]:.2f} on average while training)")
    if not last < first:
        raise AssertionError(f"training did not lower the loss: {first} -> {last}")
    figures["trained"] = last
    return figures


def throughput(smoke):
    """Stage 2: the training and evaluation rates at the mnist preset; returns the figures."""
    import keras

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_throughput

    runs = [("float32", 100), ("float32", 500), ("mixed_bfloat16", 100)]
    sizes = ["--preset", "tiny", "--steps", "2", "--warmup", "0", "--matmul-repeats", "2"] if smoke else ["--steps", "10"]
    figures = {}
    for precision, batch_size in runs:
        print(f"-- {precision}, batch {batch_size}", flush=True)
        args = train_throughput.parse_args([*sizes, "--batch-size", str(batch_size), "--precision", precision,
                                            "--no-recurrence"])
        figures[f"{precision}_batch{batch_size}"] = train_throughput.benchmark(args)
        keras.mixed_precision.set_global_policy("float32")
    return figures


def train_flags(options):
    """train.py's flags for a run's saved options (config.json), its places left out."""
    flags = []
    for name, value in sorted(options.items()):
        flag = "--" + name.replace("_", "-")
        if name in PLACES or value is None or value is False or (name == "unroll" and value == "auto"):
            continue
        flags += [flag] if value is True else [flag, str(value)]
    return flags


def campaign(args, deadline):
    """Stage 3: resumes the run under OUT until the deadline; returns its last epochs."""
    run = os.path.join(args.out, os.path.basename(os.path.normpath(args.run_dir)))
    shutil.copytree(args.run_dir, run, dirs_exist_ok=True)
    if args.run_dir == CAMPAIGN_RUN and not os.path.exists(os.path.join(run, "best.weights.h5")):
        shutil.copy(CAMPAIGN_BEST, os.path.join(run, "best.weights.h5"))  # as docs/results.md resumes it
    with open(os.path.join(run, "config.json")) as f:
        options = json.load(f)["options"]
    options["unroll"] = "auto"  # on a GPU the while loop under whole-step XLA (docstring)
    if args.smoke:  # one epoch more than the run has
        options["epochs"] = len(_read_rows(run))  # a header and a line per epoch done
    command = [sys.executable, os.path.join(ROOT, "train.py"), *train_flags(options), "--resume",
               "--output-dir", run, "--verbose", "2"]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    print(" ".join(command), flush=True)
    process = subprocess.Popen(command)
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # train.py keeps its last checkpoint and exits
        process.wait()
    print(f"train.py exited with status {process.returncode}")
    rows = _read_rows(run)
    return {"status": process.returncode, "header": rows[0], "last_rows": rows[-3:], "run": run}


def _read_rows(run):
    """The lines of the run's metrics.csv: a header, then one per epoch."""
    with open(os.path.join(run, "metrics.csv")) as f:
        return f.read().splitlines()


def main(argv=None):
    args = parse_args(argv)
    start = time.monotonic()
    deadline = start + args.budget_s - STOP_MARGIN_S
    os.makedirs(args.out, exist_ok=True)
    import tensorflow as tf

    figures = {"devices": [d.name for d in tf.config.list_logical_devices()]}
    print(f"devices: {', '.join(figures['devices'])}")
    stages = (("check", check_tiny), ("throughput", lambda: throughput(args.smoke)),
              ("campaign", lambda: campaign(args, deadline)))
    failed = []
    for name, stage in stages:
        print(f"\n== {name} ({time.monotonic() - start:.0f} s in)", flush=True)
        try:
            figures[name] = stage()
        except Exception as err:  # the next stage still gets its time
            traceback.print_exc()
            figures[name] = {"error": f"{type(err).__name__}: {err}"}
            failed.append(name)
    figures["seconds"] = time.monotonic() - start
    with open(os.path.join(args.out, "gpu_session.json"), "w") as f:
        json.dump(figures, f, indent=2, default=str)
    print(f"\n{figures['seconds']:.0f} s; failed stages: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)  # keras_draw, uninstalled
    sys.exit(main())
