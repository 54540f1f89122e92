"""Loading a model that train.py saved (RUN/model.keras), or a preset with weights, with one-line
errors for what is not one.

Keras calls random bytes or a truncated file "File not found" and would build whatever other
model a .keras file holds, so the archive is checked first: a zip, with a config.json that names
a keras_draw Draw.
"""

import argparse
import json
import os
import zipfile

from keras_draw.files import check_readable, file_exists

# Why the generator's commands (evaluate, visualize) take no DrawClassifier, said where they refuse one.
CLASSIFIER_REFUSAL = ("and a classifier has no ELBO to evaluate and draws nothing: train.py writes its test error "
                      "(test_metrics.json) and glimpses (glimpses.png, glimpses.gif) into its run folder")


def check_model_file(path, classes=("Draw",)):
    """ValueError (one line, quoting `path`) unless it is a .keras archive of a keras_draw model
    whose class is one of `classes`."""
    path = os.fspath(path)
    if not file_exists(path):  # UnreadableError where a folder on the way may not be searched
        raise ValueError(f"Model file not found. Received: model={path!r}")
    if os.path.isdir(path):
        raise ValueError(f"The model is a folder, not a .keras file. Received: model={path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"The model is not a regular file (a device, a pipe or a socket). Received: model={path!r}")
    if not path.endswith(".keras"):
        raise ValueError(f"The model must be a .keras file saved by train.py. Received: model={path!r}")
    check_readable(path)  # before zipfile, which calls a file it cannot open "not a zip file"
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not a .keras file: not a zip archive (random bytes, or a truncated or empty file)")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except Exception as err:  # no config.json, a damaged entry, not JSON: zipfile and json raise many kinds
        raise ValueError(f"{path!r} is not a Keras model: no readable config.json ({type(err).__name__}: {err})") from None
    config = config if isinstance(config, dict) else {}
    module, class_name = str(config.get("module")), str(config.get("class_name"))
    if class_name == "DrawClassifier" and module.startswith("keras_draw") and class_name not in classes:
        raise ValueError(f"{path!r} holds a DrawClassifier, {CLASSIFIER_REFUSAL}.")
    if class_name not in classes or not module.startswith("keras_draw"):
        raise ValueError(f"{path!r} holds a Keras {class_name} (module {module}), not a keras_draw {' or '.join(classes)}")


def load_model(model, compile=True, classes=("Draw",)):
    """`model` itself if it is one, else the model saved at that path, a keras_draw model of one of
    `classes` ("Draw", "DrawClassifier"; ValueError when it is none).

    `compile=False` skips the optimizer (serving, evaluation need none).
    """
    if not isinstance(model, (str, os.PathLike)):
        return model
    check_model_file(model, classes)
    import keras

    import keras_draw.draw  # noqa: F401  registers Draw and its layers with Keras, which loading needs
    import keras_draw.draw_classifier  # noqa: F401  and DrawClassifier

    try:
        return keras.saving.load_model(model, compile=compile)
    except Exception as err:  # damaged weights inside a sound archive: Keras and h5py raise many kinds
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"Cannot load {os.fspath(model)!r}: {first_line}") from err


def check_model_flags(model=None, preset=None, weights=None):
    """ValueError (one line) unless the flags name one model: `--model FILE`, or `--preset NAME
    --weights W` (W: a dataset whose weights ship with keras_draw, or a .weights.h5 file)."""
    if model is not None and (preset is not None or weights is not None):
        raise ValueError("Give --model, or --preset with --weights, not both. "
                         f"Received: --model={model!r}, --preset={preset!r}, --weights={weights!r}")
    if model is None and (preset is None or weights is None):
        raise ValueError("Give a model: --model RUN/model.keras, or --preset NAME with --weights "
                         f"(shipped: e.g. --preset mnist --weights binarized_mnist). Received: --preset={preset!r}, "
                         f"--weights={weights!r}")
    if model is not None:
        check_model_file(model)
        return
    from keras_draw import pretrained, presets

    if presets.model_class_name(preset) != "Draw":  # an unknown name fails here too
        raise ValueError(f"{preset!r} is a DrawClassifier preset, {CLASSIFIER_REFUSAL}. Received: --preset={preset!r}")
    pretrained.weights_path(preset, weights)  # an unknown name or a missing file fails here


def model_from_flags(model=None, preset=None, weights=None, compile=True):
    """The Draw the flags name (see `check_model_flags`), loaded."""
    check_model_flags(model, preset, weights)
    if model is not None:
        return load_model(model, compile=compile)
    from keras_draw.draw import Draw

    try:
        return Draw.from_preset(preset, weights=weights)
    except Exception as err:  # weights of another network, a damaged file: Keras and h5py raise many kinds
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"Cannot load --weights {weights!r} into the {preset!r} preset: {first_line}") from err


def shipped_dataset(preset, weights):
    """The dataset that shipped weights `weights` of `preset` were trained on; None for a file."""
    from keras_draw import pretrained

    return weights if weights in pretrained.index().get(preset, {}) else None


def preset_model_name(preset, weights):
    """PRESET-WEIGHTS, the weights' dataset or file stem (e.g. mnist-binarized_mnist): the name
    of a `--preset --weights` model in default output names."""
    stem = os.path.basename(weights)
    for suffix in (".weights.h5", ".h5"):
        stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
    return f"{preset}-{stem}"


def generator_preset(name):
    """--preset's type: the name as given, except a DrawClassifier preset's, refused saying why
    (argparse's "invalid choice" would not)."""
    from keras_draw import presets

    if name in presets.CLASSIFIER_PRESETS:
        raise argparse.ArgumentTypeError(f"{name!r} is a DrawClassifier preset, {CLASSIFIER_REFUSAL}")
    return name


def add_model_flags(parser):
    """--model, or --preset with --weights: the Draw a command takes (`model_from_flags`)."""
    from keras_draw import presets

    parser.add_argument("--model", default=None, help="a model train.py saved, e.g. runs/mnist/model.keras")
    parser.add_argument("--preset", default=None, type=generator_preset, choices=list(presets.PRESETS),
                        help="instead of --model: a preset, with --weights (DRAW's generator; the classifier presets "
                             f"{' and '.join(presets.CLASSIFIER_PRESETS)} have no ELBO and draw nothing)")
    parser.add_argument("--weights", default=None,
                        help="with --preset: a dataset whose weights ship with keras_draw (e.g. binarized_mnist "
                             "for the mnist preset), or a .weights.h5 file")


def flags_of(model=None, preset=None, weights=None):
    """The flags that name this model, for the commands a command suggests next."""
    return f"--model {model}" if model is not None else f"--preset {preset} --weights {weights}"
