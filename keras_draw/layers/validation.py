"""Argument checks shared by the layers and the model; messages quote the bad value."""


def check_positive(**values):
    """Raises ValueError for any value that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


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
