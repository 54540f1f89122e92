"""The SavedModel for TensorFlow Serving, run the way TF Serving runs it.

TF Serving's binary cannot be installed here; its loader can: `ServingSession`
(keras_draw/serving/session.py) is TensorFlow's C API from the wheel, `TF_LoadSessionFromSavedModel`
(the C++ `LoadSavedModel` of TF Serving's SavedModelBundle: a session, the variables restored
through the saver_def, the main op run) and `TF_SessionRun` feeding each input by name, whatever
its shape, as TF Serving's Predict does. Through it, every signature of a tiny model, of every
preset and of the shipped paper weights computes what the Python model computes, and every bad
request fails with InvalidArgument naming the input. `saved_model_cli` (the user's command) lists
the documented signatures with their declared shapes and runs one; a fresh process that cannot
import Keras, TFP or keras_draw runs every signature; every op is a registered stock op.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import export_saved_model
from export import export as export_cli
from keras_draw import Draw, pretrained, serving
from keras_draw.filterbank import filter_centres
from keras_draw.images import window_box
from keras_draw.presets import PRESETS
from keras_draw.serving.session import ServingSession, SessionError

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(5)
T, Z = 3, 4  # the tiny preset's num_steps and latent_dim

# What export/README.md documents, at the tiny preset: signature → ({input: (dtype, shape)}, {output: shape}).
SEQUENCE_OUTPUTS = {"canvases": "(-1, 3, 28, 28, 1)", "write_window": "(-1, 3, 5)", "write_box": "(-1, 3, 4)"}
READ_OUTPUTS = {"read_window": "(-1, 3, 5)", "read_box": "(-1, 3, 4)"}
ELBO_OUTPUTS = {"loss": "(-1)", "reconstruction_loss": "(-1)", "kl_loss": "(-1)"}
NOISE, SEED, IMAGES = ("DT_FLOAT", "(-1, 3, 4)"), ("DT_INT64", "(-1)"), ("DT_FLOAT", "(-1, 28, 28, 1)")
DOCUMENTED = {
    "serving_default": ({"noise": NOISE}, {"images": "(-1, 28, 28, 1)"}),
    "generate": ({"noise": NOISE}, {"images": "(-1, 28, 28, 1)"}),
    "generate_seeded": ({"seed": SEED}, {"images": "(-1, 28, 28, 1)"}),
    "draw": ({"noise": NOISE}, {"images": "(-1, 28, 28, 1)", **SEQUENCE_OUTPUTS}),
    "draw_seeded": ({"seed": SEED}, {"images": "(-1, 28, 28, 1)", **SEQUENCE_OUTPUTS}),
    "reconstruct": ({"images": IMAGES, "noise": NOISE},
                    {"reconstructions": "(-1, 28, 28, 1)", **SEQUENCE_OUTPUTS, **READ_OUTPUTS}),
    "reconstruct_seeded": ({"images": IMAGES, "seed": SEED},
                           {"reconstructions": "(-1, 28, 28, 1)", **SEQUENCE_OUTPUTS, **READ_OUTPUTS}),
    "elbo": ({"images": IMAGES, "noise": NOISE}, ELBO_OUTPUTS),
    "elbo_seeded": ({"images": IMAGES, "seed": SEED}, ELBO_OUTPUTS),
}

# Run in a fresh process that cannot import Keras, TFP or keras_draw: checks every op of the
# graph and its function library, runs every signature through TF Serving's loader (the C API)
# and through TensorFlow 2's `tf.saved_model.load`, saves the outputs.
TENSORFLOW_ONLY = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
for name in ("keras", "tf_keras", "tensorflow_probability", "keras_draw"):
    sys.modules[name] = None  # importing any of them now raises ImportError
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
import importlib.util
# The loader's module alone, by its path: keras_draw cannot be imported here, and the module needs
# nothing of it.
spec = importlib.util.spec_from_file_location("session", "keras_draw/serving/session.py")
session_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(session_module)
ServingSession = session_module.ServingSession

path, inputs_file, outputs_file = sys.argv[1:]
saved_model = saved_model_pb2.SavedModel()
with open(os.path.join(path, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
ops, functions = set(), set()
for meta_graph in saved_model.meta_graphs:
    ops |= {node.op for node in meta_graph.graph_def.node}
    for function in meta_graph.graph_def.library.function:
        functions.add(function.signature.name)
        ops |= {node.op for node in function.node_def}
ops -= functions  # a node may call a library function by name
unregistered = sorted(op for op in ops if op_def_registry.get(op) is None)

inputs, outputs = np.load(inputs_file), {}
with ServingSession(path) as session:
    for name, signature in session.signatures.items():
        if name == "__saved_model_init_op":  # the main op, which the loader has run
            continue
        results = session.predict(name, {key: inputs[key] for key in signature.inputs})
        outputs.update({f"{name}/{key}": value for key, value in results.items()})
signatures = tf.saved_model.load(path).signatures
for name, function in signatures.items():
    results = function(**{key: tf.constant(inputs[key]) for key in function.structured_input_signature[1]})
    outputs.update({f"tf2/{name}/{key}": value.numpy() for key, value in results.items()})
np.savez(outputs_file, **outputs)
print(json.dumps({"ops": sorted(ops), "unregistered": unregistered, "signatures": sorted(signatures),
                  "imported": [m for m in ("keras", "keras_draw", "tensorflow_probability") if sys.modules.get(m)]}))
"""


