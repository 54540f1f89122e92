"""Shared test fixtures: offline tfds data dirs, and the `slow` marker of the suite's slow tier."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import contextlib  # noqa: E402
import io  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# The original binarized MNIST files; CI runs in a fresh clone with shared/ beside it.
BINARIZED_MNIST_FILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist"


def pytest_configure(config):
    # `python -m pytest` runs everything (CI); `python -m pytest -m "not slow"` is the fast tier.
    config.addinivalue_line("markers", "slow: subprocess, notebook, distribution or end-to-end test")


@pytest.fixture(scope="session")
def mnist_build(tmp_path_factory):
    """`mnist` built once per session from the bundled files into a fresh tfds data dir, and what
    the build printed: (data_dir, stdout, stderr)."""
    from keras_draw import datasets

    data_dir = tmp_path_factory.mktemp("tfds_mnist")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        datasets.load("mnist", data_dir=data_dir)
    return str(data_dir), stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="session")
def mnist_data_dir(mnist_build):
    """A tfds data dir holding `mnist`, built once per session from the bundled files."""
    return mnist_build[0]


@pytest.fixture(scope="session")
def binarized_mnist_files():
    """The folder of the original binarized MNIST .amat files; skips the test without it."""
    if not BINARIZED_MNIST_FILES.is_dir():
        pytest.skip(f"binarized MNIST files not found in {BINARIZED_MNIST_FILES}")
    return BINARIZED_MNIST_FILES


@pytest.fixture(scope="session")
def binarized_mnist_data_dir(tmp_path_factory, binarized_mnist_files):
    """A tfds data dir holding `binarized_mnist`, built once from shared/data (~20 s)."""
    from keras_draw import datasets

    data_dir = tmp_path_factory.mktemp("tfds_binarized_mnist")
    datasets.load("binarized_mnist", data_dir=data_dir, manual_dir=binarized_mnist_files)
    return str(data_dir)


# The options of `tiny_run`: two epochs of one step each, without XLA (the fastest start).
TINY_RUN = dict(preset="tiny", epochs=2, steps_per_epoch=1, jit_compile="off", seed=0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, mnist_data_dir):
    """A finished `keras_draw.train` run of `TINY_RUN` (on the bundled MNIST), made once per
    session: tests that need a run's files or checkpoint copy it with `copy_run`."""
    from keras_draw.training import train

    output_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    train(**TINY_RUN, data_dir=mnist_data_dir, output_dir=str(output_dir), verbose=0)
    return output_dir


@pytest.fixture
def copy_run(tiny_run, tmp_path):
    """A fresh copy of `tiny_run` in this test's tmp_path, to change or damage."""
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "run"))
