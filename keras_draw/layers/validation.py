"""Argument checks shared by the layers and the model; messages quote the bad value."""

import math
import numbers


def check_positive(**values):
    """Raises ValueError for any value that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def check_count(name, value):
    """`value` as a Python int if it is a positive integer of any integer type (numpy's too, as
    array indexing gives them), else ValueError; bools are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


def check_clip_norm(clip_norm):
    """ValueError unless `clip_norm` is None or a finite number >= 0 (an infinite norm clips nothing)."""
    if clip_norm is None:
        return
    if isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float)) or not 0 <= clip_norm < math.inf:
        raise ValueError(f"`clip_norm` must be a finite number >= 0, or None. Received: clip_norm={clip_norm!r}")


def check_grid_size(name, n, image_height, image_width):
    """N must be at least 2 (eq. 24 divides by N − 1) and at most the image's larger side."""
    check_positive(**{name: n})
    if n < 2:
        raise ValueError(
            f"`{name}` must be at least 2: eq. 24 divides the stride by N - 1. Received: {name}={n}"
        )
    largest = max(image_height, image_width)
    if n > largest:
        raise ValueError(
            f"`{name}` must not exceed the image size {image_height}x{image_width}. "
            f"Received: {name}={n}"
        )
