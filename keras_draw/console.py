"""What the commands print: TensorFlow started without its C++ start-up lines, one way to fail,
and one way to stop (Ctrl-C or SIGTERM: one line, exit status 130 or 143).

TensorFlow's native side writes to file descriptor 2 while it loads and while it first looks for
devices (absl's "All log messages before absl::InitializeLog()", "Could not find cuda drivers",
and, on a machine without a GPU, "failed call to cuInit ... ERROR", which reads as a failure).
`TF_CPP_MIN_LOG_LEVEL` no longer silences them, so a command starts TensorFlow with file
descriptor 2 pointed at a temporary file (`start_tensorflow`), and replays that file if the start
fails. `KERAS_DRAW_TF_LOGS=1` keeps TensorFlow's logs, all of them.

This module imports nothing heavy: commands call it before TensorFlow is imported.
"""

import argparse
import contextlib
import numbers
import os
import signal
import sys
import tempfile

TF_LOGS_VARIABLE = "KERAS_DRAW_TF_LOGS"


def tensorflow_logs_wanted():
    return os.environ.get(TF_LOGS_VARIABLE, "") not in ("", "0")


@contextlib.contextmanager
def native_stderr_to_file():
    """File descriptor 2 into a temporary file for the block; its text replayed on an error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except Exception:  # not on Ctrl-C or SIGTERM, which print one line of their own
            os.dup2(saved, 2)
            captured.seek(0)
            os.write(2, captured.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def start_tensorflow():
    """Imports TensorFlow and lists its devices, with its native start-up lines silenced.

    Listing the physical devices runs the CUDA probe now, inside the silence; it leaves the
    devices configurable (`tf.config.set_visible_devices`, memory growth) as before.
    """
    if tensorflow_logs_wanted():
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # later C++ INFO and WARNING lines
    with native_stderr_to_file():
        import tensorflow as tf

        tf.config.list_physical_devices()


def one_line(message):
    """A (TensorFlow) error message as one line, without its graph-node references."""
    skipped = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[")
    lines = [line.strip() for line in str(message).splitlines()]
    kept = [line for line in lines if line and not line.startswith(skipped)]
    return " ".join(kept or [line for line in lines if line][:1])


def fail(program, err, status=2):
    """The one way a command fails: `program: error: message` in one line on stderr, and the
    exit status it returns: 2 for bad input (a flag, a file, a request), 1 for a failure of the run."""
    print(f"{program}: error: {one_line(err)}", file=sys.stderr)
    return status


def check_positive_flags(**flags):
    """ValueError, naming the flag as it is typed, for any value that is not a positive integer;
    None passes (an option left at "the default"), and any integer type (numpy's too; not bool).
    `check_positive_flags(max_images=0)` says "--max-images must be a positive integer. Received:
    --max-images=0"."""
    for name, value in flags.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0):
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be a positive integer. Received: {flag}={value!r}")


VERBOSE_CHOICES = ("auto", "0", "1", "2")


def progress_verbosity(verbose):
    """Keras's `verbose` (0 silent, 1 a progress bar, 2 one line per epoch or pass) for `--verbose`:
    "auto" is a bar where it redraws in place (a terminal, a notebook), else one line."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() or "ipykernel" in sys.modules else 2
    return int(verbose)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, failing as every command fails (`fail`): one line, exit status 2, where
    argparse prints its usage first. Flags are taken whole, never abbreviated: `--out` is no
    longer `--output-dir`, and one flag cannot shadow another."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")
class Terminated(BaseException):
    """SIGTERM, raised as an exception (`catch_stops`), so that a command unwinds as on Ctrl-C: its
    `finally` blocks remove what was half-written. A BaseException, as KeyboardInterrupt is, so
    that no `except Exception` takes it for a failure of what it interrupted."""


# What stops a command: Ctrl-C and SIGTERM.
STOPS = (KeyboardInterrupt, Terminated)


def raise_terminated(signum, frame):
    """A SIGTERM handler: raises `Terminated` where the program is."""
    raise Terminated()


def stopped(program, stop, outcome=None):
    """The one way a command stops on Ctrl-C or SIGTERM (`stop`, one of `STOPS`): `program:
    interrupted; outcome.` in one line on stderr, and the exit status it returns, 128 + the
    signal's number (130, 143: the shell's convention). `outcome` says what is kept."""
    terminated = isinstance(stop, Terminated)
    what = "terminated (SIGTERM)" if terminated else "interrupted"
    print(f"{program}: {what}{f'; {outcome}' if outcome else ''}.", file=sys.stderr)
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


def catch_stops(program):
    """For a command's process, first thing: SIGTERM raises `Terminated` from here on, and a
    Ctrl-C or SIGTERM that its `main` does not catch (while modules import, say) ends the process
    with `stopped`'s one line and status instead of a traceback.

    A command's `main` catches `STOPS` itself, to say what it keeps:
        except console.STOPS as stop:
            return console.stopped("export.py", stop, "no version was written")
    """
    signal.signal(signal.SIGTERM, raise_terminated)
    previous = sys.excepthook

    def excepthook(kind, value, traceback):
        if not issubclass(kind, STOPS):
            return previous(kind, value, traceback)
        status = stopped(program, value)
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(status)  # after this hook the interpreter would exit with status 1 (the stack has unwound)

    sys.excepthook = excepthook
