"""Image grids as PNG files, and the boxes of attention windows drawn over them.

numpy and Pillow only, no TensorFlow: export/client.py, which must run without TensorFlow, draws
its grids with this module too. `window_box` is plain arithmetic, so it works on numpy arrays and,
in the exported SavedModel's graph, on TensorFlow tensors alike.
"""

import math

import numpy as np
from PIL import Image, ImageDraw

from keras_draw.files import atomic_path

BOX_COLOUR = (255, 0, 0)  # red, as the paper's write windows


def window_box(window, n, scale=1):
    """The box joining the outermost filter centres of windows (..., 5) (eqs. 19-20).

    Args:
        window: a sequence, numpy array or TensorFlow tensor, ordered as
            `keras_draw.layers.attention_window.WINDOW_PARAMETERS` ((g_x, g_y, δ, ...), in the
            paper's 1-based coordinates) on its last axis.
        n: N, the grid size.
        scale: the picture's upscaling; pixel index p's centre lands on (p + 0.5)·scale − 0.5.

    Returns:
        (x_min, y_min, x_max, y_max), each of shape (...): the outermost filter centres as
        (fractional) 0-based pixel indices of the picture, where pixel (row r, column c) of an
        image is centred on (x=c, y=r).
    """
    window = np.asarray(window, np.float64) if isinstance(window, (tuple, list)) else window
    g_x, g_y, delta = window[..., 0], window[..., 1], window[..., 2]
    half_span = (n / 2.0 - 0.5) * delta  # eqs. 19-20 at i = N; i = 1 is its mirror image
    corners = (g_x - half_span, g_y - half_span, g_x + half_span, g_y + half_span)  # paper, 1-based
    # a − 1: the paper's coordinate a = p + 1 as the 0-based index p (filterbank.py); then upscaled
    return tuple((c - 1.0) * scale + (scale - 1) / 2.0 for c in corners)


def box_pixels(box, width, height):
    """The box rounded to whole pixels, clipped to one pixel outside a width×height picture.

    A side beyond the picture stays out of sight, as it should; the clip only keeps far-away
    coordinates (a window δ of e^10) small for Pillow.
    """
    left, top, right, bottom = (math.floor(v + 0.5) for v in box)
    clip = lambda v, size: min(max(v, -1), size)
    return clip(left, width), clip(top, height), clip(right, width), clip(bottom, height)


def grid_columns(count, columns=None):
    """The columns of a grid of `count` images: `columns`, or as many as its rows by default."""
    return columns or math.ceil(math.sqrt(count))


def tile_origin(k, columns, height, width, padding):
    """(top, left) of the k-th height×width tile of a grid with `columns` columns."""
    return padding + (k // columns) * (height + padding), padding + (k % columns) * (width + padding)


def image_grid(images, columns=None, padding=1):
    """Tiles images (count, B, A, C) with values in [0, 1] into one uint8 array (H, W, C).

    NaN counts as 0 (black), so a broken model's images still make a picture.
    """
    images = np.clip(np.nan_to_num(np.asarray(images, dtype=np.float32)), 0.0, 1.0)
    count, height, width, channels = images.shape
    columns = grid_columns(count, columns)
    rows = math.ceil(count / columns)
    grid = np.ones(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        dtype=np.float32,
    )
    for k, image in enumerate(images):
        top, left = tile_origin(k, columns, height, width, padding)
        grid[top : top + height, left : left + width] = image
    return np.round(grid * 255).astype(np.uint8)


def save_grid(path, images, columns=None, scale=2, boxes=None, padding=1):
    """Writes `image_grid(images)` as a PNG, each pixel `scale`×`scale`; atomic (see files).

    `boxes` (count, 4), one an image, are drawn in red: (x_min, y_min, x_max, y_max) in 0-based
    pixel coordinates of the image, as `window_box` and the signatures' `read_box` / `write_box`.
    """
    grid = image_grid(images, columns, padding)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    if boxes is not None:
        picture = picture.convert("RGB")
        pen = ImageDraw.Draw(picture)
        count, height, width = np.shape(images)[:3]
        for k, box in enumerate(np.asarray(boxes, np.float64)):
            top, left = tile_origin(k, grid_columns(count, columns), height, width, padding)
            shifted = box + (left, top, left, top)  # in the grid's pixels
            upscaled = shifted * scale + (scale - 1) / 2.0  # pixel centres, as in `window_box`
            pen.rectangle(box_pixels(upscaled, picture.width, picture.height), outline=BOX_COLOUR)
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")
