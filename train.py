"""Train DRAW: `python train.py` (the demo network on the bundled MNIST) or with flags.

A thin command line over `keras_draw.training.train`, which takes the same options. A bad option
exits with status 2 and a one-line message, before anything is written.
"""

import argparse
import errno
import json
import os
import signal
import sys

RESUME = "rerun the same command to go on from there"

_write_failed = False  # a write failed: HDF5 may hold a broken file open (see the end)


def parse_args(argv, defaults):
    from keras_draw import console, data_sources, presets, strategies
    from keras_draw.train_options import PRECISIONS, SWITCH_CHOICES

    parser = console.ArgumentParser(prog="train.py", description=__doc__.splitlines()[0], epilog=_epilog(),
                                    formatter_class=argparse.RawDescriptionHelpFormatter)

    def recipe(name):  # everyone's default, and the presets' own (`presets.RECIPES`)
        own = [f"{preset}: {values[name]:g}" for preset, values in presets.RECIPES.items() if name in values]
        return f"default: {defaults.DEFAULTS[name]:g}" + (f" ({', '.join(own)})" if own else "")

    parser.add_argument("--dataset", default=defaults.dataset, choices=data_sources.SUPPORTED,
                        help="mnist is bundled, and cluttered_mnist and two_digit_mnist are made from it; the others are "
                             "downloaded once (default: %(default)s)")
    parser.add_argument("--preset", default=None, choices=[*presets.PRESETS, *presets.CLASSIFIER_PRESETS],
                        help="default: the dataset's, in the table below")
    parser.add_argument("--epochs", type=int, default=None, help=recipe("epochs"))
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: the whole training split")
    parser.add_argument("--batch-size", type=int, default=None, help=recipe("batch_size"))
    parser.add_argument("--learning-rate", type=float, default=None, help="Adam's; " + recipe("learning_rate"))
    parser.add_argument("--num-steps", type=int, default=None, help="T (default: the preset's, below)")
    parser.add_argument("--read-n", type=int, default=None, help="read grid N (default: the preset's)")
    parser.add_argument("--write-n", type=int, default=None, help="write grid N (default: the preset's)")
    parser.add_argument("--no-attention", action="store_true", help="read and write whole images (eqs. 17-18)")
    parser.add_argument("--latent-dim", type=int, default=None, help="|z| (default: the preset's)")
    parser.add_argument("--units", type=int, default=None, help="LSTM units, encoder and decoder (default: the preset's)")
    parser.add_argument("--lr-patience", type=int, default=None,
                        help="multiply the learning rate by --lr-factor after this many epochs without a lower "
                             "validation loss (default: never, a constant rate)")
    parser.add_argument("--lr-factor", type=float, default=defaults.lr_factor, help="default: %(default)s")
    parser.add_argument("--early-stopping", type=int, default=None,
                        help="stop after this many epochs without a lower validation loss (default: never)")
    parser.add_argument("--weight-average", type=float, default=None, metavar="MOMENTUM",
                        help="validate, select and save an exponential moving average of the weights "
                             "with this momentum, e.g. 0.999 (default: the weights themselves; docs/training.md)")
    parser.add_argument("--cover-windows", action=argparse.BooleanOptionalAction, default=None,
                        help="start a fresh run's attention windows covering the whole image coarsely, instead of "
                             "from a zero bias (default: the preset's recipe: two_digit_mnist's does; docs/paper.md)")
    parser.add_argument("--clip-norm", type=float, default=defaults.clip_norm,
                        help="global gradient norm; 0 turns clipping off (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="default: %(default)s")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data directory (default: ~/tensorflow_datasets)")
    parser.add_argument("--manual-dir", default=None, help="folder holding the dataset's original download files")
    parser.add_argument("--output-dir", default=None,
                        help="default: runs/DATASET, or runs/DATASET-PRESET for a preset other than the dataset's")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="also checkpoint every N training steps (default: at the end of each epoch only)")
    parser.add_argument("--resume", action="store_true",
                        help="require a checkpoint to resume from (a rerun resumes by itself)")
    parser.add_argument("--model-base-path", default=None,
                        help="after training, export a SavedModel into this TensorFlow Serving model folder, "
                             "as its next version (default: no export)")
    parser.add_argument("--strategy", default=defaults.strategy, choices=strategies.STRATEGIES,
                        help="one device, all local GPUs, the hosts in TF_CONFIG, or a TPU (default: %(default)s)")
    parser.add_argument("--precision", default=defaults.precision, choices=PRECISIONS,
                        help="the mixed ones run the LSTMs in bfloat16 or float16 and the rest in float32, "
                             "for GPUs and TPUs (default: %(default)s)")
    parser.add_argument("--jit-compile", default=defaults.jit_compile, choices=list(SWITCH_CHOICES),
                        help="XLA: auto (whole step on GPU, step body on CPU), on (whole step) or off (default: %(default)s)")
    parser.add_argument("--unroll", action=argparse.BooleanOptionalAction, default=None,
                        help="unroll the T steps in training and evaluation, or run them in a while loop "
                             "(default: unrolled where XLA compiles the step body alone, i.e. on a CPU; see docs/speed.md)")
    parser.add_argument("--log-test", action="store_true",
                        help="also evaluate the test split after every epoch, for learning curves "
                             "(selection uses the validation split only)")
    parser.add_argument("--verbose", default="auto", choices=console.VERBOSE_CHOICES,
                        help="Keras progress: 1 a bar, 2 one line per epoch, 0 silent (default: auto, a bar on a terminal, else 2)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic TensorFlow ops: the same seed gives the same weights")
    return parser.parse_args(argv)


