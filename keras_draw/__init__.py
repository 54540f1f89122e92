"""keras_draw: DRAW (Gregor et al. 2015) as Keras 3 layers and a subclassed model.

The names below are imported on first use, so that `import keras_draw` (and its small modules,
such as `keras_draw.console`) costs nothing until a model or a dataset is asked for.
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it; a submodule's name maps to None.
_EXPORTS = {
    "Draw": "keras_draw.draw",
    "DrawClassifier": "keras_draw.draw_classifier",
    "WeightAverage": "keras_draw.averaging",
    "filterbank": None,
    "train": "keras_draw.training",
    "datasets": None,
    "layers": None,
    "losses": None,
    "presets": None,
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_draw' has no attribute {name!r}")
    if _EXPORTS[name] is None:
        value = importlib.import_module(f"keras_draw.{name}")
    else:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
