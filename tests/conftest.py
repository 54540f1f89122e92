"""Shared test fixtures: offline tfds data dirs, and the `slow` marker of the suite's slow tier."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import contextlib  # noqa: E402
import fcntl  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]  # the repository
# The scripts that tests run in fresh processes (export/*.py, benchmarks/) import keras_draw as an
# installed package (`pip install -e .`): this checkout's, whichever other one is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
# The original binarized MNIST files; CI runs in a fresh clone with shared/ beside it.
BINARIZED_MNIST_FILES = ROOT.parent / "shared" / "data" / "binarized_mnist"


def load_train_script():
    """train.py as a module (it is a script, not part of the package), to call its main()."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_configure(config):
    # `python -m pytest` runs everything (CI); `python -m pytest -m "not slow"` is the fast tier.
    config.addinivalue_line("markers", "slow: subprocess, notebook, distribution or end-to-end test")


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state (Python, numpy, TensorFlow, Keras): a model's
    initial weights are drawn from it wherever a test does not seed them itself."""
    import keras

    keras.utils.set_random_seed(0)


def shared_folder(tmp_path_factory, name, make):
    """A folder that `make(folder)` fills once per test run, shared by pytest-xdist's workers
    (the first to ask makes it, under a file lock; the others wait, then read it), with the JSON
    value `make` returned."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/, common to this run's workers (popen-gw0/, popen-gw1/, ...)
    folder, done = base / name, base / f"{name}.json"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the worker dies
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that died half-way left
            folder.mkdir()
            done.write_text(json.dumps(make(folder)))
    return folder, json.loads(done.read_text())


def _build(name, **kwargs):
    """make() for `shared_folder`: tfds builds `name` into the folder; returns what it printed."""
    def make(data_dir):
        from keras_draw import datasets

        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            datasets.load(name, data_dir=data_dir, **kwargs)
        return [stdout.getvalue(), stderr.getvalue()]
    return make


@pytest.fixture(scope="session")
def mnist_build(tmp_path_factory):
    """`mnist` built once per test run from the bundled files into a fresh tfds data dir, and
    what the build printed: (data_dir, stdout, stderr)."""
    data_dir, (stdout, stderr) = shared_folder(tmp_path_factory, "tfds_mnist", _build("mnist"))
    return str(data_dir), stdout, stderr


@pytest.fixture(scope="session")
def mnist_data_dir(mnist_build):
    """A tfds data dir holding `mnist`, built once per test run from the bundled files."""
    return mnist_build[0]


# `cluttered_mnist` cut to a few hundred digits per split, for tests: the whole data set takes
# minutes to build.
SMALL_CLUTTERED_SPLITS = {"train": ("train", 0, 300), "validation": ("train", 50_000, 50_100), "test": ("test", 0, 100)}


def build_small_cluttered_mnist(data_dir):
    """tfds builds `cluttered_mnist` into `data_dir` from `SMALL_CLUTTERED_SPLITS`'s digits only."""
    from keras_draw.builders import mnist_digits

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mnist_digits, "SPLITS", SMALL_CLUTTERED_SPLITS)
        return _build("cluttered_mnist")(data_dir)


@pytest.fixture(scope="session")
def cluttered_mnist_data_dir(tmp_path_factory):
    """A tfds data dir holding a small `cluttered_mnist` (`SMALL_CLUTTERED_SPLITS`), built once per test run."""
    return str(shared_folder(tmp_path_factory, "tfds_cluttered_mnist", build_small_cluttered_mnist)[0])


@pytest.fixture(scope="session")
def binarized_mnist_files():
    """The folder of the original binarized MNIST .amat files; skips the test without it."""
    if not BINARIZED_MNIST_FILES.is_dir():
        pytest.skip(f"binarized MNIST files not found in {BINARIZED_MNIST_FILES}")
    return BINARIZED_MNIST_FILES


@pytest.fixture(scope="session")
def binarized_mnist_data_dir(tmp_path_factory, binarized_mnist_files):
    """A tfds data dir holding `binarized_mnist`, built once per test run from shared/data (~20 s)."""
    make = _build("binarized_mnist", manual_dir=binarized_mnist_files)
    return str(shared_folder(tmp_path_factory, "tfds_binarized_mnist", make)[0])


# The options of `tiny_run`: two epochs of one step each, without XLA (the fastest start).
TINY_RUN = dict(preset="tiny", epochs=2, steps_per_epoch=1, jit_compile="off", seed=0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, mnist_data_dir):
    """A finished `keras_draw.train` run of `TINY_RUN` (on the bundled MNIST), made once per test
    run: tests that need a run's files or checkpoint copy it with `copy_run`."""
    def make(folder):
        from keras_draw.training import train

        train(**TINY_RUN, data_dir=mnist_data_dir, output_dir=str(folder / "run"), verbose=0)

    return shared_folder(tmp_path_factory, "tiny_run", make)[0] / "run"


@pytest.fixture
def copy_run(tiny_run, tmp_path):
    """A fresh copy of `tiny_run` in this test's tmp_path, to change or damage."""
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def export_saved_model(model, folder):
    """`model` saved as FOLDER/model.keras and exported by export/export.py into FOLDER/draw, as a
    user runs it; returns (the version's path, the lines export.py printed)."""
    from export import export as export_cli

    model.save(folder / "model.keras")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = export_cli.main(["--model", str(folder / "model.keras"), "--model-base-path", str(folder / "draw")])
    assert status == 0
    return str(folder / "draw" / "1"), printed.getvalue().splitlines()
