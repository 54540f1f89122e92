"""keras_draw: DRAW (Gregor et al. 2015) as Keras 3 layers and a subclassed model."""

from keras_draw import datasets, layers, losses, presets
from keras_draw.draw import Draw
from keras_draw.filterbank import filterbank

__version__ = "0.1.0"

__all__ = ["Draw", "datasets", "filterbank", "layers", "losses", "presets", "train"]


def train(verbose="auto", **options):
    """`keras_draw.training.train`: what `python train.py` runs (imported on first use, so that
    `python -m keras_draw.evaluate` and `python -m keras_draw.visualize` start cleanly)."""
    from keras_draw.training import train as train_run

    return train_run(verbose=verbose, **options)
