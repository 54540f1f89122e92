"""Keras 3 layers of DRAW: reads, writes, the attention window and the Gaussian latent."""

from keras_draw.layers.attention_window import AttentionWindow, unpack_window
from keras_draw.layers.attentive_read import AttentiveRead
from keras_draw.layers.attentive_write import AttentiveWrite
from keras_draw.layers.gaussian_latent import GaussianLatent
from keras_draw.layers.read import Read
from keras_draw.layers.write import Write

__all__ = [
    "AttentionWindow",
    "AttentiveRead",
    "AttentiveWrite",
    "GaussianLatent",
    "Read",
    "Write",
    "unpack_window",
]
