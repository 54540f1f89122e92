"""keras_draw.images: PNG grids with window boxes, worked by hand (window_box itself is tested
beside the pictures, tests/test_visualize.py, and in the SavedModel's graph, tests/test_serving.py)."""

import numpy as np
from PIL import Image

from keras_draw.images import BOX_COLOUR, image_grid, save_grid


def test_grid_tiles_images_between_white_padding_and_shows_nan_as_black():
    images = np.stack([np.full((2, 3, 1), 0.5), np.full((2, 3, 1), np.nan)])
    grid = image_grid(images, columns=2)
    assert grid.shape == (1 + 2 + 1, 1 + 3 + 1 + 3 + 1, 1) and grid.dtype == np.uint8
    assert grid[0].min() == 255 and grid[:, 4].min() == 255  # the padding
    assert (grid[1:3, 1:4] == 128).all() and (grid[1:3, 5:8] == 0).all()


def test_save_grid_draws_each_box_over_its_own_image(tmp_path):
    images = np.zeros((2, 4, 4, 1), np.float32)  # two black images, side by side
    boxes = [[1.0, 0.0, 2.0, 3.0], [0.0, 0.0, 3.0, 3.0]]  # x_min, y_min, x_max, y_max, 0-based pixels
    save_grid(tmp_path / "g.png", images, boxes=boxes)  # padding 1, scale 2
    with Image.open(tmp_path / "g.png") as png:
        picture = np.asarray(png.convert("RGB"))
    assert picture.shape == (2 * 6, 2 * 11, 3)
    # Image k's pixel p lies at p + 1 + 5k in the grid; its centre at (p + 1 + 5k + 0.5)·2 − 0.5,
    # rounded: image 0's box spans x 5 … 7, y 3 … 9; image 1's x 13 … 19, y 3 … 9.
    for row, column in [(3, 5), (3, 7), (9, 5), (9, 7), (3, 13), (9, 19), (6, 13), (3, 16)]:
        assert tuple(picture[row, column]) == BOX_COLOUR, (row, column)
    for row, column in [(5, 6), (2, 5), (3, 4), (10, 7), (6, 16), (3, 20)]:
        assert tuple(picture[row, column]) != BOX_COLOUR, (row, column)
