"""keras_draw: DRAW (Gregor et al. 2015) as Keras 3 layers and a subclassed model."""

from keras_draw import datasets, layers, losses, presets
from keras_draw.draw import Draw
from keras_draw.filterbank import filterbank
from keras_draw.training import train

__version__ = "0.1.0"

__all__ = ["Draw", "datasets", "filterbank", "layers", "losses", "presets", "train"]