def binary_images(count, shape=(28, 28, 1)):
    return (RNG.random((count, *shape)) > 0.5).astype(np.float32)


def seed_noise(seeds, num_steps=T, latent_dim=Z):
    """The documented noise of the seeded signatures: stateless_normal((T, |z|), [seed, 0])."""
    return np.stack([tf.random.stateless_normal((num_steps, latent_dim), seed=[int(s), 0]) for s in seeds])


def saved_model_cli():
    """The `saved_model_cli` command installed with this Python's TensorFlow."""
    script = Path(sys.executable).parent / "saved_model_cli"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def random_weights(model):
    """Sets every weight to a random value, so that no term vanishes because a weight is zero."""
    for variable in model.weights:
        variable.assign(0.5 * RNG.standard_normal(variable.shape).astype(np.float32))
    return model


def boxes(window, n):
    return np.stack(window_box(np.asarray(window), n), axis=-1)


def what_the_model_computes(model, x, epsilon):
    """{signature: {output: array}} of the four passes, computed by the Python model itself."""
    generated = model.decode(epsilon, return_sequence=True)  # eqs. 13-16
    inferred = model.infer(x, epsilon, return_sequence=True)  # eqs. 3-8
    expected = {
        "generate": {"images": generated["images"]},
        "draw": {"images": generated["images"], "canvases": generated["canvases"]},
        "reconstruct": {"reconstructions": tf.sigmoid(inferred["canvas"]), "canvases": inferred["canvases"]},
        "elbo": model.negative_elbo(x, epsilon),  # eqs. 9-12
    }
    if model.attention:
        expected["draw"].update(write_window=generated["write_window"],
                                write_box=boxes(generated["write_window"], model.write_n))
        for kind, n in (("read", model.read_n), ("write", model.write_n)):
            expected["reconstruct"].update({f"{kind}_window": inferred[f"{kind}_window"],
                                            f"{kind}_box": boxes(inferred[f"{kind}_window"], n)})
    return {name: {key: np.asarray(value) for key, value in outputs.items()} for name, outputs in expected.items()}


