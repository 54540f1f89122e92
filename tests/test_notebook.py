"""examples/quickstart.ipynb runs from top to bottom, as a user's notebook, and shows its pictures.

The notebook's one cell tagged "parameters" (papermill's convention) holds its configuration; the
test runs it with that cell replaced by a small configuration, and checks that the stored outputs
are those of a run at the notebook's own.
"""

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


def small_parameters(data_dir):
    return (f"PRESET = 'tiny'\nEPOCHS = 1\nBATCH_SIZE = 50\nLEARNING_RATE = 3e-3\nSTEPS_PER_EPOCH = 3\n"
            f"TEST_BATCHES = 1\nDATA_DIR = {data_dir!r}\nSEED = 0")


def parameters_cell(notebook):
    cells = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(cells) == 1, "the notebook has one cell tagged 'parameters'"
    return cells[0]


def code_outputs(notebook):
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def text_of(outputs):
    return "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in outputs)


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
def test_quickstart_notebook_runs_with_a_small_configuration(this_python_kernel, mnist_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the notebook's logs and pictures go
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters_cell(notebook).source = small_parameters(mnist_data_dir)
    client = nbclient.NotebookClient(notebook, kernel_name=this_python_kernel, timeout=600,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    outputs = code_outputs(notebook)
    shown = [mime for output in outputs for mime in output.get("data", {})]
    assert shown.count("image/png") >= 2 and shown.count("image/gif") == 2  # the run's drawing, the paper network's
    text = text_of(outputs)
    assert "3/3 - " in text and "val_loss" in text  # fit: 3 steps of the small configuration, and validation
    assert "negative ELBO" in text and "-log p(x) <=" in text and ": 50 images" in text
    assert not [output for output in outputs if output.output_type == "error"]
    events = list(tmp_path.glob("draw_logs_*/samples/events.out.tfevents.*"))  # SampleGrid's TensorBoard images
    assert len(events) == 1 and events[0].stat().st_size > 0


def test_the_cells_are_a_users_and_the_stored_outputs_those_of_its_own_configuration():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    for plumbing in ("KERAS_DRAW", "console", "QUICK", "keras_draw.train("):
        assert plumbing not in source, plumbing
    for step in ("Draw.from_preset(", "datasets.load(", "model.compile(", "model.fit(", "keras.callbacks.TensorBoard(",
                 "SampleGrid(", "model.evaluate(", "model.generate(", 'Draw.from_preset("mnist", weights="binarized_mnist")'):
        assert step in source, step
    assert "PRESET = \"demo\"\nEPOCHS = 4\nBATCH_SIZE = 200" in parameters_cell(notebook).source
    outputs = code_outputs(notebook)
    text = text_of(outputs)
    assert "Epoch 4/4" in text and "250/250 - " in text, "stored outputs of a run at the notebook's configuration"
    assert ": 1000 images" in text  # TEST_BATCHES = 5 batches of 200
    assert not [output for output in outputs if output.output_type == "error"]
    shown = [mime for output in outputs for mime in output.get("data", {})]
    assert shown.count("image/png") >= 2 and shown.count("image/gif") == 2
    counts = [cell.execution_count for cell in notebook.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), "run once, top to bottom"
