"""Export a trained DRAW (.keras) as a SavedModel version that TensorFlow Serving loads.

    python export/export.py --model runs/mnist/model.keras --export-dir serving/draw [--version N]
    python export/export.py --preset mnist --weights binarized_mnist --export-dir serving/draw

A thin command line over `keras_draw.serving.export`; prints the path of the version folder on its
first line, then how to serve it.
The second form exports a preset with the weights shipped in keras_draw (by the name of the
dataset they were trained on) or a `.weights.h5` file. A missing or non-.keras model, unknown
weights, or an existing version, exits with status 2 and a one-line message.
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
    return parser.parse_args(argv)


def export_model(model, export_dir, version=None, preset=None, weights=None):
    """Loads the .keras file `model` (or builds `preset` with `weights`) and exports it; returns
    the version folder's path.

    Raises ValueError (bad path, weights or version) or FileExistsError (existing version) before
    anything is written.
    """
    if preset is not None:
        if weights is None:
            raise ValueError(f"--preset needs --weights: serving untrained weights is of no use. Received: --preset={preset!r}")
        check_export_dir(export_dir, version)
        from keras_draw import Draw, serving

        return serving.export(Draw.from_preset(preset, weights=weights), export_dir, version)
    if weights is not None:
        raise ValueError("--weights goes with --preset; a .keras model holds its weights.")
    if not os.path.isfile(model):
        raise ValueError(f"No such model file. Received: --model={model!r}")
    if not model.endswith(".keras"):
        raise ValueError(f"The model must be a .keras file saved by train.py. Received: --model={model!r}")
    check_export_dir(export_dir, version)

    import keras

    from keras_draw import Draw, serving  # importing keras_draw registers its classes

    try:
        loaded = keras.saving.load_model(model, compile=False)  # serving needs no optimizer
    except Exception as err:  # a damaged or foreign file: Keras raises many kinds
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"Cannot load {model!r}: {first_line}") from err
    if not isinstance(loaded, Draw):
        raise ValueError(f"The model is not a keras_draw Draw. Received: {type(loaded).__name__}")
    return serving.export(loaded, export_dir, version)


def check_export_dir(export_dir, version):
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ValueError(f"The export directory is not a directory. Received: --export-dir={export_dir!r}")
    if version is not None and version < 1:
        raise ValueError(f"The version must be a positive integer. Received: --version={version}")
    if version is not None and os.path.exists(os.path.join(export_dir, str(version))):
        raise FileExistsError(f"Version {version} already exists in {export_dir}; versions are never overwritten.")


def main(argv=None):
    from keras_draw import console

    console.start_tensorflow()
    args = parse_args(argv)
    try:
        path = export_model(args.model, args.export_dir, args.version, preset=args.preset, weights=args.weights)
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
