"""`import keras_draw`: Keras loads a run's model after it, and it stays light."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow_datasets", "tensorflow_probability")


def run_python(code, *args):
    """`code` in a fresh interpreter that imports this checkout's keras_draw; its last stdout line as JSON."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


LOAD = """
import json, sys
{imports}
model = keras.saving.load_model(sys.argv[1])
print(json.dumps({{"class": type(model).__module__ + "." + type(model).__name__, "num_steps": model.num_steps,
                  "images": model.generate(2, seed=1).shape.as_list(),
                  "heavy": [m for m in {heavy} if m in sys.modules]}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("imports", ["import keras, keras_draw", "import keras_draw, keras",
                                     "import keras_draw, tensorflow, keras",  # TensorFlow imports keras itself
                                     "import keras_draw\nimport keras_draw.console\nimport keras"])
def test_keras_loads_a_runs_model_after_importing_the_package_in_either_order(imports, tiny_run):
    loaded = run_python(LOAD.format(imports=imports, heavy=HEAVY), tiny_run / "model.keras")
    assert loaded == {"class": "keras_draw.draw.Draw", "num_steps": 3, "images": [2, 28, 28, 1], "heavy": []}


@pytest.mark.slow
def test_without_keras_the_package_registers_nothing_and_imports_no_tensorflow():
    code = ("import json, sys, keras_draw, keras_draw.console, keras_draw.images, keras_draw.malloc; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'keras_draw.draw', 'tensorflow_datasets', 'tensorflow_probability'))))")
    assert run_python(code) == []


@pytest.mark.slow
def test_every_saved_class_is_registered_once_keras_is_imported():
    code = ("import json, keras_draw, keras; from keras_draw import layers; "
            "names = ['Draw', 'DrawClassifier', *layers.__all__]; names.remove('unpack_window'); "
            "print(json.dumps({n: keras.saving.get_registered_object('keras_draw>' + n) is not None for n in names}))")
    registered = run_python(code)
    assert registered == dict.fromkeys(["Draw", "DrawClassifier", "AttentionWindow", "AttentiveRead", "AttentiveWrite",
                                        "GaussianLatent", "Read", "Write"], True)


@pytest.mark.slow
@pytest.mark.parametrize("first", ["keras_draw.filterbank", "keras_draw.layers.attention_window", "keras_draw.losses"])
def test_a_module_that_the_saved_classes_import_can_be_imported_first(first):
    # Such a module imports keras, whose loading registers the classes, which import the module
    # itself: the registration waits until it has run to its end.
    code = (f"import json, {first}, keras; "
            "print(json.dumps([keras.saving.get_registered_object('keras_draw>' + n) is not None "
            "for n in ('Draw', 'DrawClassifier', 'AttentiveRead')]))")
    assert run_python(code) == [True, True, True]


# The modules run as commands (`python -m keras_draw.NAME`).
COMMANDS = sorted(f"keras_draw.{path.stem}" for path in (ROOT / "keras_draw").glob("*.py")
                  if 'if __name__ == "__main__":' in path.read_text())


@pytest.mark.slow
def test_importing_the_package_imports_no_command_even_after_keras():
    """runpy warns ("found in sys.modules after import of package 'keras_draw'") and runs a second
    copy of a command whose module the package's import brought in: the registration that runs
    once keras is imported must not reach one."""
    assert {"keras_draw.evaluate", "keras_draw.visualize"} <= set(COMMANDS)
    code = f"import json, sys, keras, keras_draw; print(json.dumps([m for m in {COMMANDS} if m in sys.modules]))"
    assert run_python(code) == []


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_run_with_dash_m_prints_no_runpy_warning(command):
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", command, "--help"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT, env=environment)
    assert result.returncode == 0 and result.stderr == "" and result.stdout.startswith("usage:")
