"""Publishing a training run: its best weights into the package, its curves and figures to results/.

A maintainer's tool, run from a checkout (it writes into the repository tree, not into the
installed package):

    python scripts/publish.py runs/binarized_mnist-mnist --manual-dir ../shared/data/binarized_mnist

takes the run's weights of the lowest validation loss (`best.weights.h5`; the test split never
selects), and writes
    keras_draw/weights/PRESET-DATASET.weights.h5   loaded by Draw.from_preset(PRESET, weights=DATASET)
    keras_draw/weights/index.json                  its checksum, epoch and figures
    tests/data/DATASET-test-first500.npz           the first 500 test images, bit-packed (the
                                                   regression test's images; the figure they get
                                                   is in index.json, per preset)
    results/DATASET-PRESET/metrics.csv             the per-epoch history of the run
    results/DATASET-PRESET/learning_curves.png     train, validation and test negative ELBO
    results/DATASET-PRESET/summary.json            figures, command, hardware, and wall_time_hours: the
                                                   sum of the epochs' times in metrics.csv
    results/DATASET-PRESET/checkpoint/, config.json  with --keep-checkpoint: the run's last checkpoint,
                                                   to go on training elsewhere
    results/DATASET-PRESET/recipe_changes.json     the run's changes of recipe (RUN/recipe_changes.json:
                                                   at which epoch, what, why), also in summary.json
    results/DATASET-PRESET/*.png, *.gif            samples, reconstructions and drawings of the
                                                   published weights (keras_draw.visualize)
"""

import dataclasses
import json
import os
import platform
import shutil
import sys

from keras_draw import console

if __name__ == "__main__":  # a command: TensorFlow starts without its C++ start-up lines
    console.start_tensorflow()

import numpy as np
import tensorflow as tf

from keras_draw import datasets, evaluate, presets, pretrained, visualize
from keras_draw.draw import Draw
from keras_draw.files import WriteError, write_json
from keras_draw.pretrained import REFERENCE_IMAGES, REFERENCE_KEY
from keras_draw.run_files import RunFiles
from keras_draw.training import TrainOptions

PROGRAM = "publish"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
REFERENCE_SEED = 0


