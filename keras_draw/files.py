"""Files written whole or not at all (a temporary name, then an atomic rename into place), files
read with errors that tell a file that cannot be read from a damaged one, and a folder that one
process at a time writes into (an advisory lock)."""

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
import time

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; `exclusive_folder` then guards nothing
    fcntl = None

LOCK_FILE = ".lock"


class FolderInUseError(ValueError):
    """Another process holds the folder (`exclusive_folder`)."""


class WriteError(OSError):
    """A file could not be written (a full disk, a quota, a read-only folder); the file it was to
    replace, if any, is untouched and nothing half-written is left behind."""


PARTIAL_PREFIX = ".partial-"


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path with `path`'s file name; renames it to `path` on success.

    The temporary file lies in a fresh folder beside `path` (same file system, so the rename is
    atomic), keeps the file name (Keras insists on the `.keras` suffix), and is removed on failure
    or on Ctrl-C. Killing the process at any instant leaves either the old file or the new one.
    An OSError while writing (ENOSPC: a full disk) becomes a `WriteError` naming `path`.

    The folder is held locked while it is written (flock on a `.lock` file in it): one that a
    killed process left (SIGKILL, or a crash) is no longer locked, and the next write into the
    same folder removes it, while another process's write in progress is left alone.
    """
    path = os.fspath(path)
    check_replaceable(path)
    parent = os.path.dirname(os.path.abspath(path))
    remove_abandoned_partials(parent)
    folder, lock = _locked_partial_folder(parent, path)
    try:
        temporary = os.path.join(folder, os.path.basename(path))
        yield temporary
        os.replace(temporary, path)
    except WriteError:
        raise
    except OSError as err:
        raise _write_error(path, err) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if lock is not None:
            os.close(lock)


def check_replaceable(path):
    """ValueError, naming what is there, if `path` exists as something other than a regular file or
    a symbolic link: the rename of `atomic_path` would put a file in place of a FIFO, a device or a
    socket that a user named as the output by mistake."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:  # absent, or not reachable: the write itself reports it
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        kind = next((name for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                                             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                                             (stat.S_ISSOCK, "a socket")) if test(mode)), "not a regular file")
        raise ValueError(f"{path} is {kind}, not a file to write; it is left as it is. Received: {path!r}")


def _locked_partial_folder(parent, path):
    """A fresh ".partial-*" folder in `parent` and the descriptor of its lock file, locked where the
    file system has locks (None without fcntl)."""
    while True:
        try:
            folder = tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=parent)
        except OSError as err:
            raise _write_error(path, err) from None
        if fcntl is None:
            return folder, None
        lock = os.path.join(folder, LOCK_FILE)
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # another process's `remove_abandoned_partials` removed it: another
            continue
        except OSError as err:
            raise _write_error(path, err) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.fstat(descriptor), os.stat(lock)):
                return folder, descriptor
        except BlockingIOError:  # taken for abandoned between its making and its locking
            pass
        except FileNotFoundError:  # ... and removed
            pass
        except OSError:  # no locks on this file system: then nothing is removed as abandoned either
            return folder, descriptor
        os.close(descriptor)


def _try_lock(path):
    """The descriptor of the existing file `path`, exclusively locked (flock); None if another
    process holds it, it is missing, or the file system cannot lock."""
    if fcntl is None:
        return None
    try:
        descriptor = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by its writer, or no locks on this file system
        os.close(descriptor)
        return None
    return descriptor


# A ".partial-*" folder without a lock file is taken for abandoned once this old: a writer locks
# its folder within microseconds of making it, and writers of an earlier version, which did not
# lock, write no file for this long.
UNLOCKED_PARTIAL_SECONDS = 3600


def remove_abandoned_partials(folder):
    """Removes the ".partial-*" folders of `atomic_path` in `folder` whose writer is gone: those
    whose lock is free, and those without a lock file older than `UNLOCKED_PARTIAL_SECONDS`."""
    try:
        names = [name for name in os.listdir(folder) if name.startswith(PARTIAL_PREFIX)]
    except OSError:
        return
    for name in names:
        partial = os.path.join(folder, name)
        lock = _try_lock(os.path.join(partial, LOCK_FILE))
        if lock is not None:
            try:
                shutil.rmtree(partial, ignore_errors=True)
            finally:
                os.close(lock)
        elif not os.path.exists(os.path.join(partial, LOCK_FILE)) and _age(partial) > UNLOCKED_PARTIAL_SECONDS:
            shutil.rmtree(partial, ignore_errors=True)


def _age(path):
    """Seconds since `path` last changed (0 if it is gone)."""
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return 0.0


def _write_error(path, err):
    """A WriteError naming `path` and the cause in a few words ("No space left on device")."""
    reason = os.strerror(err.errno) if err.errno else str(err).split("\n")[0]
    failure = WriteError(f"could not write {path}: {reason}")
    failure.errno = err.errno
    return failure


class UnreadableError(ValueError):
    """A file exists but cannot be read (no permission, a folder in its place, an I/O error). It may
    be sound: it is left as it is, and no message calls it damaged or asks to delete it."""


def unreadable(path, err, what=""):
    """An UnreadableError naming `path` (after `what`, e.g. "Checkpoint ") and the cause."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    advice = "it was left as it is"
    if err.errno in (errno.EACCES, errno.EPERM):
        advice = "it may be sound: run as a user who may read it, or give read permission; it was left as it is"
    return UnreadableError(f"{what}{path} cannot be read ({reason}): {advice}.")


def file_exists(path, what=""):
    """Whether `path` exists; UnreadableError where that cannot be known (a folder on the way
    that may not be searched): taken for a missing file, a good one would be overwritten."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise unreadable(path, err, what) from None
    return True


