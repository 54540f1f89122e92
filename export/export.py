"""Export a trained DRAW or DrawClassifier as a SavedModel version that TensorFlow Serving loads.

    python export/export.py --model runs/mnist/model.keras --model-base-path serving/draw [--version N]
    python export/export.py --preset mnist --weights binarized_mnist --model-base-path serving/draw
    python export/export.py --preset cluttered_mnist --weights W.weights.h5 --model-base-path serving/draw

A thin command line over `keras_draw.serving.export`; prints the path of the version folder on its
first line, then how to serve it.
The second form exports a preset with the weights shipped in keras_draw (by the name of the
dataset they were trained on) or a `.weights.h5` file. A missing, damaged or non-keras_draw model,
unknown weights, a --model-base-path that cannot be one, or an existing version exits with
status 2 and a one-line message before anything is written; a write that fails (a full disk)
exits with status 1 and one line, after removing what it had written: a version appears whole or
not at all, also when the export is interrupted (Ctrl-C: status 130; SIGTERM: 143).
"""

import os
import signal
import sys


class Terminated(Exception):
    """SIGTERM, raised where the export is, so that it cleans up as on Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


def parse_args(argv):
    from keras_draw import console
    from keras_draw.presets import CLASSIFIER_PRESETS, PRESETS

    parser = console.ArgumentParser(prog="export.py", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a model saved by train.py (.keras)")
    source.add_argument("--preset", choices=[*PRESETS, *CLASSIFIER_PRESETS],
                        help="instead of --model: a Draw or DrawClassifier preset, with --weights")
    parser.add_argument("--weights", default=None,
                        help="with --preset: shipped weights by dataset name (e.g. binarized_mnist) or a .weights.h5 file")
    parser.add_argument("--model-base-path", required=True,
                        help="the TF Serving model folder that holds the version folders, e.g. serving/draw")
    parser.add_argument("--version", type=int, default=None,
                        help="the version number (default: one more than the highest present)")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="rows per request the signatures take; more are refused (default: 1024)")
    return parser.parse_args(argv)


def export_model(model, model_base_path, version=None, preset=None, weights=None, max_batch=None):
    """Loads the .keras file `model` (or builds `preset` with `weights`) and exports it; returns
    the version folder's path and the name of its first signature (also `serving_default`).

    Raises ValueError (bad path, weights or version) or FileExistsError (existing version) before
    anything is written.
    """
    from keras_draw import console, serving

    console.check_positive_flags(version=version, max_batch=max_batch)
    max_batch = serving.MAX_BATCH if max_batch is None else max_batch
    if preset is not None:
        if weights is None:
            raise ValueError(f"--preset needs --weights: serving untrained weights is of no use. Received: --preset={preset!r}")
        check_model_base_path(model_base_path, version)
        import keras_draw
        from keras_draw.presets import model_class_name

        model_class = getattr(keras_draw, model_class_name(preset))  # Draw or DrawClassifier
        model = model_class.from_preset(preset, weights=weights)
    else:
        if weights is not None:
            raise ValueError("--weights goes with --preset; a .keras model holds its weights.")
        check_model_base_path(model_base_path, version)
        from keras_draw.model_file import load_model

        model = load_model(model, compile=False, classes=[cls.__name__ for cls in serving.SERVED])
    return serving.export(model, model_base_path, version, max_batch), serving.signature_names(model)[0]


def check_model_base_path(model_base_path, version):
    """ValueError (FileExistsError for an existing version) before anything is loaded or written."""
    from keras_draw.files import check_output_dir

    check_output_dir(model_base_path, "--model-base-path")
    if version is not None and os.path.exists(os.path.join(model_base_path, str(version))):
        raise FileExistsError(f"Version {version} already exists in {model_base_path}; versions are never overwritten.")


# The client's command line for an export's `serving_default`, by the name of that signature.
CLIENT_CALLS = {"generate": "generate --num-images 16 --output samples.png", "classify": "classify --images digits.npy"}


def main(argv=None):
    from keras_draw import console

    args = parse_args(argv)
    previous_handler = signal.signal(signal.SIGTERM, _terminate)
    try:
        console.start_tensorflow()
        from keras_draw.serving import ExportWriteError

        path, first_signature = export_model(args.model, args.model_base_path, args.version, preset=args.preset,
                                             weights=args.weights, max_batch=args.max_batch)
    except ExportWriteError as err:  # a full disk: a failure of the run, not of its input
        return console.fail("export.py", err, status=1)
    except (ValueError, OSError) as err:
        return console.fail("export.py", err)
    except (KeyboardInterrupt, Terminated) as err:
        stopped = "interrupted" if isinstance(err, KeyboardInterrupt) else "terminated (SIGTERM)"
        print(f"export.py: {stopped}; no version was written (a version appears whole or not at all).", file=sys.stderr)
        return 128 + (signal.SIGINT if isinstance(err, KeyboardInterrupt) else signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    print(path)
    model_base_path = os.path.dirname(os.path.abspath(path))
    first_call = CLIENT_CALLS[first_signature]
    print(f"Serve it: docker run -p 8500:8500 -p 8501:8501 -v {model_base_path}:/models/draw -e MODEL_NAME=draw "
          f"tensorflow/serving:2.21.0; then: python export/client.py {first_call} (docs/serving.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
