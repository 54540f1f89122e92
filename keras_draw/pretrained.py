"""Trained weights shipped with the package, by preset and dataset.

`keras_draw/weights/index.json` lists them: for each preset, for each dataset it was trained on,
the weights file, its SHA-256, and the figures recorded when it was published (see
scripts/publish.py). `Draw.from_preset("mnist", weights="binarized_mnist")` loads one.
"""

import hashlib
import json
import os

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
INDEX = os.path.join(WEIGHTS_DIR, "index.json")
REFERENCE_IMAGES = 500  # the regression test's images, the first of the test split
REFERENCE_KEY = f"first_{REFERENCE_IMAGES}_test_images_negative_elbo"  # their figure, in index.json


def index(path=None):
    """{preset: {dataset: entry}} of the shipped weights (or of the index at `path`); {} if none."""
    path = path or INDEX
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def weights_path(preset, weights):
    """The file to load for `from_preset(preset, weights=weights)`: `weights` is the name of a
    dataset with shipped weights, or a path. A shipped file whose checksum is wrong is refused;
    an unknown name gets a ValueError listing what is shipped."""
    shipped = index().get(preset, {})
    if weights in shipped:
        path = os.path.join(WEIGHTS_DIR, shipped[weights]["file"])
        if not os.path.isfile(path) or sha256(path) != shipped[weights]["sha256"]:
            raise ValueError(f"The shipped weights {path} are missing or corrupt (SHA-256 mismatch); reinstall keras_draw.")
        return path
    if os.path.isfile(weights):
        return weights
    if weights.endswith(".h5") or os.sep in weights:
        raise ValueError(f"Weights file not found. Received: weights={weights!r}")
    available = ", ".join(sorted(shipped)) or "none"
    raise ValueError(f"No shipped weights for preset {preset!r} trained on {weights!r} (shipped for "
                     f"{preset!r}: {available}); pass the path of a .weights.h5 file instead. "
                     f"Received: weights={weights!r}")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
