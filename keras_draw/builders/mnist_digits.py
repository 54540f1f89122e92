"""MNIST's digits read from its original IDX files, for the data sets composed from them.

The splits follow `mnist`'s sizes (docs/paper.md): `train` is the first 50,000 digits of MNIST's
training file, `validation` the last 10,000, `test` MNIST's test file; each split's digits come
from its own part of the files only, so no digit is shared between splits. Plain numpy: a
builder composes its images from these arrays.
"""

import gzip
import os
import pathlib

import numpy as np

BUNDLED_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "mnist"
FILES = {  # (images, labels) of each MNIST file
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# split -> (MNIST file, first index, end index)
SPLITS = {"train": ("train", 0, 50_000), "validation": ("train", 50_000, 60_000), "test": ("test", 0, 10_000)}
DIGIT_SIZE = 28
# What a builder of ours needs in its manual_dir.
MANUAL_DOWNLOAD_INSTRUCTIONS = "MNIST's four .gz files (keras_draw bundles them in keras_draw/data/mnist)."


def read_idx(path):
    """The array of an IDX file (gzipped): uint8 with the shape its header gives."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:  # magic: two zero bytes, then 0x08 for uint8
        raise ValueError(f"{os.fspath(path)} is not an IDX file of unsigned bytes")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(dims))
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if values.size != np.prod(shape):
        raise ValueError(f"{os.fspath(path)} holds {values.size} values, its header says {shape}")
    return values.reshape(shape)


def load_split(split, directory=BUNDLED_DIR):
    """(digits, labels, indices) of a split: uint8 (n, 28, 28) digits in [0, 255], their int64
    labels and their int64 indices in their MNIST file."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split: {split!r}. Supported: {', '.join(SPLITS)}.")
    file, start, end = SPLITS[split]
    images_file, labels_file = FILES[file]
    digits = read_idx(pathlib.Path(directory) / images_file)[start:end]
    labels = read_idx(pathlib.Path(directory) / labels_file)[start:end].astype(np.int64)
    return digits, labels, np.arange(start, end, dtype=np.int64)