def assert_signatures_compute_what_the_model_computes(session, model, batch=2, rtol=1e-5, atol=1e-5):
    """Every signature, through TF Serving's loader, against the Python model, for the same noise."""
    x, seeds = binary_images(batch, model.image_shape), np.arange(7, 7 + batch)
    epsilon = seed_noise(seeds, model.num_steps, model.latent_dim)
    expected = what_the_model_computes(model, x, epsilon)
    expected["serving_default"] = expected["generate"]
    names = sorted(set(session.signatures) - {"__saved_model_init_op"})
    assert names == sorted(DOCUMENTED)
    for name in names:
        base = name.removesuffix("_seeded")
        inputs = {"images": x} if base in ("reconstruct", "elbo") else {}
        inputs.update(seed=seeds) if name.endswith("_seeded") else inputs.update(noise=epsilon)
        outputs = session.predict(name, inputs)
        assert sorted(outputs) == sorted(expected[base]), name
        for key, value in expected[base].items():
            np.testing.assert_allclose(outputs[key], value, rtol=rtol, atol=atol, err_msg=f"{name}/{key}")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny DRAW with random weights, saved as .keras, exported once by export/export.py, and
    loaded as TF Serving loads it."""
    model = random_weights(Draw.from_preset("tiny", seed=0))
    folder = tmp_path_factory.mktemp("serving")
    path, printed = export_saved_model(model, folder)
    first_line, serve_line = printed
    assert first_line == path
    assert serve_line.startswith("Serve it: docker run -p 8500:8500 -p 8501:8501")
    assert f"{folder / 'draw'}:/models/draw" in serve_line and "tensorflow/serving:2.21.0" in serve_line
    with ServingSession(path) as session:
        yield SimpleNamespace(model=model, folder=folder, path=path, session=session)


@pytest.fixture(scope="module")
def fresh_processes(exported):
    """`saved_model_cli show --all` and `run`, and two TensorFlow-only processes, side by side."""
    folder = exported.folder
    inputs = {"noise": RNG.standard_normal((3, T, Z)).astype(np.float32), "images": binary_images(3),
              "seed": np.array([11, 12, 13], np.int64)}
    np.savez(folder / "inputs.npz", **inputs)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    processes = [
        subprocess.Popen([*saved_model_cli(), "show", "--all", "--dir", exported.path], **run),
        subprocess.Popen([*saved_model_cli(), "run", "--dir", exported.path, "--tag_set", "serve", "--signature_def",
                          "generate_seeded", "--input_exprs", "seed=[11,12,13]", "--outdir", str(folder / "cli"),
                          "--overwrite"], **run),
        *[subprocess.Popen([sys.executable, "-c", TENSORFLOW_ONLY, exported.path, str(folder / "inputs.npz"),
                            str(folder / f"outputs{k}.npz")], cwd=ROOT, **run) for k in range(2)],
    ]
    results = [process.communicate(timeout=300) for process in processes]
    for process, (out, err) in zip(processes, results):
        assert process.returncode == 0, err[-3000:]
    return SimpleNamespace(
        show=results[0][0], cli_images=np.load(folder / "cli" / "images.npy"), inputs=inputs,
        reports=[json.loads(out.strip().splitlines()[-1]) for out, _ in results[2:]],
        outputs=[dict(np.load(folder / f"outputs{k}.npz")) for k in range(2)])


# === The layout ===


def test_export_writes_tf_serving_layout(exported, tmp_path):
    path = Path(exported.path)
    assert path.name == "1" and (path / "saved_model.pb").is_file()
    assert (path / "variables" / "variables.index").is_file()
    assert [p.name for p in path.parent.iterdir()] == ["1"]  # no temporary folder left behind
    for name in ("1", "7", "latest", ".partial-x"):
        (tmp_path / name).mkdir()
    assert serving.next_version(tmp_path) == 8  # one more than the highest integer folder
    assert serving.next_version(tmp_path / "absent") == 1


def test_each_variable_is_saved_once_and_restored_by_the_saver_def(exported):
    """The cause of "Could not find variable draw/h_dec_0": a Keras variable tracked for export is
    saved twice, and TF Serving's loader restores only the copy (see keras_draw/serving/saved_model.py)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel.FromString((Path(exported.path) / "saved_model.pb").read_bytes())
    graph = saved_model.meta_graphs[0].graph_def
    handles = sorted(node.attr["shared_name"].s.decode() for node in graph.node if node.op == "VarHandleOp")
    assert handles == sorted(w.path for w in exported.model.weights)  # "draw/h_dec_0", ...: no "Variable_20"
    reader = tf.train.load_checkpoint(str(Path(exported.path) / "variables" / "variables"))
    stored = [key for key in reader.get_variable_to_shape_map() if key.endswith("VARIABLE_VALUE")]
    assert len(stored) == len(exported.model.weights)


def test_an_existing_version_is_never_overwritten(exported):
    before = (Path(exported.path) / "saved_model.pb").read_bytes()
    with pytest.raises(FileExistsError, match="Version 1 already exists"):
        serving.export(exported.model, exported.path.rsplit(os.sep, 1)[0], version=1)
    assert (Path(exported.path) / "saved_model.pb").read_bytes() == before
    for version in (0, -3, "2", 1.5, True):
        with pytest.raises(ValueError, match="Received: version="):
            serving.export(exported.model, exported.folder / "other", version=version)


def patch_write_out(monkeypatch, write_out):
    """Replaces ExportArchive.write_out (on the backend's class that `ExportArchive()` makes)."""
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", write_out)


def crash(archive, path, verbose):
    os.makedirs(os.path.join(path, "variables"))
    Path(path, "saved_model.pb").write_bytes(b"half")
    raise RuntimeError("killed")


def test_a_crash_while_writing_leaves_no_version(exported, tmp_path, monkeypatch):
    patch_write_out(monkeypatch, crash)
    with pytest.raises(RuntimeError, match="killed"):
        serving.export(exported.model, tmp_path / "draw")
    assert not (tmp_path / "draw").exists()  # no "1", no ".partial-*", and the folder it made is gone
    (tmp_path / "draw" / "1").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="killed"):
        serving.export(exported.model, tmp_path / "draw")
    assert os.listdir(tmp_path / "draw") == ["1"]


# === What TF Serving runs ===


def test_every_signature_runs_in_tf_servings_loader_and_computes_what_the_model_computes(exported):
    assert_signatures_compute_what_the_model_computes(exported.session, exported.model, batch=3)


def test_signatures_declare_their_shapes_with_an_open_batch(exported):
    for name, (inputs, outputs) in DOCUMENTED.items():
        signature = exported.session.signatures[name]
        declared = {key: (tf.dtypes.as_dtype(info.dtype).name, [d.size for d in info.tensor_shape.dim])
                    for key, info in signature.inputs.items()}
        assert declared == {key: ({"DT_FLOAT": "float32", "DT_INT64": "int64"}[dtype], json.loads(
            shape.replace("(", "[").replace(")", "]"))) for key, (dtype, shape) in inputs.items()}, name
        assert signature.method_name == "tensorflow/serving/predict"


