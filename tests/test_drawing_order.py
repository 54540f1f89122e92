"""Tests for keras_draw.drawing_order: regions of ink, and whether two were drawn one then the other,
on canvases made by hand."""

import json

import numpy as np
import pytest

from keras_draw import drawing_order
from keras_draw.draw import Draw

SIZE = 30
T = 8


def blob(top, left, size=6):
    """A size×size square of ink on a SIZE×SIZE canvas, as a boolean mask."""
    mask = np.zeros((SIZE, SIZE), bool)
    mask[top : top + size, left : left + size] = True
    return mask


def growing(mask, first, last, num_steps=T):
    """(T, SIZE, SIZE) intensities: the pixels of `mask`, in raster order, inked (0.9) a fraction
    at a time from step `first` to step `last` (0-based, inclusive), then kept."""
    pixels = np.flatnonzero(mask)
    frames = np.zeros((num_steps, SIZE * SIZE))
    for t in range(num_steps):
        done = np.clip((t - first + 1) / (last - first + 1), 0.0, 1.0)
        frames[t, pixels[: round(done * len(pixels))]] = 0.9
    return frames.reshape(num_steps, SIZE, SIZE)


def drawing(*parts, background=0.1):
    """One sample's canvases (1, T, SIZE, SIZE, 1): a faint background (as σ(c_0) is) under the
    ink of `parts`, each a `growing` sequence."""
    canvases = np.maximum(background, np.max(parts, axis=0))
    return canvases[None, ..., None]


