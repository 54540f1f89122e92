"""Named configurations of DRAW: the paper's Table 3, and small ones for demos and tests.

Each preset is a dict of `Draw` arguments. The image shape in a preset is its dataset's; the
training entry point always takes the image shape from the dataset it trains on.
"""

import os

from keras_draw import pretrained

MNIST_SHAPE = {"image_height": 28, "image_width": 28, "channels": 1}
COLOUR_32_SHAPE = {"image_height": 32, "image_width": 32, "channels": 3}
TWO_DIGIT_SHAPE = {"image_height": 60, "image_width": 60, "channels": 1}

PRESETS = {
    # Table 3: MNIST generation.
    "mnist": {**MNIST_SHAPE, "num_steps": 64, "encoder_units": 256, "decoder_units": 256,
              "latent_dim": 100, "read_n": 2, "write_n": 5, "attention": True},
    # Table 2: the same network without attention (eqs. 17-18).
    "mnist_no_attention": {**MNIST_SHAPE, "num_steps": 64, "encoder_units": 256,
                           "decoder_units": 256, "latent_dim": 100, "attention": False},
    # §4.2, two MNIST digits on 60×60 (Figure 8): Table 3 gives no sizes of its own, so the MNIST network's.
    "two_digit_mnist": {**TWO_DIGIT_SHAPE, "num_steps": 64, "encoder_units": 256, "decoder_units": 256,
                        "latent_dim": 100, "read_n": 2, "write_n": 5, "attention": True},
    # Table 3: SVHN generation, on tfds svhn_cropped (32×32×3, not the paper's 54×54 crops).
    "svhn": {**COLOUR_32_SHAPE, "num_steps": 32, "encoder_units": 800, "decoder_units": 800,
             "latent_dim": 100, "read_n": 12, "write_n": 12, "attention": True},
    # Table 3: CIFAR-10 generation.
    "cifar10": {**COLOUR_32_SHAPE, "num_steps": 64, "encoder_units": 400, "decoder_units": 400,
                "latent_dim": 200, "read_n": 5, "write_n": 5, "attention": True},
    # Small and fast: `python train.py` draws readable digits with it in 4 minutes on 2 CPU cores.
    "demo": {**MNIST_SHAPE, "num_steps": 8, "encoder_units": 128, "decoder_units": 128,
             "latent_dim": 16, "read_n": 5, "write_n": 8, "attention": True},
    # For unit tests: seconds to build and train.
    "tiny": {**MNIST_SHAPE, "num_steps": 3, "encoder_units": 16, "decoder_units": 16,
             "latent_dim": 4, "read_n": 2, "write_n": 3, "attention": True},
}


# train.py's defaults where a preset needs its own: the demo trains in minutes with a larger batch
# and step size (docs/results.md has the comparison); two_digit_mnist starts from windows covering
# the image, without which it ignored z (docs/paper.md). Every other preset takes `TrainOptions`'s.
RECIPES = {
    "demo": {"epochs": 4, "batch_size": 200, "learning_rate": 3e-3},
    "two_digit_mnist": {"cover_windows": True},
}


# The preset train.py picks for a dataset when none is given; "demo" for the others.
DATASET_PRESETS = {"two_digit_mnist": "two_digit_mnist"}


def for_dataset(dataset):
    """The preset train.py trains on `dataset` when none is given."""
    return DATASET_PRESETS.get(dataset, "demo")


def recipe(name):
    """train.py's defaults of preset `name` that differ from everyone's (a copy; {} for most)."""
    return dict(RECIPES.get(name, {}))


def get(name):
    """The arguments of preset `name` (a copy); an unknown name lists the known ones."""
    if name not in PRESETS:
        known = ", ".join(PRESETS)
        raise ValueError(f"Unknown preset: {name!r}. Supported: {known}. Received: preset={name!r}")
    return dict(PRESETS[name])


def build(cls, name, weights=None, **overrides):
    """`cls(**preset, **overrides)`, then `weights` loaded: the name of a dataset whose trained
    weights ship with the package (`keras_draw.pretrained`), or the path of a `.weights.h5` file."""
    config = {**get(name), **overrides}
    path = None if weights is None else pretrained.weights_path(name, os.fspath(weights))
    model = cls(**config)
    if path is not None:
        model.load_weights(path)
    return model