def test_seeded_signatures_use_the_documented_noise_row_by_row(exported):
    predict, x = exported.session.predict, binary_images(3)
    seeds = np.array([5, 6, 7], np.int64)
    epsilon = seed_noise(seeds)
    images = predict("generate_seeded", {"seed": seeds})["images"]
    np.testing.assert_array_equal(images, predict("generate", {"noise": epsilon})["images"])
    np.testing.assert_array_equal(predict("draw_seeded", {"seed": seeds})["images"], images)
    alone = predict("generate_seeded", {"seed": seeds[1:2]})["images"]
    np.testing.assert_allclose(alone[0], images[1], atol=1e-6)  # a row does not depend on its batch
    for name in ("reconstruct", "elbo"):
        seeded = predict(f"{name}_seeded", {"images": x, "seed": seeds})
        for key, value in predict(name, {"images": x, "noise": epsilon}).items():
            np.testing.assert_array_equal(seeded[key], value, err_msg=f"{name}/{key}")
    assert not np.allclose(images[0], images[1])  # different seeds, different images


def test_boxes_span_the_first_and_last_filter_centres():
    # g_x = 14.5, g_y = 10, δ = 2, N = 3: centres x 12.5, 14.5, 16.5 and y 8, 10, 12 (1-based, eqs. 19-20)
    window = tf.constant([[[14.5, 10.0, 2.0, 1.0, 1.0]] * 3] * 2)  # (batch 2, T 3, 5)
    box = tf.stack(window_box(window, 3), axis=-1)  # in the graph, as the signatures compute it
    assert box.shape == (2, 3, 4) and box.dtype == tf.float32
    np.testing.assert_allclose(box[0, 0], [11.5, 7.0, 15.5, 11.0])  # 0-based: x_min, y_min, x_max, y_max
    np.testing.assert_array_equal(box, np.stack(window_box(window.numpy(), 3), axis=-1))  # numpy: the same


def test_exported_boxes_are_the_outermost_filter_centres_of_the_windows(exported):
    model, seeds = exported.model, np.array([1, 2], np.int64)
    drawing = exported.session.predict("draw_seeded", {"seed": seeds})
    reconstruction = exported.session.predict("reconstruct_seeded", {"images": binary_images(2), "seed": seeds})
    for outputs, kind, n in [(drawing, "write", model.write_n), (reconstruction, "write", model.write_n),
                             (reconstruction, "read", model.read_n)]:
        window = outputs[f"{kind}_window"].reshape(-1, 5)  # (batch·T, 5)
        g_x, g_y, delta = window[:, 0], window[:, 1], window[:, 2]
        mu_x, mu_y = np.asarray(filter_centres(g_x, delta, n)), np.asarray(filter_centres(g_y, delta, n))  # eqs. 19-20
        expected = np.stack([mu_x[:, 0], mu_y[:, 0], mu_x[:, -1], mu_y[:, -1]], axis=-1) - 1.0  # 0-based
        np.testing.assert_allclose(outputs[f"{kind}_box"].reshape(-1, 4), expected, rtol=1e-6, atol=1e-5)


def test_exported_elbo_agrees_with_evaluate(exported):
    """Exact agreement with the same noise is tested above; evaluate draws its own noise.

    The means then differ by noise alone: each image's loss varies with ε with some spread s,
    so the difference of two means over n images with independent noise has standard deviation
    s·√(2/n). s·√2 is estimated from two exported runs with different seeds; the tolerance is
    five of those standard deviations (plus float32 rounding).
    """
    x, n = binary_images(200), 200
    exported.model.compile(jit_compile=False)
    results = exported.model.evaluate(x, batch_size=100, return_dict=True, verbose=0)
    first = exported.session.predict("elbo_seeded", {"images": x, "seed": np.arange(n)})
    second = exported.session.predict("elbo_seeded", {"images": x, "seed": np.arange(1000, 1000 + n)})
    for key in ("loss", "reconstruction_loss", "kl_loss"):
        spread = np.std(first[key] - second[key])  # s·√2
        tolerance = 5 * spread / np.sqrt(n) + 1e-5 * abs(results[key])
        assert abs(np.mean(first[key]) - results[key]) <= tolerance, (key, results[key], np.mean(first[key]), tolerance)


