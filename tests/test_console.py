"""keras_draw.console: TensorFlow's native start-up lines silenced, and replayed on a failure."""

import os
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
