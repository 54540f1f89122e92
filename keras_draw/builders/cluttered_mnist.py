"""`cluttered_mnist`: 100×100 cluttered translated MNIST, the benchmark of the paper's §4.1 (Table 1).

The data set of Mnih et al. 2014 (RAM), which DRAW's classifier was measured on: each image is
black, with one MNIST digit at a uniformly random position, wholly inside the image, and 8 pieces
of clutter, 8×8 crops of other random digits of the same split, at uniformly random positions.
Where the clutter and the digit overlap, the brighter pixel wins (the maximum), so values stay in
[0, 255] and no stroke of the digit is dimmed. The label is the digit's.

Where we had to choose (neither paper says): a crop lies within the central 20×20 box of its
28×28 digit, where MNIST centres its strokes, so that few pieces are blank; a piece may fall
partly on the digit; the digit's position is uniform over the 73×73 places where it fits.
The data set is fixed: example k of a split is a pure function of (SEED, split, k), so every
build gives the same images. Its splits follow `mnist`'s sizes and take both digit and clutter
from their own part of MNIST's files only (`mnist_digits.SPLITS`): train 50,000, validation
10,000, test 10,000.
"""

import numpy as np
import tensorflow_datasets as tfds

from keras_draw.builders import mnist_digits

IMAGE_SIZE = 100
CLUTTER_PIECES = 8
PIECE_SIZE = 8
CROP_BOX = (4, 24)  # rows (and columns) of a 28×28 digit that crops come from: its central 20×20
SEED = 20150216  # the build's seed: example k of split s is drawn from the stream (SEED, s, k)
SPLIT_NUMBERS = {"train": 0, "validation": 1, "test": 2}


def compose(digits, index, rng):
    """One cluttered image from digit `index` of `digits` (n, 28, 28) uint8, with `rng`.

    Returns (image (100, 100) uint8, position (row, column) of the digit's top-left corner,
    the indices in `digits` of the 8 clutter sources).
    """
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    sources = rng.integers(0, len(digits) - 1, size=CLUTTER_PIECES)
    sources += sources >= index  # other digits: uniform over the n − 1 that are not `index`
    low, high = CROP_BOX
    for source in sources:
        top, left = rng.integers(low, high - PIECE_SIZE + 1, size=2)
        piece = digits[source, top : top + PIECE_SIZE, left : left + PIECE_SIZE]
        row, column = rng.integers(0, IMAGE_SIZE - PIECE_SIZE + 1, size=2)
        place = image[row : row + PIECE_SIZE, column : column + PIECE_SIZE]
        np.maximum(place, piece, out=place)
    size = digits.shape[1]
    row, column = rng.integers(0, IMAGE_SIZE - size + 1, size=2)
    place = image[row : row + size, column : column + size]
    np.maximum(place, digits[index], out=place)
    return image, np.array([row, column], np.int64), sources.astype(np.int64)


def example(digits, index, split, seed=SEED):
    """Example `index` of `split`: the same whenever and wherever it is drawn."""
    rng = np.random.default_rng([seed, SPLIT_NUMBERS[split], index])
    return compose(digits, index, rng)


class ClutteredMnist(tfds.core.GeneratorBasedBuilder):
    """100×100 cluttered translated MNIST (Mnih et al. 2014), made from MNIST's original files."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One digit and 8 clutter pieces of 8×8, composited by maximum."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "MNIST's four .gz files (keras_draw bundles them in keras_draw/data/mnist)."

    def _info(self):
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
                "label": tfds.features.ClassLabel(num_classes=10),
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
                "digit_index": int(file_indices[index]),
                "position": position,
                "clutter_index": file_indices[sources],
            }
