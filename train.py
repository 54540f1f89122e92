"""Train DRAW: `python train.py` (the demo network on the bundled MNIST) or with flags.

A thin command line over `keras_draw.training.train`, which takes the same options. A bad option
exits with status 2 and a one-line message, before anything is written.
"""

import argparse
import json
import os
import signal
import sys

RESUME = "rerun the same command to go on from there"

_write_failed = False  # a write failed: HDF5 may hold a broken file open (see the end)


class Terminated(Exception):
    """SIGTERM, turned into an exception so that the run stops as it does on Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


def parse_args(argv, defaults):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=defaults.dataset,
                        help="mnist (bundled), binarized_mnist, svhn, cifar10 or two_digit_mnist (built from "
                             "the bundled MNIST) (default: %(default)s)")
    parser.add_argument("--preset", default=None,
                        help="mnist, mnist_no_attention, svhn, cifar10, two_digit_mnist, demo or tiny "
                             "(default: two_digit_mnist for that dataset, else demo)")
    recipe = "default: the preset's recipe (keras_draw/presets.py RECIPES), else {}".format
    parser.add_argument("--epochs", type=int, default=None, help=recipe(defaults.DEFAULTS["epochs"]))
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: the whole training split")
    parser.add_argument("--batch-size", type=int, default=None, help=recipe(defaults.DEFAULTS["batch_size"]))
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="Adam's: " + recipe(defaults.DEFAULTS["learning_rate"]))
    parser.add_argument("--num-steps", type=int, default=None, help="T (default: the preset's)")
    parser.add_argument("--read-n", type=int, default=None, help="read grid N (default: the preset's)")
    parser.add_argument("--write-n", type=int, default=None, help="write grid N (default: the preset's)")
    parser.add_argument("--no-attention", action="store_true", help="read and write whole images (eqs. 17-18)")
    parser.add_argument("--latent-dim", type=int, default=None, help="|z| (default: the preset's)")
    parser.add_argument("--units", type=int, default=None, help="LSTM units, encoder and decoder (default: the preset's)")
    parser.add_argument("--lr-patience", type=int, default=None,
                        help="halve (--lr-factor) the learning rate after this many epochs without a lower "
                             "validation loss (default: constant)")
    parser.add_argument("--lr-factor", type=float, default=defaults.lr_factor)
    parser.add_argument("--early-stopping", type=int, default=None,
                        help="stop after this many epochs without a lower validation loss (default: never)")
    parser.add_argument("--weight-average", type=float, default=None, metavar="MOMENTUM",
                        help="validate, select and save an exponential moving average of the weights "
                             "with this momentum, e.g. 0.999 (default: the weights themselves; docs/training.md)")
    parser.add_argument("--cover-windows", action=argparse.BooleanOptionalAction, default=None,
                        help="start a fresh run's attention windows covering the whole image coarsely, instead of "
                             "from a zero bias (default: the preset's recipe: two_digit_mnist's does; docs/paper.md)")
    parser.add_argument("--clip-norm", type=float, default=defaults.clip_norm, help="global gradient norm; 0 turns clipping off")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data directory")
    parser.add_argument("--manual-dir", default=None, help="folder holding the dataset's original download files")
    parser.add_argument("--output-dir", default=None, help="default: runs/DATASET")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="also checkpoint every N training steps (default: every epoch only)")
    parser.add_argument("--resume", action="store_true",
                        help="require a checkpoint to resume from (a rerun resumes by itself)")
    parser.add_argument("--export-dir", default=None,
                        help="after training, export a SavedModel for TensorFlow Serving here (next version)")
    parser.add_argument("--strategy", default="default",
                        help="default (one device), mirrored (all local GPUs), multi_worker (hosts in TF_CONFIG) or tpu")
    parser.add_argument("--precision", default="float32",
                        help="float32, or mixed_bfloat16: the LSTMs in bfloat16, the rest in float32 (for GPUs and TPUs)")
    parser.add_argument("--jit-compile", default="auto",
                        help="XLA: auto (whole step on GPU, step body on CPU), on (whole step) or off (default: %(default)s)")
    parser.add_argument("--unroll", action=argparse.BooleanOptionalAction, default=None,
                        help="unroll the T steps in training and evaluation, or run them in a while loop "
                             "(default: unrolled where XLA compiles the step body alone, i.e. on a CPU; see docs/speed.md)")
    parser.add_argument("--log-test", action="store_true",
                        help="also evaluate the test split after every epoch, for learning curves "
                             "(selection uses the validation split only)")
    parser.add_argument("--verbose", default="auto", choices=["auto", "0", "1", "2"],
                        help="Keras progress: 1 a bar, 2 one line per epoch, 0 silent (default: auto, a bar on a terminal, else 2)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic TensorFlow ops: the same seed gives the same weights")
    return parser.parse_args(argv)


def main(argv=None):
    from keras_draw import console

    console.start_tensorflow()
    from keras_draw.datasets import DatasetUnavailableError
    from keras_draw.files import WriteError
    from keras_draw.run_files import RunFiles
    from keras_draw.training import TrainingDiverged, TrainOptions, kept, summary, train

    args = vars(parse_args(argv, TrainOptions()))
    verbose = args.pop("verbose")
    if verbose == "auto":  # a bar on a terminal; into a file or a pipe, a line per epoch
        verbose = "1" if sys.stdout.isatty() else "2"
    previous_handler = signal.signal(signal.SIGTERM, _terminate)
    try:
        train(verbose=int(verbose), **args)
    except (ValueError, DatasetUnavailableError) as err:
        return console.fail("train.py", err)
    except TrainingDiverged as err:
        return console.fail("train.py", err, status=1)
    except WriteError as err:  # a full disk: everything written before is whole
        global _write_failed
        _write_failed = True
        return console.fail("train.py", f"{err}; {kept(TrainOptions(**args))}: free some space and {RESUME}.",
                            status=1)
    except (KeyboardInterrupt, Terminated) as err:
        stopped = "interrupted" if isinstance(err, KeyboardInterrupt) else "terminated (SIGTERM)"
        print(f"train.py: {stopped}; {kept(TrainOptions(**args))}: {RESUME}.", file=sys.stderr)
        return 128 + (signal.SIGINT if isinstance(err, KeyboardInterrupt) else signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    options = TrainOptions(**args)
    test_metrics = RunFiles(options.resolved_output_dir()).test_metrics
    if os.path.isfile(test_metrics):  # not on the other workers of a multi-worker run
        with open(test_metrics) as f:
            print("\n".join(summary(options, json.load(f)["loss"])))
    return 0


if __name__ == "__main__":
    from keras_draw import console, malloc

    try:  # TCMalloc where the machine has it: the same training, faster (keras_draw/malloc.py)
        malloc.rerun_preloaded()
    except ValueError as err:
        sys.exit(console.fail("train.py", err))
    status = main()
    if _write_failed:  # HDF5 crashes at interpreter exit on a file whose write failed: skip the exit hooks
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
