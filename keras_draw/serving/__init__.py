"""Serving a trained model with TensorFlow Serving: the export, a client, and a stand-in server for tests.

    keras_draw.serving.export(model, "serving/draw")   # writes serving/draw/1, TF Serving's layout

The modules, each with one purpose:

    signatures       the SavedModel's signatures (`SERVED`, a table per model class) and the
                     checks of their inputs, inside the graph
    saved_model      `export`: a version folder written whole or not at all
    transports       TF Serving's REST and gRPC predict calls, and their formats
    client           `Client`: the signatures as Python methods, over either transport
    session          a SavedModel loaded and run as TF Serving runs it (TensorFlow's C API)
    stand_in_server  TF Serving's REST and gRPC API over `session`, for tests and demos

The client runs without TensorFlow: `keras_draw.serving.client` and `transports` import numpy and
the standard library only (gRPC imports its protos on first use). So this package imports nothing
when it is imported, and the names below come from their modules on first use.
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "export": "keras_draw.serving.saved_model",
    "next_version": "keras_draw.serving.saved_model",
    "ExportWriteError": "keras_draw.serving.saved_model",
    "MAX_BATCH": "keras_draw.serving.signatures",
    "SERVED": "keras_draw.serving.signatures",
    "Pass": "keras_draw.serving.signatures",
    "signature_names": "keras_draw.serving.signatures",
    "Client": "keras_draw.serving.client",
    "ServingError": "keras_draw.serving.transports",
    "StandInServer": "keras_draw.serving.stand_in_server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_draw.serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