def _epilog():
    """--help's tables: the preset of each dataset, and the sizes of each preset."""
    from keras_draw import data_sources, presets

    lines = ["datasets (images), and the preset each trains without --preset:"]
    for dataset in data_sources.SUPPORTED:
        shape = "x".join(map(str, data_sources.image_shape(dataset)))
        lines.append(f"  {dataset:<17} {shape:<9} {presets.for_dataset(dataset) or '-'}")
    lines += ["", "presets:              T  units   |z|  read N  write N"]
    for name, config in presets.PRESETS.items():
        units = config.get("encoder_units")
        grids = [config.get(k, "-") if config.get("attention") else "-" for k in ("read_n", "write_n")]
        lines.append(f"  {name:<18} {config.get('num_steps', '-'):>3}  {units if units else '-':>5}  "
                     f"{config.get('latent_dim', '-'):>4}  {grids[0]:>6}  {grids[1]:>7}")
    lines += ["", "classifier presets:   T  units  classes  read N"]
    for name, config in presets.CLASSIFIER_PRESETS.items():
        lines.append(f"  {name:<18} {config['num_steps']:>3}  {config['units']:>5}  "
                     f"{config['num_classes']:>7}  {config['read_n']:>6}")
    return "\n".join(lines)


def main(argv=None):
    from keras_draw import console

    console.start_tensorflow()
    from keras_draw.datasets import DatasetUnavailableError
    from keras_draw.files import WriteError
    from keras_draw.run_files import RunFiles
    from keras_draw.training import TrainingDiverged, TrainOptions, kept, summary, train

    args = vars(parse_args(argv, TrainOptions()))
    verbose = console.progress_verbosity(args.pop("verbose"))  # into a file or a pipe, a line per epoch
    previous_handler = signal.signal(signal.SIGTERM, console.raise_terminated)
    try:
        train(verbose=verbose, **args)
    except (ValueError, DatasetUnavailableError) as err:
        return console.fail("train.py", err)
    except TrainingDiverged as err:
        return console.fail("train.py", err, status=1)
    except WriteError as err:  # a full disk, a file in the way: everything written before is whole
        global _write_failed
        _write_failed = True
        free_space = "free some space and " if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return console.fail("train.py", f"{err}; {kept(TrainOptions(**args))}: {free_space}{RESUME}.", status=1)
    except console.STOPS as stop:
        return console.stopped("train.py", stop, f"{kept(TrainOptions(**args))}: {RESUME}")
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    options = TrainOptions(**args)
    test_metrics = RunFiles(options.resolved_output_dir()).test_metrics
    if os.path.isfile(test_metrics):  # not on the other workers of a multi-worker run
        with open(test_metrics) as f:
            print("\n".join(summary(options, json.load(f))))
    return 0


if __name__ == "__main__":
    from keras_draw import console, malloc

    console.catch_stops("train.py")  # a Ctrl-C while TensorFlow starts prints one line too
    try:  # TCMalloc where the machine has it: the same training, faster (keras_draw/malloc.py)
        malloc.rerun_preloaded()
    except ValueError as err:
        sys.exit(console.fail("train.py", err))
    status = main()
    if _write_failed:  # HDF5 crashes at interpreter exit on a file whose write failed: skip the exit hooks
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
