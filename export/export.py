"""Export a trained DRAW (.keras) as a SavedModel version that TensorFlow Serving loads.

    python export/export.py --model runs/mnist/model.keras --export-dir serving/draw [--version N]
    python export/export.py --preset mnist --weights binarized_mnist --export-dir serving/draw

A thin command line over `keras_draw.serving.export`; prints the path of the version folder on its
first line, then how to serve it.
The second form exports a preset with the weights shipped in keras_draw (by the name of the
dataset they were trained on) or a `.weights.h5` file. A missing, damaged or non-DRAW model,
unknown weights, an export directory that cannot be one, or an existing version exits with
status 2 and a one-line message before anything is written; a write that fails (a full disk)
exits with status 1 and one line, after removing what it had written: a version appears whole or
not at all.
"""

import argparse
import os
import sys


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a model saved by train.py (.keras)")
    source.add_argument("--preset", help="a keras_draw preset, with --weights")
    parser.add_argument("--weights", default=None,
                        help="with --preset: shipped weights by dataset name (e.g. binarized_mnist) or a .weights.h5 file")
    parser.add_argument("--export-dir", required=True, help="the TF Serving model folder, e.g. serving/draw")
    parser.add_argument("--version", type=int, default=None,
                        help="the version number (default: one more than the highest present)")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="rows per request the signatures take; more are refused (default: 1024)")
    return parser.parse_args(argv)


def export_model(model, export_dir, version=None, preset=None, weights=None, max_batch=None):
    """Loads the .keras file `model` (or builds `preset` with `weights`) and exports it; returns
    the version folder's path.

    Raises ValueError (bad path, weights or version) or FileExistsError (existing version) before
    anything is written.
    """
    from keras_draw import console, serving

    console.check_positive_flags(version=version, max_batch=max_batch)
    max_batch = serving.MAX_BATCH if max_batch is None else max_batch
    if preset is not None:
        if weights is None:
            raise ValueError(f"--preset needs --weights: serving untrained weights is of no use. Received: --preset={preset!r}")
        check_export_dir(export_dir, version)
        from keras_draw import Draw

        return serving.export(Draw.from_preset(preset, weights=weights), export_dir, version, max_batch)
    if weights is not None:
        raise ValueError("--weights goes with --preset; a .keras model holds its weights.")
    check_export_dir(export_dir, version)

    from keras_draw.model_file import load_model

    return serving.export(load_model(model, compile=False), export_dir, version, max_batch)


def check_export_dir(export_dir, version):
    """ValueError (FileExistsError for an existing version) before anything is loaded or written."""
    from keras_draw.files import check_output_dir

    check_output_dir(export_dir, "--export-dir")
    if version is not None and os.path.exists(os.path.join(export_dir, str(version))):
        raise FileExistsError(f"Version {version} already exists in {export_dir}; versions are never overwritten.")


def main(argv=None):
    from keras_draw import console

    console.start_tensorflow()
    from keras_draw.serving import ExportWriteError

    args = parse_args(argv)
    try:
        path = export_model(args.model, args.export_dir, args.version, preset=args.preset, weights=args.weights,
                            max_batch=args.max_batch)
    except ExportWriteError as err:  # a full disk: a failure of the run, not of its input
        return console.fail("export.py", err, status=1)
    except (ValueError, OSError) as err:
        return console.fail("export.py", err)
    print(path)
    model_dir = os.path.dirname(os.path.abspath(path))
    print(f"Serve it: docker run -p 8501:8501 -v {model_dir}:/models/draw -e MODEL_NAME=draw tensorflow/serving; "
          "then: python export/client.py generate --count 16 --out samples.png (export/README.md).")
    return 0


if __name__ == "__main__":
    # From a checkout without `pip install -e .`: keras_draw is in the repository root.
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
