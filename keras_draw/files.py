"""Files written whole or not at all (a temporary name, then an atomic rename into place), and a
folder that one process at a time writes into (an advisory lock)."""

import contextlib
import json
import os
import shutil
import tempfile

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; `exclusive_folder` then guards nothing
    fcntl = None

LOCK_FILE = ".lock"


class FolderInUseError(ValueError):
    """Another process holds the folder (`exclusive_folder`)."""


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path with `path`'s file name; renames it to `path` on success.

    The temporary file lies in a fresh folder beside `path` (same file system, so the rename is
    atomic), keeps the file name (Keras insists on the `.keras` suffix), and is removed on failure.
    Killing the process at any instant leaves either the old file or the new one.
    """
    path = os.fspath(path)
    folder = tempfile.mkdtemp(prefix=".partial-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        temporary = os.path.join(folder, os.path.basename(path))
        yield temporary
        os.replace(temporary, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_json(path, value):
    """Writes `value` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True)
            f.write("\n")


@contextlib.contextmanager
def exclusive_folder(folder):
    """Holds an exclusive lock on the existing `folder` for the block, or raises FolderInUseError
    at once if another process holds it: two training runs writing into one output directory would
    overwrite each other's checkpoints. The lock (flock on `folder/.lock`) dies with its process,
    however that ends, so a killed run leaves nothing stale behind."""
    if fcntl is None:
        yield
        return
    descriptor = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUseError(f"{folder} is in use by another training run (it holds "
                                   f"{os.path.join(folder, LOCK_FILE)}): stop that run, or use another "
                                   "output directory.") from None
        yield
    finally:
        os.close(descriptor)  # releases the lock
