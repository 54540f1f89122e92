"""Shared test fixtures: offline tfds data dirs, and the `slow` marker (`--runslow` runs them)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# The original binarized MNIST files; CI runs in a fresh clone with shared/ beside it.
BINARIZED_MNIST_FILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slow test, skipped unless --runslow is given")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: needs --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory):
    """A tfds data dir holding `mnist`, built once per session from the bundled files."""
    from keras_draw import datasets

    data_dir = tmp_path_factory.mktemp("tfds_mnist")
    datasets.load("mnist", data_dir=data_dir)
    return str(data_dir)


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
