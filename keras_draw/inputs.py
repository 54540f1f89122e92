"""What a `Draw` is given, checked: images in [0, 1] of its shape, finite noise of its shape, a
mean image in [0, 1], a count of images, and a seed that fixes its initial weights."""

import contextlib
import math
import random

import numpy as np
import tensorflow as tf
from keras import ops

from keras_draw.layers.validation import check_count, check_fits_in_memory


RANGE_MESSAGE = "Images must hold values in [0, 1], without NaN (scale uint8 images by 1/255)."


def check_shape(image_shape, x):
    """ValueError unless x has the static shape (batch, *image_shape) with at least one image.

    An empty batch is refused rather than mapped to an empty result: Keras's own LSTM cell fails
    on it ("Biases must be 1D: [0, units]") and `keras.Model.predict` on no data raises an
    UnboundLocalError, as `generate(0)` is refused. A batch size unknown until run time passes."""
    if tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"Expected images of shape (batch, {', '.join(map(str, image_shape))}). "
                         f"Received: shape={tuple(x.shape)}")
    check_not_empty("images", "image", x.shape)


def check_not_empty(name, item, shape):
    """ValueError if the static batch size of `shape` is 0 (see `check_shape`)."""
    if len(shape) and shape[0] == 0:
        raise ValueError(f"`{name}` must hold at least one {item}. Received: shape={tuple(shape)}")


def check_images(image_shape, data):
    """The images of a batch (labels dropped), after a check of their static shape; in the graph,
    an assertion that they lie in [0, 1]."""
    x = data[0] if isinstance(data, (tuple, list)) else data
    x = ops.convert_to_tensor(x, dtype="float32")
    check_shape(image_shape, x)
    in_range = ops.all(ops.logical_and(x >= 0.0, x <= 1.0))  # False for NaN too; True for no images
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
    """ε as a float32 tensor, after a check of its shape (batch, T, |z|) (where its shape is known,
    else a ValueError); in the graph, an assertion that it is finite (NaN noise gives NaN images)."""
    expected = (None, num_steps, latent_dim)
    shape = tuple(epsilon.shape)
    if len(shape) != 3 or any(s is not None and e is not None and s != e for s, e in zip(shape, expected)):
        raise ValueError(f"Expected noise of shape (batch, {num_steps}, {latent_dim}): T = "
                         f"{num_steps} steps of |z| = {latent_dim}. Received: shape={shape}")
    check_not_empty("noise", "image's noise", shape)
    epsilon = ops.convert_to_tensor(epsilon, dtype="float32")
    finite = ops.all(ops.isfinite(epsilon))
    with tf.control_dependencies([tf.debugging.Assert(finite, ["Noise must be finite (no NaN or infinity)."])]):
        return tf.identity(epsilon)


def check_same_batch(x, epsilon):
    """ValueError unless the images x and the noise ε have the same batch size, where both are known
    before the graph runs (else TensorFlow's "Incompatible shapes" from inside a layer)."""
    x_shape, noise_shape = tuple(getattr(x, "shape", ())), tuple(epsilon.shape)
    images, noise = (x_shape or (None,))[0], (noise_shape or (None,))[0]
    if images is not None and noise is not None and images != noise:
        raise ValueError(f"Expected noise for each of the {images} images. "
                         f"Received: noise of shape {noise_shape}")


def check_mean_image(image_shape, mean_image):
    """The mean image (B, A, C) as a float32 array; ValueError, quoting the first bad value and
    where it lies, unless it has that shape and values in [0, 1]."""
    p = np.asarray(mean_image, dtype=np.float32)
    if p.shape != tuple(image_shape):
        raise ValueError(f"Expected a mean image of shape {tuple(image_shape)}. Received: shape={p.shape}")
    outside = ~((p >= 0.0) & (p <= 1.0))  # NaN too
    if outside.any():
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        raise ValueError(f"A mean image must hold values in [0, 1], without NaN. Received: {p[index]} at {index}")
    return p


def check_num_images(model, num_images, return_sequence=False):
    """`num_images` for `model.generate` as a Python int: a positive integer of any integer type
    whose generation fits in memory (`check_fits_in_memory`), else ValueError."""
    num_images = check_count("num_images", num_images)
    size = generation_bytes(model.num_steps, model.latent_dim, math.prod(model.image_shape), model.decoder_units,
                            return_sequence)
    check_fits_in_memory("num_images", num_images, size, "a generated image")
    return num_images


def generation_bytes(num_steps, latent_dim, pixels, decoder_units, return_sequence=False):
    """About the memory one generated image takes, in bytes: in float32, its noise ε twice (drawn,
    then moved time-major), the canvas and its sigmoid, the decoder's state and gates; with
    `return_sequence` its T canvases twice (stacked, then moved batch-major) and windows."""
    floats = 2 * num_steps * latent_dim + 2 * pixels + 6 * decoder_units
    if return_sequence:
        floats += 2 * num_steps * (pixels + 5)
    return 4 * floats


# What the smallest Draw (one step, one latent, one pixel, one unit) takes per generated image:
# a count beyond what fits at this size fits for no Draw, and can be refused before a model is known.
SMALLEST_GENERATION_BYTES = generation_bytes(1, 1, 1, 1)


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
