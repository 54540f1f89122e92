"""The SavedModel for TensorFlow Serving: layout, signatures, stock ops, input checks, numbers.

The TF Serving binary cannot be installed here, so these tests check what it relies on:
`saved_model_cli` lists the documented signatures; a fresh process that cannot import Keras,
TFP or keras_draw loads the export and calls every signature; every op of the graph and its
function library is a registered stock op; bad requests fail with InvalidArgument naming the
input; the signatures compute what the model computes.
"""

import contextlib
import errno
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from export import export as export_cli
from keras_draw import Draw, serving
from keras_draw.filterbank import filter_centres
from keras_draw.images import window_box

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(5)
T, Z = 3, 4  # the tiny preset's num_steps and latent_dim

# What export/README.md documents, at the tiny preset: signature → (inputs, outputs {name: shape}).
SEQUENCE_OUTPUTS = {"canvases": "(-1, 3, 28, 28, 1)", "write_window": "(-1, 3, 5)", "write_box": "(-1, 3, 4)"}
READ_OUTPUTS = {"read_window": "(-1, 3, 5)", "read_box": "(-1, 3, 4)"}
ELBO_OUTPUTS = {"loss": "(-1)", "reconstruction_loss": "(-1)", "kl_loss": "(-1)"}
DOCUMENTED = {
    "serving_default": ({"noise": "DT_FLOAT"}, {"images": "(-1, 28, 28, 1)"}),
    "generate": ({"noise": "DT_FLOAT"}, {"images": "(-1, 28, 28, 1)"}),
    "generate_seeded": ({"seed": "DT_INT64"}, {"images": "(-1, 28, 28, 1)"}),
    "draw": ({"noise": "DT_FLOAT"}, {"images": "(-1, 28, 28, 1)", **SEQUENCE_OUTPUTS}),
    "draw_seeded": ({"seed": "DT_INT64"}, {"images": "(-1, 28, 28, 1)", **SEQUENCE_OUTPUTS}),
    "reconstruct": ({"images": "DT_FLOAT", "noise": "DT_FLOAT"},
                    {"reconstructions": "(-1, 28, 28, 1)", **SEQUENCE_OUTPUTS, **READ_OUTPUTS}),
    "reconstruct_seeded": ({"images": "DT_FLOAT", "seed": "DT_INT64"},
                           {"reconstructions": "(-1, 28, 28, 1)", **SEQUENCE_OUTPUTS, **READ_OUTPUTS}),
    "elbo": ({"images": "DT_FLOAT", "noise": "DT_FLOAT"}, ELBO_OUTPUTS),
    "elbo_seeded": ({"images": "DT_FLOAT", "seed": "DT_INT64"}, ELBO_OUTPUTS),
}

# Run in a fresh process that cannot import Keras, TFP or keras_draw: checks every op of the
# graph and its function library, calls every signature, saves the outputs.
TENSORFLOW_ONLY = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
for name in ("keras", "tf_keras", "tensorflow_probability", "keras_draw"):
    sys.modules[name] = None  # importing any of them now raises ImportError
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

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

signatures = tf.saved_model.load(path).signatures
inputs = np.load(inputs_file)
outputs = {}
for name, function in signatures.items():
    wanted = function.structured_input_signature[1]
    results = function(**{key: tf.constant(inputs[key]) for key in wanted})
    outputs.update({f"{name}/{key}": value.numpy() for key, value in results.items()})
np.savez(outputs_file, **outputs)
print(json.dumps({"ops": sorted(ops), "unregistered": unregistered, "signatures": sorted(signatures),
                  "imported": [m for m in ("keras", "keras_draw", "tensorflow_probability") if sys.modules.get(m)]}))