def test_a_model_without_attention_exports_no_windows_and_no_boxes(tmp_path):
    model = random_weights(Draw.from_preset("tiny", seed=0, attention=False))
    with ServingSession(serving.export(model, tmp_path / "draw")) as session:
        assert_signatures_compute_what_the_model_computes(session, model)
        assert sorted(session.signatures["draw_seeded"].outputs) == ["canvases", "images"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_exports_signatures_tf_serving_runs(preset, tmp_path, capsys):
    """Each preset at its full size; the two with shipped weights (the paper's MNIST networks)
    exported by the user's command, `export.py --preset P --weights binarized_mnist`."""
    shipped = "binarized_mnist" if "binarized_mnist" in pretrained.index().get(preset, {}) else None
    if shipped:
        assert export_cli.main(["--preset", preset, "--weights", shipped, "--model-base-path", str(tmp_path)]) == 0
        model = Draw.from_preset(preset, weights=shipped)
    else:  # Keras's initial weights: random weights this large saturate the LSTMs into chaos
        model = Draw.from_preset(preset, seed=0)
        serving.export(model, tmp_path)
    with ServingSession(tmp_path / "1") as session:
        # T = 64 steps accumulate float32 rounding differences (Grappler's rewrites, oneDNN).
        assert_signatures_compute_what_the_model_computes(session, model, rtol=1e-4, atol=1e-4)


# === Bad requests, through TF Serving's loader ===


def zeros(*shape, value=0.0):
    return np.full(shape, value, np.float32)


SEEDS = np.zeros(2, np.int64)
NOISE_SHAPE = r"noise must have shape \(batch, T, latent_dim\) = \(batch, 3, 4\)"
IMAGES_SHAPE = r"images must have shape \(batch, height, width, channels\) = \(batch, 28, 28, 1\)"
SEED_SHAPE = r"seed must have shape \(batch,\), one integer per row"
BAD_REQUESTS = [  # (signature, inputs, message)
    ("generate", {"noise": zeros(2, T)}, NOISE_SHAPE + r"\. Received shape:\] \[2 3\]"),  # rank too low
    ("generate", {"noise": zeros(2, T, Z, 5)}, NOISE_SHAPE + r"\. Received shape:\] \[2 3 4 5\]"),  # too high
    ("serving_default", {"noise": zeros(2, T, Z, 1)}, NOISE_SHAPE + r"\. Received shape:\] \[2 3 4 1\]"),
    ("generate", {"noise": zeros(0, T, Z, 5)}, NOISE_SHAPE + r"\. Received shape:\] \[0 3 4 5\]"),
    ("generate", {"noise": zeros(2, 5, Z)}, NOISE_SHAPE + r"\. Received shape:\] \[2 5 4\]"),  # steps
    ("draw", {"noise": zeros(2, T, 7)}, NOISE_SHAPE + r"\. Received shape:\] \[2 3 7\]"),  # latent size
    ("generate", {"noise": np.float32(0.0)}, NOISE_SHAPE + r"\. Received shape:\] \[\]"),  # a scalar
    ("generate", {"noise": zeros(1, T, Z, value=np.nan)}, r"noise must be finite \(no NaN or infinity\)"),
    ("draw", {"noise": zeros(1, T, Z, value=np.inf)}, r"noise must be finite"),
    ("generate_seeded", {"seed": np.zeros((2, 1), np.int64)}, SEED_SHAPE + r"\. Received shape:\] \[2 1\]"),
    ("draw_seeded", {"seed": np.int64(3)}, SEED_SHAPE + r"\. Received shape:\] \[\]"),
    ("reconstruct", {"images": zeros(2, 28, 27, 1), "noise": zeros(2, T, Z)},
     IMAGES_SHAPE + r"\. Received shape:\] \[2 28 27 1\]"),
    ("reconstruct_seeded", {"images": zeros(2, 28, 28), "seed": SEEDS}, IMAGES_SHAPE + r"\. Received shape:\] \[2 28 28\]"),
    ("reconstruct_seeded", {"images": zeros(2, 28, 28, 1, 1), "seed": SEEDS}, IMAGES_SHAPE),
    ("reconstruct", {"images": zeros(2, 28, 28, 1, value=np.nan), "noise": zeros(2, T, Z)}, r"images must be finite"),
    ("elbo", {"images": zeros(2, 28, 28, 1, value=1.5), "noise": zeros(2, T, Z)},
     r"images must lie in \[0, 1\]\. Received values from\] \[1.5\] \[to\] \[1.5\]"),
    ("elbo_seeded", {"images": zeros(2, 28, 28, 1, value=-0.5), "seed": SEEDS}, r"images must lie in \[0, 1\]"),
    ("elbo", {"images": zeros(2, 28, 28, 1), "noise": zeros(3, T, Z)},
     NOISE_SHAPE + r", with the batch size of images\. Received shape:\] \[3 3 4\]"),
    ("elbo_seeded", {"images": zeros(2, 28, 28, 1), "seed": SEEDS[:1]}, SEED_SHAPE + ", with the batch size of images"),
    ("elbo_seeded", {"images": zeros(2, 28, 28, 1), "seed": np.zeros((2, 2), np.int64)}, SEED_SHAPE),
    # More rows than the export's max_batch (1024), refused before any noise is drawn.
    ("generate_seeded", {"seed": np.arange(1025)}, r"seed has more rows than the 1024 this model serves per "
                                                   r"request \(the max_batch of its export\).*Received rows:\] \[1025\]"),
    ("draw", {"noise": zeros(1025, T, Z)}, r"noise has more rows than the 1024"),
    ("elbo_seeded", {"images": zeros(1025, 28, 28, 1), "seed": np.arange(1025)}, r"images has more rows than the 1024"),
    # What TF Serving's Predict refuses before the graph runs, and the graph's own dtype check.
    ("generate_seeded", {"seed": np.zeros(2, np.float32)}, r"Expects arg\[0\] to be int64 but float is provided"),
    ("elbo_seeded", {"images": zeros(1, 28, 28, 1)}, r"input size does not match signature: 1!=2 len\(\{images\}\) "
                                                     r"!= len\(\{images,seed\}\)\. Sent extra: \{\}\. Missing but required: \{seed\}\."),
]


@pytest.mark.parametrize("signature, inputs, message", BAD_REQUESTS)
def test_bad_requests_fail_with_invalid_argument_naming_the_input(exported, signature, inputs, message):
    with pytest.raises(SessionError) as error:
        exported.session.predict(signature, inputs)
    assert error.value.code == "INVALID_ARGUMENT" and re.search(message, error.value.message), error.value.message


def test_an_unknown_signature_is_a_failed_precondition(exported):
    with pytest.raises(SessionError, match=r'FAILED_PRECONDITION: Serving signature key "sample" not found\.'):
        exported.session.predict("sample", {"seed": SEEDS})


# === In the user's tools, and in a process without Keras ===


def parse_saved_model_cli(text):
    """{signature: ({input: (dtype, shape)}, {output: shape}, method)} from `saved_model_cli show --all`."""
    listed = {}
    for block in re.split(r"\n(?=signature_def\[')", text.split("Concrete Functions:")[0])[1:]:
        name = re.match(r"signature_def\['(\w+)'\]", block).group(1)
        inputs_part, outputs_part = block.split("contains the following output(s):")
        tensor = r"\['(\w+)'\] tensor_info:\n\s+dtype: (\w+)\n\s+shape: ([^\n]+)"
        inputs = {k: (dtype, shape) for k, dtype, shape in re.findall("inputs" + tensor, inputs_part)}
        outputs = {k: shape for k, dtype, shape in re.findall("outputs" + tensor, outputs_part) if dtype == "DT_FLOAT"}
        method = re.search(r"Method name is: (\S*)", block).group(1)
        listed[name] = (inputs, outputs, method)
    return listed


@pytest.mark.slow
def test_saved_model_cli_lists_the_documented_signatures_and_runs_one(exported, fresh_processes):
    listed = parse_saved_model_cli(fresh_processes.show)
    listed.pop("__saved_model_init_op")
    assert {name: (inputs, outputs) for name, (inputs, outputs, _) in listed.items()} == DOCUMENTED
    assert {method for _, _, method in listed.values()} == {"tensorflow/serving/predict"}
    expected = exported.model.decode(seed_noise([11, 12, 13]))["images"]
    np.testing.assert_allclose(fresh_processes.cli_images, expected, rtol=1e-5, atol=1e-6)


def test_readme_documents_every_signature_with_a_curl_example():
    readme = (ROOT / "export" / "README.md").read_text()
    for name, (inputs, outputs) in DOCUMENTED.items():
        assert f"`{name}`" in readme, name
        for tensor in [*inputs, *outputs]:
            assert f"`{tensor}`" in readme, tensor
    code_blocks = readme.split("```")[1::2]
    for name in serving.signature_names(Draw.from_preset("tiny")):
        assert any("curl" in block and f'"signature_name": "{name}"' in block for block in code_blocks), name


@pytest.mark.slow
def test_a_tensorflow_only_process_runs_every_signature_in_both_loaders(exported, fresh_processes):
    for report in fresh_processes.reports:
        assert report["imported"] == []  # keras, TFP and keras_draw could not even be imported
        assert report["signatures"] == sorted(DOCUMENTED)
        assert report["unregistered"] == []
        assert not {"PyFunc", "PyFuncStateless", "EagerPyFunc"} & set(report["ops"])
        assert {"Assert", "StatelessRandomNormalV2", "While", "PlaceholderWithDefault"} <= set(report["ops"])
    first, second = fresh_processes.outputs
    assert sorted(first) == sorted(second)
    for key in first:  # the same seed gives the same images in two processes
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    for key in [key for key in first if not key.startswith("tf2/")]:  # TF Serving's loader = TensorFlow 2's
        np.testing.assert_allclose(first[key], first[f"tf2/{key}"], rtol=1e-6, atol=1e-6, err_msg=key)
    here = exported.session.predict("generate_seeded", {"seed": np.array([11, 12, 13])})["images"]
    np.testing.assert_array_equal(first["generate_seeded/images"], here)


# === Another model class ===


class Scorer(keras.Model):
    """A stand-in for another model class (a classifier, say): images in, one score per image."""

    image_shape = (4, 4, 1)

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def build(self, input_shape):
        self.dense.build((None, 16))

    def call(self, x):
        return self.dense(keras.ops.reshape(x, (-1, 16)))[:, 0]


def test_another_model_class_adds_its_own_signatures_to_the_table(tmp_path, monkeypatch):
    table = {"score": serving.Pass(("images",), lambda model, x: {"scores": model(x)}, ("scores",))}
    monkeypatch.setitem(serving.SERVED, Scorer, table)
    model = Scorer()
    model.build((None, 4, 4, 1))
    assert serving.signature_names(model) == ["score"]  # no noise, no `_seeded` twin
    x = RNG.random((3, 4, 4, 1)).astype(np.float32)
    with ServingSession(serving.export(model, tmp_path)) as session:
        assert sorted(session.signatures) == ["__saved_model_init_op", "score", "serving_default"]
        np.testing.assert_allclose(session.predict("score", {"images": x})["scores"], model(x), rtol=1e-6)
        with pytest.raises(SessionError, match=r"images must lie in \[0, 1\]"):
            session.predict("serving_default", {"images": x + 1})
    with pytest.raises(TypeError, match="No serving signatures for a Sequential: keras_draw.serving.SERVED has Draw, "
                                        "DrawClassifier, Scorer"):
        serving.export(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), tmp_path / "other")


