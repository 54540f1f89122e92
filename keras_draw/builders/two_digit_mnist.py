"""`two_digit_mnist`: two MNIST digits on a 60×60 canvas, the data set of the paper's §4.2 (Figure 8).

Each image is black, with two 28×28 MNIST digits drawn at random from the same split, each at a
uniformly random position wholly inside the image; where they overlap their intensities are added
and clipped at 255 (1 once scaled), as the paper says.

Where we had to choose (the paper does not say): the two digits are two different digits of the
split, drawn uniformly without replacement (their labels may be equal); their positions are
independent and uniform over the 33×33 places where a digit fits, so they may overlap, even
wholly. The data set is fixed: example k of a split is a pure function of (SEED, split, k), so
every build gives the same images. Each split composes its images from its own part of MNIST's
files only (`mnist_digits.SPLITS`): `train` from the first 50,000 training digits, `validation`
from the last 10,000, `test` from MNIST's test digits. The sizes, `SPLIT_SIZES`, are discussed in
docs/paper.md: pairs are combinatorial, so a split may hold more images than it has digits.
"""

import numpy as np
import tensorflow_datasets as tfds

from keras_draw.builders import mnist_digits

IMAGE_SIZE = 60
DIGITS = 2
SEED = 20150402  # the build's seed: example k of split s is drawn from the stream (SEED, s, k)
SPLIT_NUMBERS = {"train": 0, "validation": 1, "test": 2}
SPLIT_SIZES = {"train": 50_000, "validation": 10_000, "test": 10_000}


def compose(digits, indices, positions):
    """The image of `digits[indices]` (n, 28, 28) uint8 with top-left corners `positions`
    (n, 2) (row, column): the digits' intensities added, clipped at 255, on black; (60, 60) uint8."""
    total = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.int32)  # room for the sum before the clip
    size = digits.shape[1]
    for index, (row, column) in zip(indices, positions):
        total[row : row + size, column : column + size] += digits[index]
    return np.minimum(total, 255).astype(np.uint8)


def draw(num_digits, rng, size=mnist_digits.DIGIT_SIZE):
    """Two different digit indices in [0, num_digits) and their positions (2, 2), from `rng`."""
    indices = rng.choice(num_digits, size=DIGITS, replace=False)
    positions = rng.integers(0, IMAGE_SIZE - size + 1, size=(DIGITS, 2))
    return indices.astype(np.int64), positions.astype(np.int64)


def example(digits, index, split, seed=SEED):
    """Example `index` of `split` from the split's `digits`: (image (60, 60) uint8, indices (2,)
    in `digits`, positions (2, 2)); the same whenever and wherever it is drawn."""
    rng = np.random.default_rng([seed, SPLIT_NUMBERS[split], index])
    indices, positions = draw(len(digits), rng, digits.shape[1])
    return compose(digits, indices, positions), indices, positions


class TwoDigitMnist(tfds.core.GeneratorBasedBuilder):
    """Two MNIST digits at random positions on a 60×60 canvas (DRAW, §4.2), from MNIST's original files."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Two digits of the same split, added and clipped at 255."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = mnist_digits.MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self):
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
                "labels": tfds.features.Tensor(shape=(DIGITS,), dtype=np.int64),  # of the two digits
                "digit_index": tfds.features.Tensor(shape=(DIGITS,), dtype=np.int64),  # in their MNIST file
                "position": tfds.features.Tensor(shape=(DIGITS, 2), dtype=np.int64),  # (row, column) of each top-left
            }),
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(dl_manager.manual_dir, split) for split in SPLIT_NUMBERS}

    def _generate_examples(self, directory, split):
        digits, labels, file_indices = mnist_digits.load_split(split, directory)
        for index in range(SPLIT_SIZES[split]):
            image, indices, positions = example(digits, index, split)
            yield index, {
                "image": image[:, :, None],
                "labels": labels[indices],
                "digit_index": file_indices[indices],
                "position": positions,
            }
