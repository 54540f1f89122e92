"""`cluttered_mnist`: 100×100 cluttered translated MNIST, the benchmark of the paper's §4.1 (Table 1).

The data set of Mnih et al. 2014 (RAM), which DRAW's classifier was measured on, drawn as their
generator draws it (deepmind/mnist-cluttered, `megapatch_w=100, num_dist=8`): each image is black,
with 8 pieces of clutter, 8×8 crops at uniformly random places of other random digits of the same
split, at uniformly random positions, then one MNIST digit at a uniformly random position, wholly
inside the image (one of the 73×73 places where it fits). Intensities are added and clipped at
white, so values stay in [0, 255] and no stroke of the digit is dimmed. The label is the digit's.

Where we had to choose: the clutter comes from digits other than the image's own (the generator
draws from every digit, its own included). The data set is fixed:
example k of a split is a pure function of (SEED, split, k), so every build gives the same images.
Its splits follow `mnist`'s sizes and take both digit and clutter from their own part of MNIST's
files only (`mnist_digits.SPLITS`): train 50,000, validation 10,000, test 10,000. Each example
keeps its clean digit: training composes the train split's digits anew every epoch
(`training_images`, used by `keras_draw.datasets`), as the generator does, while validation and
test stay fixed.
"""

import numpy as np
import tensorflow_datasets as tfds

from keras_draw.builders import mnist_digits

IMAGE_SIZE = 100
CLUTTER_PIECES = 8
PIECE_SIZE = 8
SEED = 20150216  # the build's seed: example k of split s is drawn from the stream (SEED, s, k)
SPLIT_NUMBERS = {"train": 0, "validation": 1, "test": 2}


def compose(digits, indices, rng):
    """Cluttered images of `digits[indices]`, their clutter from the other `digits` (n, 28, 28),
    all drawn from `rng`. Works on uint8 digits in [0, 255] and on float digits in [0, 1].

    Returns (images (k, 100, 100) of the digits' dtype, the positions (k, 2) (row, column) of each
    digit's top-left corner, the indices (k, 8) in `digits` of each image's clutter sources).
    """
    indices = np.asarray(indices, np.int64)
    count, size = len(indices), digits.shape[1]
    sources = rng.integers(0, len(digits) - 1, size=(count, CLUTTER_PIECES))
    sources += sources >= indices[:, None]  # other digits: uniform over the n − 1 that are not the image's own
    crops = rng.integers(0, size - PIECE_SIZE + 1, size=(count, CLUTTER_PIECES, 2))
    places = rng.integers(0, IMAGE_SIZE - PIECE_SIZE + 1, size=(count, CLUTTER_PIECES, 2))
    positions = rng.integers(0, IMAGE_SIZE - size + 1, size=(count, 2))
    sums = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE), np.float32)  # room for the sums before the clip
    # Python lists: indexing numpy scalars in these small loops would take most of the time.
    for image, index, position, image_sources, image_crops, image_places in zip(
            sums, indices.tolist(), positions.tolist(), sources.tolist(), crops.tolist(), places.tolist()):
        for source, (top, left), place in zip(image_sources, image_crops, image_places):
            _add(image, digits[source, top : top + PIECE_SIZE, left : left + PIECE_SIZE], place)
        _add(image, digits[index], position)
    white = np.iinfo(digits.dtype).max if np.issubdtype(digits.dtype, np.integer) else 1.0
    images = np.minimum(sums, white).astype(digits.dtype)  # one clip of the sums: the values are never negative
    return images, positions, sources


def _add(image, piece, place):
    """Adds `piece` to `image` with its top-left corner at `place` (row, column)."""
    row, column = place
    image[row : row + piece.shape[0], column : column + piece.shape[1]] += piece


def example(digits, index, split, seed=SEED):
    """Example `index` of the fixed `split` of the split's `digits`: (image (100, 100), position (2,),
    clutter sources (8,)), the same whenever and wherever it is drawn."""
    rng = np.random.default_rng([seed, SPLIT_NUMBERS[split], index])
    images, positions, sources = compose(digits, [index], rng)
    return images[0], positions[0], sources[0]


def training_images(digits, indices, stream, seed=SEED):
    """Fresh images of `digits[indices]` for one training batch, drawn from the stream
    (SEED, *stream): a run composes every training digit anew in every epoch, as the generator of
    Mnih et al. 2014 (deepmind/mnist-cluttered) draws each training image. (k, 100, 100)."""
    rng = np.random.default_rng([seed, len(SPLIT_NUMBERS), *stream])
    return compose(digits, indices, rng)[0]


class ClutteredMnist(tfds.core.GeneratorBasedBuilder):
    """100×100 cluttered translated MNIST (Mnih et al. 2014), made from MNIST's original files."""

    VERSION = tfds.core.Version("3.0.0")
    RELEASE_NOTES = {
        "1.0.0": "One digit and 8 clutter pieces of 8×8, composited by maximum.",
        "2.0.0": "Each example keeps its digit (for fresh clutter in training); layouts drawn in a new order.",
        "3.0.0": "As RAM's generator: crops anywhere in their 28×28 digit, intensities added and clipped.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = mnist_digits.MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self):
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
                "label": tfds.features.ClassLabel(num_classes=10),
                "digit": tfds.features.Image(shape=(mnist_digits.DIGIT_SIZE, mnist_digits.DIGIT_SIZE, 1)),
                "digit_index": np.int64,  # in its MNIST file
                "position": tfds.features.Tensor(shape=(2,), dtype=np.int64),  # (row, column) of its top-left
                "clutter_index": tfds.features.Tensor(shape=(CLUTTER_PIECES,), dtype=np.int64),  # in its MNIST file
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(dl_manager.manual_dir, split) for split in SPLIT_NUMBERS}

    def _generate_examples(self, directory, split):
        digits, labels, file_indices = mnist_digits.load_split(split, directory)
        for index in range(len(digits)):
            image, position, sources = example(digits, index, split)
            yield index, {
                "image": image[:, :, None],
                "label": int(labels[index]),
                "digit": digits[index][:, :, None],
                "digit_index": int(file_indices[index]),
                "position": position,
                "clutter_index": file_indices[sources],
            }
