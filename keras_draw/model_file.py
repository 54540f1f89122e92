"""Loading a model that train.py saved (RUN/model.keras), with one-line errors for what is not one.

Keras calls random bytes or a truncated file "File not found" and would build whatever other
model a .keras file holds, so the archive is checked first: a zip, with a config.json that names
a keras_draw Draw.
"""

import json
import os
import zipfile

from keras_draw.files import check_readable, file_exists


def check_model_file(path):
    """ValueError (one line, quoting `path`) unless it is a .keras archive of a keras_draw Draw."""
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
    if class_name != "Draw" or not module.startswith("keras_draw"):
        raise ValueError(f"{path!r} holds a Keras {class_name} (module {module}), not a keras_draw Draw")


def load_model(model, compile=True):
    """`model` itself if it is one, else the Draw saved at that path (ValueError when it is none).

    `compile=False` skips the optimizer (serving, evaluation need none).
    """
    if not isinstance(model, (str, os.PathLike)):
        return model
    check_model_file(model)
    import keras

    import keras_draw.draw  # noqa: F401  registers Draw and its layers with Keras, which loading needs

    try:
        return keras.saving.load_model(model, compile=compile)
    except Exception as err:  # damaged weights inside a sound archive: Keras and h5py raise many kinds
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"Cannot load {os.fspath(model)!r}: {first_line}") from err
