"""examples/quickstart.ipynb runs from top to bottom and shows its pictures."""

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPOSITORY = Path(__file__).resolve().parents[1]
NOTEBOOK = REPOSITORY / "examples" / "quickstart.ipynb"


@pytest.fixture
def this_python_kernel(tmp_path, monkeypatch):
    """A Jupyter kernel spec that runs this interpreter, whatever `python` is on the PATH."""
    kernels = tmp_path / "jupyter" / "kernels" / "keras-draw-test"
    kernels.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "keras_draw test",
        "language": "python",
    }
    (kernels / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "keras-draw-test"


@pytest.mark.slow
def test_quickstart_notebook_runs(this_python_kernel, mnist_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_DRAW_DATA_DIR", mnist_data_dir)
    monkeypatch.setenv("KERAS_DRAW_NOTEBOOK_QUICK", "1")  # the tiny preset, a few steps
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the notebook's pictures go
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=this_python_kernel,
        timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    shown = {mime for output in outputs for mime in output.get("data", {})}
    assert {"image/png", "image/gif"} <= shown  # the run's pictures, the paper network's animation
    text = "".join(output.get("text", "") for output in outputs)
    assert "negative ELBO" in text and "-log p(x) <=" in text
    for noise in ("absl::InitializeLog", "cudart_stub", "cuInit"):  # TensorFlow started quietly
        assert noise not in text, noise


def test_stored_outputs_are_those_of_a_demo_run():
    # As committed, the notebook holds the outputs of a run with train.py's defaults, not the quick run.
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    text = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.outputs)
    assert "Epoch 1/" in text and "negative ELBO" in text, "the notebook was committed without its outputs"
    assert ": 500 images" in text  # the full run evaluates 500 test images, the quick one 100
    assert "cuInit" not in text and "absl::InitializeLog" not in text
    shown = [mime for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
             for mime in output.get("data", {})]
    assert shown.count("image/png") >= 3 and "image/gif" in shown