def read_bytes(path, what=""):
    """The bytes of the file at `path`; UnreadableError if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise unreadable(path, err, what) from None


def check_readable(path, what=""):
    """UnreadableError unless the file at `path` can be opened for reading (before a library,
    h5py or numpy, that would call it damaged)."""
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise unreadable(path, err, what) from None


def read_json(path, what=""):
    """The JSON value of the UTF-8 file at `path`. UnreadableError if it cannot be read;
    ValueError saying what its text is ("an empty file", "not UTF-8 text: ...", "not JSON: ..."),
    for the caller to name the file."""
    data = read_bytes(path, what)
    if not data.strip():
        raise ValueError("an empty file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text: byte {data[err.start]:#04x} at offset {err.start}") from None
    try:
        return json.loads(text)
    except ValueError as err:
        raise ValueError(f"not JSON: {err}") from None


def weights_bytes(model):
    """About the size of `model.save_weights`'s file, optimizer state included, erring high:
    the variables' bytes, and HDF5's few hundred bytes of metadata per variable, counted as 4 KiB."""
    variables = [*model.weights, *(model.optimizer.variables if getattr(model, "optimizer", None) else [])]
    data = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return data + 4096 * len(variables) + 65536


def check_free_space(path, needed):
    """A WriteError, before anything is written, unless `path`'s file system has `needed` bytes free.

    HDF5 (Keras's weights files) cannot fail cleanly on a full disk: its file stays open in the
    library, and the interpreter crashed on exit (a segmentation fault), so weights are written
    only where they fit.
    """
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if free < needed:
        failure = WriteError(f"could not write {path}: No space left on device "
                             f"({free / 2**20:.1f} MiB free, {needed / 2**20:.1f} MiB needed)")
        failure.errno = errno.ENOSPC
        raise failure


def save_weights(model, path):
    """`model.save_weights(path)` whole or not at all, refused before writing where it would not fit."""
    check_free_space(path, weights_bytes(model))
    with atomic_path(path) as temporary:
        model.save_weights(temporary)


def save_model(model, path):
    """`model.save(path)` (a .keras file) whole or not at all, refused before writing where it would not fit."""
    check_free_space(path, weights_bytes(model))
    with atomic_path(path) as temporary:
        model.save(temporary)


def nearest_existing(path):
    """`path`, or the closest of its parent folders that exists (a file, if one is in the way)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def check_output_dir(path, name):
    """ValueError unless `path` is a folder, or can be made, and is writable; `name` is how the
    caller calls it (`output_dir`, `--export-dir`), quoted in the message with the value."""
    if not str(path).strip():
        raise ValueError(f"`{name}` must name a directory. Received: {name}={str(path)!r}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"`{name}` exists and is not a directory. Received: {name}={str(path)!r}")
    existing = nearest_existing(path)
    if not os.path.isdir(existing):
        raise ValueError(f"`{name}` lies under {existing!r}, which is a file, not a directory. "
                         f"Received: {name}={str(path)!r}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"`{name}` is not writable ({existing!r}: permission denied). Received: {name}={str(path)!r}")


def write_json(path, value):
    """Writes `value` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True)
            f.write("\n")


@contextlib.contextmanager
def exclusive_folder(folder):
    """Holds an exclusive lock on `folder` for the block, or raises FolderInUseError at once if
    another process holds it: two training runs writing into one output directory would overwrite
    each other's checkpoints. The lock (flock on `folder/.lock`) dies with its process, however
    that ends, so a killed run leaves nothing stale behind.

    A missing `folder` is made (so that a new folder too has one owner from the start). If the
    block fails having written nothing into the folder, the lock file, and the folders made for
    it, are removed again.
    """
    made, lock = missing_folders(folder), os.path.join(folder, LOCK_FILE)
    try:
        os.makedirs(folder, exist_ok=True)
        created = not os.path.exists(lock)
        descriptor = _lock_folder(folder, lock) if fcntl else None
    except OSError as err:
        raise _write_error(lock, err) from None
    try:
        yield
    except BaseException:
        if descriptor is not None and (made or created) and os.listdir(folder) == [LOCK_FILE]:
            os.remove(lock)  # while still held: whoever opens it next makes a new one
            for path in made:
                with contextlib.suppress(OSError):
                    os.rmdir(path)
        raise
    finally:
        if descriptor is not None:
            os.close(descriptor)  # releases the lock


def _lock_folder(folder, lock):
    """The descriptor of `lock`, exclusively locked; FolderInUseError if another process holds it."""
    while True:
        os.makedirs(folder, exist_ok=True)
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise FolderInUseError(f"{folder} is in use by another training run (it holds {lock}): stop that "
                                   "run, or use another output directory.") from None
        try:
            if os.path.samestat(os.fstat(descriptor), os.stat(lock)):
                return descriptor
        except FileNotFoundError:
            pass
        # A run that failed removed the file (and perhaps the folder) after this process opened
        # it: the lock taken is on a file no longer there. Lock the file that is there now.
        os.close(descriptor)


def missing_folders(path):
    """The folders `os.makedirs(path)` would make, deepest first."""
    missing, path = [], os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing
