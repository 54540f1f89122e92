"""Image grids as PNG files, through Pillow."""

import math

import numpy as np
from PIL import Image

from keras_draw.files import atomic_path


def image_grid(images, columns=None, padding=1):
    """Tiles images (count, B, A, C) with values in [0, 1] into one uint8 array (H, W, C)."""
    images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.ones(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        dtype=np.float32,
    )
    for k, image in enumerate(images):
        top = padding + (k // columns) * (height + padding)
        left = padding + (k % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    return np.round(grid * 255).astype(np.uint8)


def save_grid(path, images, columns=None, scale=2):
    """Writes `image_grid(images)` as a PNG, each pixel `scale`×`scale`; atomic (see files)."""
    grid = image_grid(images, columns)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")
