"""keras_draw: DRAW (Gregor et al. 2015) as Keras 3 layers and a subclassed model.

Every Keras class that keras_draw saves (`Draw`, `DrawClassifier` and their layers) is registered with Keras as soon as
both keras_draw and keras are imported, in either order, so that `keras.saving.load_model` loads a
run's model.keras after `import keras, keras_draw`. `import keras_draw` alone imports no
TensorFlow: its small modules (`console`, `malloc`, `images`) serve commands before TensorFlow
starts and the REST client (`keras_draw.serving.client`), which runs without it. The other public names are imported on first
use; tensorflow-datasets and tensorflow-probability only when a dataset or a loss is asked for.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# Public name -> the module that defines it; a submodule's name maps to None.
_EXPORTS = {
    "Draw": "keras_draw.draw",
    "SampleGrid": "keras_draw.callbacks",
    "DrawClassifier": "keras_draw.draw_classifier",
    "WeightAverage": "keras_draw.averaging",
    "filterbank": None,
    "train": "keras_draw.training",
    "datasets": None,
    "layers": None,
    "losses": None,
    "presets": None,
}

# The modules whose import registers the Keras classes keras_draw saves. A new saved class adds
# its module here.
SAVED_CLASSES_MODULES = ("keras_draw.layers", "keras_draw.draw", "keras_draw.draw_classifier")

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


def _register_saved_classes():
    for module in SAVED_CLASSES_MODULES:
        importlib.import_module(module)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Registers the saved classes once keras has loaded, when keras_draw came first. It watches
    the imports of keras and of keras_draw's modules, found as the other finders would find them
    (TensorFlow imports keras, and looks for it first with `importlib.util.find_spec`), and
    registers after the first import to end with keras loaded and no keras_draw module still
    executing: a keras_draw module that imports keras (`keras_draw.filterbank`, say) is a
    dependency of the classes, which could not be imported before it has run to its end."""

    searching = False
    keras_loaded = False

    def find_spec(self, fullname, path, target=None):
        watched = fullname == "keras" or fullname.startswith("keras_draw.")
        if not watched or self.searching:
            return None
        self.searching = True  # the search below must not come back here
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.searching = False
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderThenRegister(spec.loader, self)
        return spec

    def imported(self, module):
        """After `module` has run: registers if keras has loaded and no other keras_draw module is
        still running."""
        self.keras_loaded = self.keras_loaded or module.__name__ == "keras"
        if not self.keras_loaded or self not in sys.meta_path or _running_modules(besides=module):
            return
        sys.meta_path.remove(self)
        _register_saved_classes()


def _running_modules(besides):
    """The keras_draw modules whose code is still running (imports under way), but `besides`."""
    return [name for name, module in list(sys.modules.items())
            if name.startswith("keras_draw.") and module is not besides
            and getattr(getattr(module, "__spec__", None), "_initializing", False)]


class _LoaderThenRegister(importlib.abc.Loader):
    """A module's own loader, then `_RegisterAfterKeras.imported`."""

    def __init__(self, loader, finder):
        self.loader = loader
        self.finder = finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.finder.imported(module)

    def __getattr__(self, name):  # the rest (resource readers, ...) as the module's loader has them
        return getattr(self.loader, name)


if sys.modules.get("keras") is not None:  # None: an import of keras is blocked
    _register_saved_classes()
else:
    sys.meta_path.insert(0, _RegisterAfterKeras())