def publish(run_dir, manual_dir=None, data_dir=None, importance_samples=1000, importance_images=500,
            paper_figure=None, root=ROOT, keep_checkpoint=False, max_images=None, verbose=0):
    """Publishes the run in `run_dir` (see the module docstring) under `root`; returns the summary.

    The validation and test figures cover the whole splits, or their first `max_images`. `verbose`:
    a progress bar (1) or a line (2) for each of its evaluations, as `keras_draw.evaluate.evaluate`."""
    run = RunFiles(run_dir)
    config, checkpoint = run.read_config(), run.latest_checkpoint()
    if config is None or not checkpoint.exists():
        raise ValueError(f"{run_dir!r} is not the folder of a training run: no config.json, or no checkpoint/state.json")
    state = checkpoint.read_state()
    options = TrainOptions.from_saved(config["options"])
    recipe_changes = run.read_recipe_changes()
    preset, dataset = options.preset, options.dataset
    _, data_dir, manual_dir = run.data_options(dataset, data_dir, manual_dir)
    differing = {k: v for k, v in presets.get(preset).items() if config["model"].get(k) != v}
    if differing:
        raise ValueError(f"The run's model is not the {preset!r} preset ({differing}); only presets are published.")
    model = Draw.from_config(config["model"])
    model.load_weights(run.best_weights)

    _, _, test_ds = datasets.load(dataset, 100, data_dir=data_dir, manual_dir=manual_dir)
    images = np.concatenate([x.numpy() for x in test_ds.take(REFERENCE_IMAGES // 100 + 1)])[:REFERENCE_IMAGES]
    reference = evaluate.evaluate(model, images, importance_samples=0, seed=REFERENCE_SEED,
                                  verbose=verbose)["negative_elbo"]

    def split_figures(split, **kwargs):
        return evaluate.evaluate(model, dataset, split, data_dir=data_dir, manual_dir=manual_dir, verbose=verbose,
                                 **kwargs)

    test = split_figures("test", importance_samples=0, max_images=max_images)
    validation = split_figures("validation", importance_samples=0, max_images=max_images)
    bound = split_figures("test", importance_samples=importance_samples, max_images=importance_images)

    weights_dir = os.path.join(root, "keras_draw", "weights")
    results_dir = os.path.join(root, "results", f"{dataset}-{preset}")
    published = RunFiles(results_dir)  # what is kept of the run: copied back into a run folder, it goes on
    tests_dir = os.path.join(root, "tests", "data")
    for folder in (weights_dir, results_dir, tests_dir):
        os.makedirs(folder, exist_ok=True)
    weights_file = f"{preset}-{dataset}.weights.h5"
    model.save_weights(os.path.join(weights_dir, weights_file))  # the model's alone, not the optimizer's
    np.savez_compressed(os.path.join(tests_dir, f"{dataset}-test-first{REFERENCE_IMAGES}.npz"),
                        bits=np.packbits(images.astype(bool)), shape=images.shape, seed=REFERENCE_SEED)
    history = state["history"]
    shutil.copyfile(run.metrics, published.metrics)
    plot_learning_curves(history, os.path.join(results_dir, "learning_curves.png"),
                         title=f"DRAW, {preset} preset, {dataset}", paper_figure=paper_figure)
    if keep_checkpoint:  # so that training can go on elsewhere: copy it back into a run's folder
        shutil.rmtree(published.checkpoint, ignore_errors=True)
        shutil.copytree(run.checkpoint, published.checkpoint)
        shutil.copyfile(run.config, published.config)
    if recipe_changes:  # kept beside the history, and copied back with the checkpoint to go on
        write_json(published.recipe_changes, recipe_changes)
    visualize.write_pictures(model, results_dir, images=images[:32], seed=REFERENCE_SEED)
    best = state["best"]
    seconds = [row["seconds"] for row in history if "seconds" in row]
    summary = {
        "preset": preset,
        "dataset": dataset,
        "command": command_line(options),
        "epochs_trained": len(history),
        "selected_epoch": best["epoch"] + 1,
        "selected_by": "lowest validation negative ELBO (val_loss); the test split never selects",
        "validation_negative_elbo": validation["negative_elbo"],
        "test_negative_elbo": test["negative_elbo"],
        "test_negative_elbo_standard_error": test["negative_elbo_standard_error"],
        "test_images": test["num_images"],
        "importance_weighted": {k: bound[k] for k in ("negative_log_likelihood", "negative_log_likelihood_standard_error",
                                                      "negative_elbo", "bound_gap", "num_images", "importance_samples")},
        REFERENCE_KEY: reference,
        "paper_negative_elbo": paper_figure,
        "wall_time_hours": sum(seconds) / 3600,
        "recipe_changes": recipe_changes,
        "hardware": hardware(),
    }
    write_json(os.path.join(results_dir, "summary.json"), summary)
    index_path = os.path.join(weights_dir, "index.json")
    index = pretrained.index(index_path)
    index.setdefault(preset, {})[dataset] = {
        "file": weights_file,
        "sha256": pretrained.sha256(os.path.join(weights_dir, weights_file)),
        "epoch": best["epoch"] + 1,
        "validation_negative_elbo": validation["negative_elbo"],
        "test_negative_elbo": test["negative_elbo"],
        REFERENCE_KEY: reference,
        "results": os.path.relpath(results_dir, root),
    }
    write_json(index_path, index)
    return summary


def command_line(options):
    """`python train.py` with the flags of the options that differ from the defaults (the
    dataset's preset; the preset's, for the options that a preset's recipe sets)."""
    defaults = {**dataclasses.asdict(type(options)(preset=options.preset)), "dataset": type(options)().dataset,
                "preset": type(options)(dataset=options.dataset).preset}
    flags = []
    for name, value in dataclasses.asdict(options).items():
        if value == defaults[name] or name in ("output_dir", "data_dir", "manual_dir", "model_base_path"):
            continue
        flag = "--" + name.replace("_", "-")
        flags += [flag] if value is True else ["--no-" + flag[2:]] if value is False else [flag, str(value)]
    return " ".join(["python train.py", *flags, "--manual-dir DIR" if options.manual_dir else ""]).strip()


def hardware():
    gpus = [tf.config.experimental.get_device_details(d).get("device_name", d.name)
            for d in tf.config.list_physical_devices("GPU")]
    return {"machine": platform.machine(), "processor": cpu_model() or platform.processor() or None,
            "cpu_cores": os.cpu_count(), "gpus": gpus, "tensorflow": tf.__version__}


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (Linux), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def plot_learning_curves(history, path, title="", paper_figure=None):
    """Train, validation and (when logged) test negative ELBO per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] + 1 for row in history]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for key, label in (("loss", "train"), ("val_loss", "validation"), ("test_loss", "test")):
        points = [(e, row[key]) for e, row in zip(epochs, history) if key in row]
        if points:
            axes.plot(*zip(*points), marker=".", label=label)
    if paper_figure is not None:
        axes.axhline(paper_figure, color="grey", linestyle="--", label=f"paper ({paper_figure})")
    axes.set(xlabel="epoch", ylabel="negative ELBO (nats per image)", title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = console.ArgumentParser(prog="python scripts/publish.py", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a training run's output directory")
    parser.add_argument("--manual-dir", default=None, help="default: the run's (config.json), where it exists")
    parser.add_argument("--data-dir", default=None, help="default: the run's (config.json), where it exists")
    parser.add_argument("--importance-samples", type=int, default=1000, help="K (default: %(default)s)")
    parser.add_argument("--importance-images", type=int, default=500,
                        help="test images of the K-sample bound (default: %(default)s)")
    parser.add_argument("--keep-checkpoint", action="store_true",
                        help="also copy the run's last checkpoint and config.json into results/")
    parser.add_argument("--paper-figure", type=float, default=None, help="the paper's negative ELBO, drawn on the plot")
    parser.add_argument("--verbose", default="auto", choices=console.VERBOSE_CHOICES,
                        help="each evaluation's progress: 1 a bar, 2 one line, 0 none (default: auto, a bar on a "
                             "terminal, else 2)")
    args = parser.parse_args(argv)
    try:
        package_root = os.path.dirname(os.path.dirname(os.path.realpath(console.__file__)))
        if package_root != os.path.realpath(ROOT):  # the weights go into this repository's package
            raise ValueError(f"keras_draw is imported from {package_root}, not from this repository ({ROOT}): "
                             "install this checkout (pip install -e .) to publish into it.")
        if not os.path.isdir(args.run_dir):
            raise ValueError(f"No such run folder. Received: {args.run_dir!r}")
        evaluate.check_options(importance_samples=args.importance_samples)
        console.check_positive_flags(importance_images=args.importance_images)
        if args.paper_figure is not None and not np.isfinite(args.paper_figure):
            raise ValueError(f"--paper-figure must be a finite number. Received: --paper-figure={args.paper_figure}")
        summary = publish(args.run_dir, args.manual_dir, args.data_dir, args.importance_samples,
                          args.importance_images, args.paper_figure, keep_checkpoint=args.keep_checkpoint,
                          verbose=console.progress_verbosity(args.verbose))
    except WriteError as err:  # a full disk: a failure of the run, not of its input
        return console.fail(PROGRAM, err, status=1)
    except (OSError, KeyError, ValueError, datasets.DatasetUnavailableError) as err:  # the run folder's files
        return console.fail(PROGRAM, err)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
