"""Named configurations of DRAW: the paper's Table 3, and small ones for demos and tests.

Each preset is a dict of `Draw` arguments, or, in `CLASSIFIER_PRESETS`, of `DrawClassifier`
arguments. The image shape in a preset is its dataset's; the
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


# Table 3, first row: cluttered MNIST classification, the read attention alone (`DrawClassifier`).
CLASSIFIER_PRESETS = {
    "cluttered_mnist": {"image_height": 100, "image_width": 100, "channels": 1, "num_steps": 8, "units": 256,
                        "read_n": 12, "num_classes": 10},
    # For unit tests: seconds to build and train.
    "tiny_classifier": {"image_height": 100, "image_width": 100, "channels": 1, "num_steps": 2, "units": 8,
                        "read_n": 3, "num_classes": 10},
}


def model_class_name(name):
    """The class that preset `name` configures: "Draw" or "DrawClassifier"."""
    get(name)  # an unknown name fails first
    return "DrawClassifier" if name in CLASSIFIER_PRESETS else "Draw"


# train.py's defaults where a preset needs its own: the demo trains in minutes with a larger batch
# and step size (docs/results.md has the comparison); two_digit_mnist starts from windows covering
# the image, without which it ignored z (docs/paper.md). Every other preset takes `TrainOptions`'s.
RECIPES = {
    "demo": {"epochs": 4, "batch_size": 200, "learning_rate": 3e-3},
    "two_digit_mnist": {"cover_windows": True},
}


# The preset `python train.py --dataset D` trains when --preset is not given: the paper's network
# for D (Table 3), except on the bundled MNIST, the 2-minute demo. A new dataset adds its row.
DATASET_PRESETS = {
    "mnist": "demo",
    "binarized_mnist": "mnist",
    "svhn": "svhn",
    "cifar10": "cifar10",
    "cluttered_mnist": "cluttered_mnist",
    "two_digit_mnist": "two_digit_mnist",
}


def for_dataset(dataset):
    """The preset train.py trains on `dataset` when none is given (None for an unknown dataset,
    which `TrainOptions.check` refuses)."""
    return DATASET_PRESETS.get(dataset)


def recipe(name):
    """train.py's defaults of preset `name` that differ from everyone's (a copy; {} for most)."""
    return dict(RECIPES.get(name, {}))


def get(name):
    """The arguments of preset `name` (a copy); an unknown name lists the known ones."""
    known = {**PRESETS, **CLASSIFIER_PRESETS}
    if name not in known:
        raise ValueError(f"Unknown preset: {name!r}. Supported: {', '.join(known)}. Received: preset={name!r}")
    return dict(known[name])


def build(cls, name, weights=None, **overrides):
    """`cls(**preset, **overrides)`, then `weights` loaded: the name of a dataset whose trained
    weights ship with the package (`keras_draw.pretrained`), or the path of a `.weights.h5` file."""
    if model_class_name(name) != cls.__name__:
        raise ValueError(f"Preset {name!r} configures a {model_class_name(name)}, not a {cls.__name__}: use "
                         f"keras_draw.{model_class_name(name)}.from_preset. Received: preset={name!r}")
    config = {**get(name), **overrides}
    path = None if weights is None else pretrained.weights_path(name, os.fspath(weights))
    model = cls(**config)
    if path is not None:
        model.load_weights(path)
    return model
