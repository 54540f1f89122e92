"""A model written as a version of a TF Serving model folder: `export(model, model_base_path)`.

It writes `<model_base_path>/<version>/saved_model.pb` and `variables/`, TF Serving's layout, with
the model's signatures (keras_draw.serving.signatures).

The export is written by Keras's `ExportArchive`, which saves the variables the signatures read.
It is not given the model to `track`: with the TensorFlow backend, a tracked Keras variable is
saved as a second copy of its tf.Variable, and TF Serving's loader (a session whose variables
are restored through the saver_def) restores the copy and never the variable the signatures read
("Could not find variable draw/h_dec_0").

An interrupted export (Ctrl-C, SIGTERM) leaves no version: the signal is held while the SavedModel
is written (`_signals_held`), then stops the export before the version is renamed into place.
"""

import contextlib
import os
import re
import signal
import threading

import keras
import tensorflow as tf

from keras_draw.files import atomic_path
from keras_draw.serving.signatures import MAX_BATCH, signatures



class ExportWriteError(OSError):
    """Writing a version failed (a full disk, a quota, permissions); nothing was left half-written."""


def next_version(model_base_path):
    """One more than the highest integer version folder in `model_base_path` (1 when none)."""
    if not os.path.isdir(model_base_path):
        return 1
    versions = [int(name) for name in os.listdir(model_base_path) if re.fullmatch(r"\d+", name)]
    return max(versions, default=0) + 1


def export(model, model_base_path, version=None, max_batch=MAX_BATCH):
    """Writes `model` as version `version` (default: the next) of a TF Serving model folder.

    Every signature refuses a request of more than `max_batch` rows (InvalidArgument).

    The SavedModel is written into a hidden folder inside `model_base_path` (".partial-*", which
    TF Serving ignores: it only loads folders named by an integer) and renamed into place whole,
    so a crash never leaves a half-written version. An existing version is never overwritten.

    Returns:
        The path of the version folder, `<model_base_path>/<version>`.

    Raises:
        ExportWriteError: the write failed (e.g. no space left on device); the partial copy is
            removed, and so is `model_base_path` if this call created it and it is empty.
    """
    if version is None:
        version = next_version(model_base_path)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer. Received: version={version!r}")
    path = os.path.join(os.fspath(model_base_path), str(version))
    if os.path.exists(path):
        raise FileExistsError(f"Version {version} already exists; versions are never overwritten: {path}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= 2**31 - 1:
        raise ValueError(f"max_batch must be an integer from 1 to 2**31 - 1. Received: max_batch={max_batch!r}")
    archive = keras.export.ExportArchive()  # not `track(model)`: see the module's docstring
    for name, function, specs in signatures(model, max_batch):
        archive.add_endpoint(name, function, input_signature=specs)  # the first is also serving_default
    created = not os.path.isdir(model_base_path)
    os.makedirs(model_base_path, exist_ok=True)
    try:
        with atomic_path(path) as temporary:
            with _signals_held():
                archive.write_out(temporary, verbose=False)
            if os.path.exists(path):  # another export took the version meanwhile
                raise FileExistsError(f"Version {version} already exists; versions are never overwritten: {path}")
    except FileExistsError:
        raise
    except (OSError, tf.errors.OpError) as err:  # TensorFlow's file writes raise OpErrors (ENOSPC: ResourceExhausted)
        raise _write_error(err, path) from err
    finally:
        if created and os.path.isdir(model_base_path) and not os.listdir(model_base_path):
            os.rmdir(model_base_path)  # whatever stopped the export (an error, Ctrl-C)
    return path


@contextlib.contextmanager
def _signals_held(signums=(signal.SIGINT, signal.SIGTERM)):
    """Ctrl-C and SIGTERM held while the block runs, then handed to the handlers they would have met.

    Writing a SavedModel traces the signatures, where TensorFlow's C++ calls back into Python: a
    KeyboardInterrupt raised there became a SystemError that the tracing swallowed, and the
    interrupted export went on to write its version. Held, the signal stops the export after the
    write, before the version is renamed into place (seconds later), and nothing is left.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread has handlers
        yield
        return
    received = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum)) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in received[:1]:
            signal.raise_signal(signum)


def _write_error(err, path):
    """An ExportWriteError saying why writing `path` failed, and that nothing was left behind."""
    if isinstance(err, OSError):
        reason = os.strerror(err.errno) if err.errno else str(err)
    else:
        reason = next((line for line in err.message.splitlines() if line.strip()), type(err).__name__)
    error = ExportWriteError(f"Cannot write {path}: {reason.strip()}. Nothing was left half-written: the partial "
                             "copy was removed, and TF Serving sees no new version.")
    error.errno = getattr(err, "errno", None)
    return error