# === The command line ===


def test_export_command_line_exports_a_preset_with_weights(exported, tmp_path):
    weights = tmp_path / "tiny.weights.h5"
    exported.model.save_weights(weights)
    status = export_cli.main(["--preset", "tiny", "--weights", str(weights), "--model-base-path",
                              str(tmp_path / "draw"), "--max-batch", "2"])
    assert status == 0
    noise = RNG.standard_normal((2, T, Z)).astype(np.float32)
    with ServingSession(tmp_path / "draw" / "1") as session:
        np.testing.assert_array_equal(session.predict("generate", {"noise": noise})["images"],
                                      exported.session.predict("generate", {"noise": noise})["images"])
        with pytest.raises(SessionError, match=r"more rows than the 2 this model serves"):
            session.predict("generate_seeded", {"seed": np.array([1, 2, 3])})


def test_export_command_line_rejects_bad_input_in_one_line(exported, tmp_path, capsys):
    model_file, model_base_path = str(exported.folder / "model.keras"), str(exported.folder / "draw")
    (tmp_path / "model.h5").write_bytes(b"")
    (tmp_path / "broken.keras").write_bytes(b"not a zip file")
    for argv, message in [
        (["--model", str(tmp_path / "missing.keras")], "Model file not found"),
        (["--model", str(tmp_path / "model.h5")], "must be a .keras file"),
        (["--model", str(tmp_path / "broken.keras")], "is not a .keras file: not a zip archive"),
        (["--model", model_file, "--version", "1"], "Version 1 already exists"),
        (["--model", model_file, "--version", "0"], "must be a positive integer"),
        (["--preset", "tiny"], "--preset needs --weights"),
        (["--model", model_file, "--max-batch", "0"], "--max-batch must be a positive integer"),
        (["--preset", "tiny", "--weights", "svhn"], "No shipped weights for preset 'tiny'"),
        (["--model", model_file, "--weights", "binarized_mnist"], "--weights goes with --preset"),
    ]:
        assert export_cli.main([*argv, "--model-base-path", model_base_path]) == 2
        err = capsys.readouterr().err
        assert err.startswith("export.py: error: ") and message in err and err.count("\n") == 1, err
    assert sorted(os.listdir(model_base_path)) == ["1"]


