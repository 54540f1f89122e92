"""What a `Draw` is given, checked: images in [0, 1] of its shape, noise of its shape, and a seed
that fixes its initial weights."""

import contextlib
import random

import numpy as np
import tensorflow as tf
from keras import ops


RANGE_MESSAGE = "Images must hold values in [0, 1], without NaN (scale uint8 images by 1/255)."


def check_shape(image_shape, x):
    """ValueError unless x has the static shape (batch, *image_shape)."""
    if tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"Expected images of shape (batch, {', '.join(map(str, image_shape))}). "
                         f"Received: shape={tuple(x.shape)}")


def check_images(image_shape, data):
    """The images of a batch (labels dropped), after a check of their static shape; in the graph,
    an assertion that they lie in [0, 1]."""
    x = data[0] if isinstance(data, (tuple, list)) else data
    x = ops.convert_to_tensor(x, dtype="float32")
    check_shape(image_shape, x)
    in_range = ops.logical_and(ops.min(x) >= 0.0, ops.max(x) <= 1.0)  # False for NaN too
    with tf.control_dependencies([tf.debugging.Assert(in_range, [RANGE_MESSAGE])]):
        return tf.identity(x)


def check_image_array(image_shape, x):
    """`check_images` for an array, at once: a float32 numpy array, or ValueError."""
    x = np.asarray(x, dtype=np.float32)
    check_shape(image_shape, x)
    if not (x.size == 0 or (np.min(x) >= 0.0 and np.max(x) <= 1.0)):  # False for NaN too
        raise ValueError(f"{RANGE_MESSAGE} Received: values in [{np.min(x)}, {np.max(x)}]")
    return x


def check_noise(epsilon, num_steps, latent_dim):
    """ValueError unless ε has the shape (batch, T, |z|) (where its shape is known)."""
    expected = (None, num_steps, latent_dim)
    shape = tuple(epsilon.shape)
    if len(shape) != 3 or any(s is not None and e is not None and s != e for s, e in zip(shape, expected)):
        raise ValueError(f"Expected noise of shape (batch, {num_steps}, {latent_dim}): T = "
                         f"{num_steps} steps of |z| = {latent_dim}. Received: shape={shape}")


@contextlib.contextmanager
def seeded_initializers(seed):
    """Python's `random` seeded by `seed` while a Draw makes its layers, then restored: Keras
    gives every initializer made without a seed one drawn from it, so the seed fixes the initial
    weights. With None, nothing changes (the weights follow the global random state)."""
    if seed is None:
        yield
        return
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)
