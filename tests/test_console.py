"""keras_draw.console: TensorFlow's native start-up lines silenced, and replayed on a failure."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from keras_draw import console

ROOT = Path(__file__).resolve().parents[1]


def test_native_writes_to_stderr_are_silenced(capfd):
    with console.native_stderr_to_file():
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_native_writes_are_replayed_when_the_block_fails(capfd):
    with pytest.raises(RuntimeError, match="start failed"):
        with console.native_stderr_to_file():
            os.write(2, b"the native reason\n")
            raise RuntimeError("start failed")
    assert capfd.readouterr().err == "the native reason\n"


def test_fail_prints_one_line_and_returns_the_status(capsys):
    assert console.fail("train.py", ValueError("bad value"), status=2) == 2
    assert capsys.readouterr().err == "train.py: error: bad value\n"


def run_python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", console.TF_LOGS_VARIABLE)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**environment, **env})


START = "from keras_draw import console; console.start_tensorflow(); import tensorflow as tf; print(tf.constant(2.0) * 3)"


@pytest.mark.slow
def test_tensorflow_starts_without_native_lines():
    # On this CPU-only machine TensorFlow's start prints absl's "All log messages before
    # absl::InitializeLog()", cudart's "Could not find cuda drivers" and cuInit's "ERROR".
    result = run_python(START)
    assert result.returncode == 0, result.stderr
    assert "6.0" in result.stdout
    assert result.stderr == ""


@pytest.mark.slow
def test_tensorflow_logs_come_back_on_request():
    # The same start as above, whose stderr is empty, with the variable set.
    loud = run_python(START, **{console.TF_LOGS_VARIABLE: "1"})
    assert loud.returncode == 0, loud.stderr
    assert loud.stderr.strip(), "KERAS_DRAW_TF_LOGS=1 printed nothing: did TensorFlow stop logging at start?"


@pytest.mark.slow
def test_importing_the_package_imports_no_tensorflow():
    result = run_python("import sys, keras_draw, keras_draw.console; print('tensorflow' in sys.modules)")
    assert result.stdout.strip() == "False", result.stderr


def test_a_stop_is_one_line_and_the_shells_status(capsys):
    assert console.stopped("evaluate", KeyboardInterrupt(), "nothing was written") == 130
    assert console.stopped("export.py", console.Terminated()) == 143
    assert capsys.readouterr().err == "evaluate: interrupted; nothing was written.\nexport.py: terminated (SIGTERM).\n"
    assert not issubclass(console.Terminated, Exception)  # no `except Exception` takes it for a failure


# A command run with one of its functions replaced by a wait at a known point: "start", while
# TensorFlow starts (before any `main` catches a stop), or "work", in the middle of its work.
WAIT = """
import runpy, sys, time
from keras_draw import console
def wait(*args, **kwargs):
    print("waiting", flush=True)
    time.sleep(120)
command, phase, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if phase == "start":
    console.start_tensorflow = wait
else:  # the data set's loading
    console.start_tensorflow()
    from keras_draw import datasets
    datasets.load = wait
sys.argv = [command, *argv]
if command == "train.py":
    runpy.run_path(command, run_name="__main__")
else:
    runpy.run_module(f"keras_draw.{command}", run_name="__main__", alter_sys=True)
"""

STOPPED = {
    ("train.py", "start"): [],
    ("evaluate", "start"): ["--model", "MODEL", "--dataset", "mnist"],
    ("visualize", "start"): ["--model", "MODEL"],
    ("evaluate", "work"): ["--model", "MODEL", "--dataset", "mnist", "--max-images", "3"],
}


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("command, phase", list(STOPPED))
def test_a_command_stopped_anywhere_prints_one_line_and_writes_nothing(command, phase, stop, tmp_path, tiny_run,
                                                                       mnist_data_dir):
    shutil.copy(tiny_run / "model.keras", tmp_path)
    argv = [str(tmp_path / "model.keras") if a == "MODEL" else a for a in STOPPED[(command, phase)]]
    if command == "train.py":
        argv = ["--preset", "tiny", "--data-dir", mnist_data_dir, "--output-dir", str(tmp_path / "run")]
    environment = {**os.environ, "KERAS_DRAW_MALLOC": "system"}  # no re-run of train.py with TCMalloc
    process = subprocess.Popen([sys.executable, "-c", WAIT, command, phase, *argv], cwd=ROOT, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout.readline().strip() == "waiting"
    process.send_signal(stop)
    stderr = process.communicate(timeout=120)[1]
    said = "interrupted" if stop == signal.SIGINT else "terminated (SIGTERM)"
    assert process.returncode == 128 + stop
    assert len(stderr.splitlines()) == 1 and stderr.startswith(f"{command}: {said}"), stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
