"""Argument checks shared by the layers and the model; messages quote the bad value."""

import math
import numbers
import os

# A request may take at most this share of the machine's memory: the rest is the process's own
# (TensorFlow, the model, the data) and the system's.
MEMORY_SHARE = 0.5


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


def machine_memory():
    """The machine's physical memory in bytes; None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or no such name
        return None


def memory_bound(bytes_each):
    """The most items of `bytes_each` bytes that fit in `MEMORY_SHARE` of this machine's memory
    (at least 1); None where the memory is not known."""
    memory = machine_memory()
    return None if memory is None else max(1, int(memory * MEMORY_SHARE // bytes_each))


def check_fits_in_memory(name, count, bytes_each, what, flag=False):
    """ValueError unless `count` items of `bytes_each` bytes fit in `MEMORY_SHARE` of this
    machine's memory: a size beyond that would run the machine out of memory after minutes,
    having perhaps written half its files. `what` says what one item is ("an image's drawing");
    `flag`: `name` is a command-line flag's (`--num-images`), else an argument's."""
    most = memory_bound(bytes_each)
    if most is None or count <= most:
        return
    label, received = (f"--{name.replace('_', '-')}",) * 2 if flag else (f"`{name}`", name)
    size = f"{bytes_each / 2**20:.2f} MiB" if bytes_each >= 2**20 / 100 else f"{bytes_each:,} bytes"
    raise ValueError(f"{label} must be at most {most:,} on this machine: {what} takes about "
                     f"{size}, and {MEMORY_SHARE:.0%} of its memory is "
                     f"{machine_memory() * MEMORY_SHARE / 2**30:.1f} GiB. Received: {received}={count!r}")


def check_weights_fit_in_memory(count, sizes):
    """ValueError, quoting `sizes` (the arguments that make the weights), unless `count` float32
    weights fit in `MEMORY_SHARE` of this machine's memory, before any is allocated."""
    most = memory_bound(4)
    if most is None or count <= most:
        return
    received = ", ".join(f"{name}={value!r}" for name, value in sizes.items())
    raise ValueError(f"A model of these sizes has {count:,} weights ({4 * count / 2**30:,.1f} GiB in float32), more "
                     f"than {MEMORY_SHARE:.0%} of this machine's memory ({machine_memory() * MEMORY_SHARE / 2**30:.1f} "
                     f"GiB). Received: {received}")