"""


def binary_images(count):
    return (RNG.random((count, 28, 28, 1)) > 0.5).astype(np.float32)


def seed_noise(seeds):
    """The documented noise of the seeded signatures: stateless_normal((T, |z|), [seed, 0])."""
    return np.stack([tf.random.stateless_normal((T, Z), seed=[int(s), 0]) for s in seeds])


def saved_model_cli():
    """The `saved_model_cli` command installed with this Python's TensorFlow."""
    script = Path(sys.executable).parent / "saved_model_cli"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def random_weights(model):
    """Sets every weight to a random value, so that no term vanishes because a weight is zero."""
    for variable in model.weights:
        variable.assign(0.5 * RNG.standard_normal(variable.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny DRAW with random weights, saved as .keras and exported once by export/export.py."""
    model = random_weights(Draw.from_preset("tiny", seed=0))
    folder = tmp_path_factory.mktemp("serving")
    model.save(folder / "model.keras")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = export_cli.main(["--model", str(folder / "model.keras"), "--export-dir", str(folder / "draw")])
    assert status == 0
    path = str(folder / "draw" / "1")
    first_line, serve_line = printed.getvalue().splitlines()
    assert first_line == path
    assert serve_line.startswith("Serve it: docker run") and f"{folder / 'draw'}:/models/draw" in serve_line
    return SimpleNamespace(model=model, folder=folder, path=path, signatures=tf.saved_model.load(path).signatures)


@pytest.fixture(scope="module")
def fresh_processes(exported):
    """`saved_model_cli show --all` and two TensorFlow-only processes, run side by side."""
    folder = exported.folder
    inputs = {"noise": RNG.standard_normal((3, T, Z)).astype(np.float32), "images": binary_images(3),
              "seed": np.array([11, 12, 13], np.int64)}
    np.savez(folder / "inputs.npz", **inputs)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cli = subprocess.Popen([*saved_model_cli(), "show", "--all", "--dir", exported.path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    loaders = [
        subprocess.Popen([sys.executable, "-c", TENSORFLOW_ONLY, exported.path, str(folder / "inputs.npz"),
                          str(folder / f"outputs{k}.npz")], cwd=folder, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for k in range(2)
    ]
    results = [process.communicate(timeout=240) for process in (cli, *loaders)]
    for process, (out, err) in zip((cli, *loaders), results):
        assert process.returncode == 0, err[-3000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in results[1:]]
    outputs = [dict(np.load(folder / f"outputs{k}.npz")) for k in range(2)]
    return SimpleNamespace(cli=results[0][0], reports=reports, outputs=outputs, inputs=inputs)


def test_export_writes_tf_serving_layout(exported, tmp_path):
    path = Path(exported.path)
    assert path.name == "1" and (path / "saved_model.pb").is_file()
    assert (path / "variables" / "variables.index").is_file()
    assert [p.name for p in path.parent.iterdir()] == ["1"]  # no temporary folder left behind
    for name in ("1", "7", "latest", ".partial-x"):
        (tmp_path / name).mkdir()
    assert serving.next_version(tmp_path) == 8  # one more than the highest integer folder
    assert serving.next_version(tmp_path / "absent") == 1


def test_an_existing_version_is_never_overwritten(exported):
    before = (Path(exported.path) / "saved_model.pb").read_bytes()
    with pytest.raises(FileExistsError, match="Version 1 already exists"):
        serving.export(exported.model, exported.path.rsplit(os.sep, 1)[0], version=1)
    assert (Path(exported.path) / "saved_model.pb").read_bytes() == before
    for version in (0, -3, "2", 1.5, True):
        with pytest.raises(ValueError, match="Received: version="):
            serving.export(exported.model, exported.folder / "other", version=version)


def test_a_crash_while_writing_leaves_no_version(exported, tmp_path, monkeypatch):
    def crash(module, path, signatures):
        os.makedirs(os.path.join(path, "variables"))
        Path(path, "saved_model.pb").write_bytes(b"half")
        raise RuntimeError("killed")

    monkeypatch.setattr(serving.DrawServing, "signatures", lambda self: {})  # skip the tracing
    monkeypatch.setattr(tf.saved_model, "save", crash)
    with pytest.raises(RuntimeError, match="killed"):
        serving.export(exported.model, tmp_path / "draw")
    assert list((tmp_path / "draw").iterdir()) == []  # no "1", no ".partial-*"


def parse_saved_model_cli(text):
    """{signature: ({input: (dtype, shape)}, {output: shape}, method)} from `saved_model_cli`."""
    listed = {}
    for block in re.split(r"\n(?=signature_def\[')", text)[1:]:
        name = re.match(r"signature_def\['(\w+)'\]", block).group(1)
        inputs_part, outputs_part = block.split("contains the following output(s):")
        tensor = r"\['(\w+)'\] tensor_info:\n\s+dtype: (\w+)\n\s+shape: ([^\n]+)"
        inputs = {k: (dtype, shape) for k, dtype, shape in re.findall("inputs" + tensor, inputs_part)}
        outputs = {k: shape for k, dtype, shape in re.findall("outputs" + tensor, outputs_part) if dtype == "DT_FLOAT"}
        method = re.search(r"Method name is: (\S*)", block).group(1)
        listed[name] = (inputs, outputs, method)
    return listed


@pytest.mark.slow
def test_saved_model_cli_lists_the_documented_signatures(fresh_processes):
    listed = parse_saved_model_cli(fresh_processes.cli)
    listed.pop("__saved_model_init_op")
    dtypes = {name: {k: dtype for k, (dtype, _) in inputs.items()} for name, (inputs, _, _) in listed.items()}
    assert {name: (dtypes[name], outputs) for name, (_, outputs, _) in listed.items()} == DOCUMENTED
    assert {method for _, _, method in listed.values()} == {"tensorflow/serving/predict"}
    shapes = {shape for inputs, _, _ in listed.values() for _, shape in inputs.values()}
    assert shapes == {"unknown_rank"}  # every input's shape is checked in the graph instead


def test_readme_documents_every_signature_with_a_curl_example():
    readme = (ROOT / "export" / "README.md").read_text()
    for name, (inputs, outputs) in DOCUMENTED.items():
        assert f"`{name}`" in readme, name
        for tensor in [*inputs, *outputs]:
            assert f"`{tensor}`" in readme, tensor
    assert "docker run -p 8501:8501" in readme
    code_blocks = readme.split("```")[1::2]
    for name in serving.SIGNATURES:
        assert any("curl" in block and f'"signature_name": "{name}"' in block for block in code_blocks), name


@pytest.mark.slow
def test_a_tensorflow_only_process_loads_the_export_and_runs_every_signature(fresh_processes):
    for report in fresh_processes.reports:
        assert report["imported"] == []  # keras, TFP and keras_draw could not even be imported
        assert report["signatures"] == sorted(DOCUMENTED)
        assert report["unregistered"] == []
        assert not {"PyFunc", "PyFuncStateless", "EagerPyFunc"} & set(report["ops"])
        assert {"Assert", "StatelessRandomNormalV2", "While"} <= set(report["ops"])  # checks, seeds, loop


@pytest.mark.slow
def test_the_same_seed_gives_the_same_images_in_two_fresh_processes(exported, fresh_processes):
    first, second = fresh_processes.outputs
    assert sorted(first) == sorted(second)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    here = exported.signatures["generate_seeded"](seed=tf.constant([11, 12, 13], tf.int64))["images"]
    np.testing.assert_array_equal(first["generate_seeded/images"], here)


def test_signatures_compute_what_the_model_computes(exported):
    model, signatures = exported.model, exported.signatures
    x, epsilon = binary_images(3), RNG.standard_normal((3, T, Z)).astype(np.float32)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    generated = model.decode(epsilon, return_sequence=True)
    close(signatures["generate"](noise=epsilon)["images"], generated["images"])
    close(signatures["serving_default"](noise=epsilon)["images"], generated["images"])
    drawing = signatures["draw"](noise=epsilon)
    for key in ("images", "canvases", "write_window"):
        close(drawing[key], generated[key])
    inferred = model.infer(x, epsilon, return_sequence=True)
    reconstruction = signatures["reconstruct"](images=x, noise=epsilon)
    close(reconstruction["reconstructions"], tf.sigmoid(inferred["canvas"]))
    for key in ("canvases", "read_window", "write_window"):
        close(reconstruction[key], inferred[key])
    terms = signatures["elbo"](images=x, noise=epsilon)
    for key, value in model.negative_elbo(x, epsilon).items():
        close(terms[key], value)


def test_seeded_signatures_use_the_documented_noise_row_by_row(exported):
    signatures, x = exported.signatures, binary_images(3)
    seeds = tf.constant([5, 6, 7], tf.int64)
    epsilon = seed_noise([5, 6, 7])
    images = signatures["generate_seeded"](seed=seeds)["images"]
    np.testing.assert_array_equal(images, signatures["generate"](noise=epsilon)["images"])
    np.testing.assert_array_equal(signatures["draw_seeded"](seed=seeds)["images"], images)
    alone = signatures["generate_seeded"](seed=tf.constant([6], tf.int64))["images"]
    np.testing.assert_allclose(alone[0], images[1], atol=1e-6)  # a row does not depend on its batch
    for name in ("reconstruct", "elbo"):
        seeded = signatures[f"{name}_seeded"](images=x, seed=seeds)
        for key, value in signatures[name](images=x, noise=epsilon).items():
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
    model, seeds = exported.model, tf.constant([1, 2], tf.int64)
    drawing = exported.signatures["draw_seeded"](seed=seeds)
    reconstruction = exported.signatures["reconstruct_seeded"](images=binary_images(2), seed=seeds)
    for outputs, kind, n in [(drawing, "write", model.write_n), (reconstruction, "write", model.write_n),
                             (reconstruction, "read", model.read_n)]:
        window = outputs[f"{kind}_window"].numpy().reshape(-1, 5)  # (batch·T, 5)
        g_x, g_y, delta = window[:, 0], window[:, 1], window[:, 2]
        mu_x, mu_y = np.asarray(filter_centres(g_x, delta, n)), np.asarray(filter_centres(g_y, delta, n))  # eqs. 19-20
        expected = np.stack([mu_x[:, 0], mu_y[:, 0], mu_x[:, -1], mu_y[:, -1]], axis=-1) - 1.0  # 0-based
        np.testing.assert_allclose(outputs[f"{kind}_box"].numpy().reshape(-1, 4), expected, rtol=1e-6, atol=1e-5)


def test_a_model_without_attention_exports_no_windows_and_no_boxes(tmp_path):
    model = Draw.from_preset("tiny", seed=0, attention=False)
    signatures = tf.saved_model.load(serving.export(model, tmp_path / "draw")).signatures
    seeds, x = tf.constant([1, 2], tf.int64), binary_images(2)
    assert sorted(signatures["draw_seeded"](seed=seeds)) == ["canvases", "images"]
    assert sorted(signatures["reconstruct_seeded"](images=x, seed=seeds)) == ["canvases", "reconstructions"]
    assert sorted(signatures["elbo"](images=x, noise=seed_noise([1, 2]))) == sorted(ELBO_OUTPUTS)


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
    elbo = exported.signatures["elbo_seeded"]
    first = elbo(images=x, seed=tf.range(n, dtype=tf.int64))
    second = elbo(images=x, seed=tf.range(1000, 1000 + n, dtype=tf.int64))
    for key in ("loss", "reconstruction_loss", "kl_loss"):
        spread = np.std(first[key].numpy() - second[key].numpy())  # s·√2
        tolerance = 5 * spread / np.sqrt(n) + 1e-5 * abs(results[key])
        assert abs(np.mean(first[key]) - results[key]) <= tolerance, (key, results[key], np.mean(first[key]), tolerance)


def zeros(*shape, value=0.0):
    return np.full(shape, value, np.float32)


SEEDS = np.zeros(2, np.int64)
NOISE = r"noise must have shape \(batch, T, latent_dim\) = \(batch, 3, 4\)"
IMAGES = r"images must have shape \(batch, height, width, channels\) = \(batch, 28, 28, 1\)"
BAD_REQUESTS = [  # (signature, inputs, message)
    ("generate", {"noise": zeros(2, T)}, NOISE + r"\. Received shape:\] \[2 3\]"),  # rank
    ("generate", {"noise": zeros(2, 5, Z)}, NOISE + r"\. Received shape:\] \[2 5 4\]"),  # steps
    ("draw", {"noise": zeros(2, T, 7)}, NOISE + r"\. Received shape:\] \[2 3 7\]"),  # latent size
    ("generate", {"noise": np.float32(0.0)}, NOISE + r"\. Received shape:\] \[\]"),  # a scalar
    ("generate", {"noise": zeros(1, T, Z, value=np.nan)}, r"noise must be finite \(no NaN or infinity\)"),
    ("draw", {"noise": zeros(1, T, Z, value=np.inf)}, r"noise must be finite"),
    ("generate_seeded", {"seed": np.zeros((2, 1), np.int64)},
     r"seed must have shape \(batch,\), one integer per row\. Received shape:\] \[2 1\]"),
    ("draw_seeded", {"seed": np.int64(3)}, r"seed must have shape \(batch,\)"),
    ("reconstruct", {"images": zeros(2, 28, 27, 1), "noise": zeros(2, T, Z)},
     IMAGES + r"\. Received shape:\] \[2 28 27 1\]"),
    ("reconstruct_seeded", {"images": zeros(2, 28, 28), "seed": SEEDS}, IMAGES + r"\. Received shape:\] \[2 28 28\]"),
    ("reconstruct", {"images": zeros(2, 28, 28, 1, value=np.nan), "noise": zeros(2, T, Z)}, r"images must be finite"),
    ("elbo", {"images": zeros(2, 28, 28, 1, value=1.5), "noise": zeros(2, T, Z)},
     r"images must lie in \[0, 1\]\. Received values from\] \[1.5\] \[to\] \[1.5\]"),
    ("elbo_seeded", {"images": zeros(2, 28, 28, 1, value=-0.5), "seed": SEEDS}, r"images must lie in \[0, 1\]"),
    ("elbo", {"images": zeros(2, 28, 28, 1), "noise": zeros(3, T, Z)},
     NOISE + r", with the batch size of images\. Received shape:\] \[3 3 4\]"),
    ("elbo_seeded", {"images": zeros(2, 28, 28, 1), "seed": SEEDS[:1]},
     r"seed must have shape \(batch,\), one integer per row, with the batch size of images"),
    # More rows than the export's max_batch (1024), refused before any noise is drawn.
    ("generate_seeded", {"seed": np.arange(1025)}, r"seed has more rows than the 1024 this model serves per "
                                                   r"request \(the max_batch of its export\).*Received rows:\] \[1025\]"),
    ("draw", {"noise": zeros(1025, T, Z)}, r"noise has more rows than the 1024"),
    ("elbo_seeded", {"images": zeros(1025, 28, 28, 1), "seed": np.arange(1025)}, r"images has more rows than the 1024"),
]


@pytest.mark.parametrize("signature, inputs, message", BAD_REQUESTS)
def test_bad_requests_fail_with_invalid_argument_naming_the_input(exported, signature, inputs, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        exported.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})


def test_export_command_line_exports_a_preset_with_weights(exported, tmp_path):
    weights = tmp_path / "tiny.weights.h5"
    exported.model.save_weights(weights)
    status = export_cli.main(["--preset", "tiny", "--weights", str(weights), "--export-dir", str(tmp_path / "draw"),
                              "--max-batch", "2"])
    assert status == 0
    signatures = tf.saved_model.load(str(tmp_path / "draw" / "1")).signatures
    noise = RNG.standard_normal((2, T, Z)).astype(np.float32)
    np.testing.assert_allclose(signatures["generate"](noise=tf.constant(noise))["images"],
                               exported.signatures["generate"](noise=tf.constant(noise))["images"], atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"more rows than the 2 this model serves"):
        signatures["generate_seeded"](seed=tf.constant([1, 2, 3], tf.int64))


def test_export_command_line_rejects_bad_input_in_one_line(exported, tmp_path, capsys):
    model_file, export_dir = str(exported.folder / "model.keras"), str(exported.folder / "draw")
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
        (["--preset", "huge", "--weights", "binarized_mnist"], "Unknown preset: 'huge'"),
        (["--model", model_file, "--weights", "binarized_mnist"], "--weights goes with --preset"),
    ]:
        assert export_cli.main([*argv, "--export-dir", export_dir]) == 2
        err = capsys.readouterr().err
        assert err.startswith("export.py: error: ") and message in err and err.count("\n") == 1, err
    assert sorted(os.listdir(export_dir)) == ["1"]


def test_export_command_line_names_what_is_wrong_with_a_model_file(exported, tmp_path, capsys):
    import keras

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
        ("dense.keras", "holds a Keras Sequential (module keras), not a keras_draw Draw"),
        ("folder.keras", "The model is a folder, not a .keras file"),
        ("weights.keras", "Cannot load"),
    ]:
        assert export_cli.main(["--model", str(tmp_path / name), "--export-dir", str(tmp_path / "draw")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("export.py: error: ") and message in err and err.count("\n") == 1, err
        assert "Model file not found" not in err
    assert not (tmp_path / "draw").exists()


def test_export_command_line_refuses_an_export_dir_that_cannot_be_one(exported, tmp_path, capsys):
    model_file = str(exported.folder / "model.keras")
    (tmp_path / "notes.txt").write_text("a file")
    for export_dir, message in [
        ("", "`--export-dir` must name a directory. Received: --export-dir=''"),
        (str(tmp_path / "notes.txt"), "`--export-dir` exists and is not a directory"),
        (str(tmp_path / "notes.txt" / "draw"), "lies under"),
        (str(tmp_path / "notes.txt" / "a" / "b"), "which is a file, not a directory"),
    ]:
        for source in (["--model", model_file], ["--preset", "tiny", "--weights", "binarized_mnist"]):
            assert export_cli.main([*source, "--export-dir", export_dir]) == 2
            err = capsys.readouterr().err
            assert err.startswith("export.py: error: ") and message in err and err.count("\n") == 1, err
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def no_space(module, path, signatures):
    """tf.saved_model.save on a disk that fills up halfway through the version."""
    os.makedirs(os.path.join(path, "variables"))
    Path(path, "saved_model.pb").write_bytes(b"half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def no_space_in_tensorflow(module, path, signatures):
    """The same in TensorFlow's file writes, which raise ResourceExhausted for ENOSPC."""
    os.makedirs(os.path.join(path, "variables"))
    raise tf.errors.ResourceExhaustedError(None, None, f"{path}/variables/variables.index; No space left on device")


@pytest.mark.parametrize("save", [no_space, no_space_in_tensorflow])
@pytest.mark.parametrize("existing", [False, True])
def test_a_full_disk_during_export_leaves_nothing_and_says_so_in_one_line(exported, tmp_path, monkeypatch,
                                                                           capsys, save, existing):
    export_dir = tmp_path / "draw"
    if existing:
        (export_dir / "1").mkdir(parents=True)  # a version already served
    monkeypatch.setattr(serving.DrawServing, "signatures", lambda self: {})  # skip the tracing
    monkeypatch.setattr(tf.saved_model, "save", save)
    assert export_cli.main(["--model", str(exported.folder / "model.keras"), "--export-dir", str(export_dir)]) == 1
    err = capsys.readouterr().err
    version = export_dir / ("2" if existing else "1")
    assert err.startswith(f"export.py: error: Cannot write {version}: ") and err.count("\n") == 1, err
    assert "No space left on device" in err and "Nothing was left half-written" in err
    assert "Traceback" not in err
    if existing:
        assert os.listdir(export_dir) == ["1"]  # no "2", no ".partial-*"
    else:
        assert not export_dir.exists()  # the folder this export created is gone too


def test_export_raises_an_export_write_error_with_the_errno(exported, tmp_path, monkeypatch):
    monkeypatch.setattr(serving.DrawServing, "signatures", lambda self: {})
    monkeypatch.setattr(tf.saved_model, "save", no_space)
    with pytest.raises(serving.ExportWriteError) as error:
        serving.export(exported.model, tmp_path / "draw", version=3)
    assert isinstance(error.value, OSError) and error.value.errno == errno.ENOSPC
    assert not (tmp_path / "draw").exists()