def test_components_join_eight_neighbours_only():
    mask = np.zeros((5, 6), bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one component
    mask[3, 3] = mask[3, 5] = True  # one blank pixel apart: two
    labels, count = drawing_order.label_components(mask)
    assert count == 3
    assert labels[0, 0] == labels[1, 1] == 1 and labels[3, 3] == 2 and labels[3, 5] == 3
    assert np.count_nonzero(labels) == 4


def test_dilation_grows_a_pixel_into_a_square():
    mask = np.zeros((2, 7, 7), bool)
    mask[0, 3, 3] = True
    mask[1, 0, 6] = True
    grown = drawing_order.dilate(mask, 1)
    np.testing.assert_array_equal(np.argwhere(grown[0]), [(r, c) for r in (2, 3, 4) for c in (2, 3, 4)])
    np.testing.assert_array_equal(np.argwhere(grown[1]), [(0, 5), (0, 6), (1, 5), (1, 6)])  # cut at the edges
    assert drawing_order.dilate(mask, 0) is mask


def test_regions_bridge_gaps_of_two_pixels_and_drop_specks():
    two_apart = blob(5, 5) | blob(5, 13)  # columns 5..10 and 13..18: two blank columns between
    assert len(drawing_order.ink_regions(two_apart * 0.9)) == 1
    three_apart = blob(5, 5) | blob(5, 14)
    assert len(drawing_order.ink_regions(three_apart * 0.9)) == 2
    speck = blob(5, 5) | blob(20, 20, size=3)  # 9 pixels: below MIN_PIXELS = 10
    assert len(drawing_order.ink_regions(speck * 0.9)) == 1
    assert len(drawing_order.ink_regions(speck * 0.9, min_pixels=5)) == 2
    assert len(drawing_order.ink_regions(three_apart * 0.4)) == 0  # below the threshold: no ink


def test_one_blob_is_not_two_regions():
    order = drawing_order.drawing_order(drawing(growing(blob(5, 5), 0, 5)))
    assert order["regions"].tolist() == [1]
    assert not order["two_regions"][0] and not order["sequential"][0] and order["first_complete"][0] == -1


def test_two_blobs_appearing_together_are_not_sequential():
    order = drawing_order.drawing_order(drawing(growing(blob(2, 2), 1, 6), growing(blob(20, 20), 1, 6)))
    assert order["two_regions"][0] and not order["sequential"][0]
    assert order["first_complete"][0] == 5  # 5 of 6 steps: 0.83 of each blob's 36 pixels


def test_one_blob_then_the_other_is_sequential():
    order = drawing_order.drawing_order(drawing(growing(blob(2, 2), 0, 3), growing(blob(20, 20), 4, 7)))
    assert order["two_regions"][0] and order["sequential"][0]
    assert order["first_complete"][0] == 3  # the first blob: 0.75 at step 2, whole at step 3


def test_the_second_blob_begun_before_the_first_is_complete_is_not_sequential():
    # The first holds 4/5 (29 of 36 pixels) at step 3: complete; the second, grown from step 2 on
    # in 6 steps, holds 2/6 of its ink then, above STARTED (0.2).
    order = drawing_order.drawing_order(drawing(growing(blob(2, 2), 0, 4), growing(blob(20, 20), 2, 7)))
    assert order["two_regions"][0] and order["first_complete"][0] == 3 and not order["sequential"][0]
    # Grown from step 3 on in 5 steps, it holds 7 of 36 pixels then: not begun (at most 0.2).
    order = drawing_order.drawing_order(drawing(growing(blob(2, 2), 0, 3), growing(blob(20, 20), 3, 7)))
    assert order["first_complete"][0] == 3 and order["sequential"][0]


def test_the_order_of_the_regions_does_not_matter():
    first, second = growing(blob(2, 2), 4, 7), growing(blob(20, 20), 0, 3)  # the lower-right one first
    order = drawing_order.drawing_order(np.concatenate([drawing(first, second), drawing(second, first)]))
    assert order["sequential"].tolist() == [True, True]


def test_three_blobs_are_not_two_regions():
    parts = [growing(blob(2, 2), 0, 1), growing(blob(20, 2), 2, 3), growing(blob(20, 20), 4, 5)]
    order = drawing_order.drawing_order(drawing(*parts))
    assert order["regions"].tolist() == [3] and not order["sequential"][0]


class CannedModel:
    """A stand-in for Draw's generation: its samples alternate between one blob then the other
    and two blobs together; the noise's first value says which."""

    def sample_noise(self, batch_size, seed=None):
        return np.arange(seed, seed + batch_size)[:, None, None] % 2 * np.ones((1, T, 1))

    def decode(self, epsilon, return_sequence=False):
        sequential = drawing(growing(blob(2, 2), 0, 3), growing(blob(20, 20), 4, 7))[0]
        together = drawing(growing(blob(2, 2), 0, 7), growing(blob(20, 20), 0, 7))[0]
        return {"canvases": np.stack([sequential if e[0, 0] else together for e in epsilon])}


def test_sequential_fractions_count_over_every_batch():
    figures = drawing_order.sequential_fractions(CannedModel(), num_images=25, seed=0, batch_size=10)
    assert figures["samples"] == 25 and figures["two_regions"] == 25
    assert figures["sequential"] == 12  # the odd ones of 0..24
    assert figures["fraction_sequential"] == pytest.approx(12 / 25)
    assert figures["fraction_sequential_of_two_regions"] == pytest.approx(12 / 25)


def test_command_line_on_a_saved_model(tmp_path, capsys):
    path = str(tmp_path / "model.keras")
    Draw.from_preset("tiny", image_height=60, image_width=60, seed=0).save(path)
    assert drawing_order.main(["--model", path, "--num-images", "3"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["samples"] == 3 and 0 <= figures["two_regions"] <= 3
    assert figures["definition"]["threshold"] == drawing_order.THRESHOLD


def test_command_line_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert drawing_order.main(["--model", str(tmp_path / "missing.keras")]) == 2
    assert drawing_order.main(["--model", str(tmp_path / "missing.keras"), "--num-images", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("drawing_order") for line in err)


def test_a_real_mnist_digit_is_one_region_and_two_apart_are_two():
    from keras_draw.builders import mnist_digits, two_digit_mnist

    digits = mnist_digits.load_split("test")[0][:300]
    counts = drawing_order.region_counts(digits[..., None] / 255.0)
    assert np.mean(counts == 1) >= 0.99  # the strokes of one digit are bridged into one region
    far_apart = two_digit_mnist.compose(digits, [0, 1], [(0, 0), (32, 32)])  # 4 rows and columns between
    assert len(drawing_order.ink_regions(far_apart / 255.0)) == 2
    on_top = two_digit_mnist.compose(digits, [0, 1], [(16, 16), (16, 16)])
    assert len(drawing_order.ink_regions(on_top / 255.0)) == 1