@pytest.mark.parametrize("argv, message", [
    (["--preset", "huge", "--weights", "binarized_mnist"], "argument --preset: invalid choice: 'huge' (choose from "
                                                           "'mnist', 'mnist_no_attention', "),
    (["--preset", "tiny", "--weights", "w.weights.h5", "--model", "m.keras"], "not allowed with argument"),
    (["--model", "m.keras", "--model-base", "draw"], "unrecognized arguments: --model-base draw"),  # taken whole
])
def test_export_command_line_refuses_flags_it_does_not_take_in_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main([*argv, "--model-base-path", str(tmp_path / "draw")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("export.py: error: ") and message in err, err
    assert err.count("\n") == 1 and not (tmp_path / "draw").exists()


def test_export_command_line_names_what_is_wrong_with_a_model_file(exported, tmp_path, capsys):
    good = (exported.folder / "model.keras").read_bytes()
    (tmp_path / "random.keras").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "truncated.keras").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.keras").write_bytes(b"")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(tmp_path / "dense.keras")
    (tmp_path / "folder.keras").mkdir()
    with zipfile.ZipFile(exported.folder / "model.keras") as source, zipfile.ZipFile(tmp_path / "weights.keras", "w") as copy:
        for name in source.namelist():  # a Draw's config with damaged weights
            copy.writestr(name, b"not HDF5" if name.endswith(".h5") else source.read(name))
    for name, message in [
        ("random.keras", "is not a .keras file: not a zip archive (random bytes, or a truncated or empty file)"),
        ("truncated.keras", "is not a .keras file: not a zip archive"),
        ("empty.keras", "is not a .keras file: not a zip archive"),
        ("dense.keras", "holds a Keras Sequential (module keras), not a keras_draw Draw or DrawClassifier"),
        ("folder.keras", "The model is a folder, not a .keras file"),
        ("weights.keras", "Cannot load"),
    ]:
        assert export_cli.main(["--model", str(tmp_path / name), "--model-base-path", str(tmp_path / "draw")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("export.py: error: ") and message in err and err.count("\n") == 1, err
        assert "Model file not found" not in err
    assert not (tmp_path / "draw").exists()


def test_export_command_line_refuses_a_model_base_path_that_cannot_be_one(exported, tmp_path, capsys):
    model_file = str(exported.folder / "model.keras")
    (tmp_path / "notes.txt").write_text("a file")
    for model_base_path, message in [
        ("", "`--model-base-path` must name a directory. Received: --model-base-path=''"),
        (str(tmp_path / "notes.txt"), "`--model-base-path` exists and is not a directory"),
        (str(tmp_path / "notes.txt" / "draw"), "lies under"),
        (str(tmp_path / "notes.txt" / "a" / "b"), "which is a file, not a directory"),
    ]:
        for source in (["--model", model_file], ["--preset", "tiny", "--weights", "binarized_mnist"]):
            assert export_cli.main([*source, "--model-base-path", model_base_path]) == 2
            err = capsys.readouterr().err
            assert err.startswith("export.py: error: ") and message in err and err.count("\n") == 1, err
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def no_space(archive, path, verbose):
    """ExportArchive.write_out on a disk that fills up halfway through the version."""
    os.makedirs(os.path.join(path, "variables"))
    Path(path, "saved_model.pb").write_bytes(b"half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def no_space_in_tensorflow(archive, path, verbose):
    """The same in TensorFlow's file writes, which raise ResourceExhausted for ENOSPC."""
    os.makedirs(os.path.join(path, "variables"))
    raise tf.errors.ResourceExhaustedError(None, None, f"{path}/variables/variables.index; No space left on device")


@pytest.mark.parametrize("write_out", [no_space, no_space_in_tensorflow])
@pytest.mark.parametrize("existing", [False, True])
def test_a_full_disk_during_export_leaves_nothing_and_says_so_in_one_line(exported, tmp_path, monkeypatch,
                                                                           capsys, write_out, existing):
    model_base_path = tmp_path / "draw"
    if existing:
        (model_base_path / "1").mkdir(parents=True)  # a version already served
    patch_write_out(monkeypatch, write_out)
    assert export_cli.main(["--model", str(exported.folder / "model.keras"), "--model-base-path",
                            str(model_base_path)]) == 1
    err = capsys.readouterr().err
    version = model_base_path / ("2" if existing else "1")
    assert err.startswith(f"export.py: error: Cannot write {version}: ") and err.count("\n") == 1, err
    assert "No space left on device" in err and "Nothing was left half-written" in err
    assert "Traceback" not in err
    if existing:
        assert os.listdir(model_base_path) == ["1"]  # no "2", no ".partial-*"
    else:
        assert not model_base_path.exists()  # the folder this export created is gone too


def test_export_raises_an_export_write_error_with_the_errno(exported, tmp_path, monkeypatch):
    patch_write_out(monkeypatch, no_space)
    with pytest.raises(serving.ExportWriteError) as error:
        serving.export(exported.model, tmp_path / "draw", version=3)
    assert isinstance(error.value, OSError) and error.value.errno == errno.ENOSPC
    assert not (tmp_path / "draw").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum, status, word", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_an_interrupted_export_prints_one_line_and_leaves_no_version(tmp_path, signum, status, word):
    """Ctrl-C (or SIGTERM) while the version is being written: one line, no version, nothing partial."""
    model_base_path = tmp_path / "draw"
    model_base_path.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "export" / "export.py"), "--preset", "mnist", "--weights", "binarized_mnist",
         "--model-base-path", str(model_base_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C's default, even from a background job
    deadline = time.monotonic() + 240
    while not any(name.startswith(".partial-") for name in os.listdir(model_base_path)):  # the write has begun
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert err == f"export.py: {word}; no version was written (a version appears whole or not at all).\n"
    assert out == "" and os.listdir(model_base_path) == []
