"""TCMalloc under `train.py`: the same training, with fewer page faults, in less time.

With glibc's malloc, every XLA call of a training step on a CPU takes its large buffers from
the kernel as fresh pages and gives them back afterwards: about 6,000 page faults per step at
the `mnist` preset. TCMalloc keeps the freed memory for the next call, so training runs faster
with a peak no higher (docs/speed.md has the measurements). The numbers computed are the same:
only where buffers live changes.

A library cannot switch allocators inside a running process, so `train.py` re-runs itself with
TCMalloc preloaded (`LD_PRELOAD`) when the machine has it (`apt install libtcmalloc-minimal4` on
Debian and Ubuntu), before it imports TensorFlow. `KERAS_DRAW_MALLOC=system` keeps the system's
malloc; `KERAS_DRAW_MALLOC=/path/to/lib.so` preloads that library instead (jemalloc, say).

This module imports nothing heavy: `train.py` calls it first.
"""

import os
import sys

VARIABLE = "KERAS_DRAW_MALLOC"

# Where Linux distributions install gperftools' TCMalloc (the "minimal" library, without the
# heap profiler): Debian and Ubuntu on x86-64 and ARM, then Fedora and Arch.
TCMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)


def preload(environ, candidates=TCMALLOC_PATHS, platform=sys.platform):
    """The environment to re-run this process in with an allocator preloaded, or None to run as is.

    None off Linux, with `KERAS_DRAW_MALLOC=system`, when no candidate library exists, or when
    the library is already in `LD_PRELOAD` (so the re-run does not re-run again).
    ValueError for a `KERAS_DRAW_MALLOC` that names no file.
    """
    choice = environ.get(VARIABLE, "")
    if choice == "system" or not platform.startswith("linux"):
        return None
    if choice:
        if not os.path.isfile(choice):
            raise ValueError(f"{VARIABLE} must be 'system' or the path of a malloc library. "
                             f"Received: {VARIABLE}={choice!r}, which is no file")
        library = choice
    else:
        library = next((path for path in candidates if os.path.isfile(path)), None)
    preloaded = [path for path in environ.get("LD_PRELOAD", "").split(":") if path]
    if library is None or library in preloaded:
        return None
    return {**environ, "LD_PRELOAD": ":".join([library, *preloaded])}


def rerun_preloaded():
    """Replaces this process by the same command with `preload`'s environment, if it gives one."""
    environ = preload(os.environ)
    if environ is not None:
        sys.stdout.flush(), sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, environ)


def active():
    """The malloc library this process preloaded ('system' for none), from `LD_PRELOAD`."""
    preloaded = [path for path in os.environ.get("LD_PRELOAD", "").split(":") if "malloc" in os.path.basename(path)]
    return preloaded[0] if preloaded else "system"
