"""Files written whole or not at all: a temporary name, then an atomic rename into place."""

import contextlib
import json
import os
import shutil
import tempfile


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
