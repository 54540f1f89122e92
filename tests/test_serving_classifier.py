"""A DrawClassifier's export, run the way TF Serving runs it, and called by export/client.py.

Through TF Serving's loader (`ServingSession`, TensorFlow's C API: see tests/test_serving.py),
`classify` (and `serving_default`) returns what `DrawClassifier.predict` computes and the most
probable class; `glimpses` adds the read windows `glimpse_sequence` computes and their boxes; a bad
request fails in the graph with InvalidArgument naming the input. The client reaches it through
the stand-in server (keras_draw.serving.stand_in_server), over REST and gRPC.
"""

import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from export import client as draw_client
from conftest import export_saved_model
from export import export as export_cli
from keras_draw import DrawClassifier, serving
from keras_draw.images import window_box
from keras_draw.serving import Client
from keras_draw.serving.session import ServingSession, SessionError
from keras_draw.serving.stand_in_server import StandInServer
from tests.test_serving import parse_saved_model_cli, saved_model_cli

T, N = 2, 3  # the tiny_classifier preset's num_steps and read_n
IMAGES = ("DT_FLOAT", "(-1, 100, 100, 1)")
CLASSIFY_OUTPUTS = {"probabilities": "(-1, 10)"}  # float outputs; `classes` is int64 (-1)
DOCUMENTED = {
    "serving_default": ({"images": IMAGES}, CLASSIFY_OUTPUTS),
    "classify": ({"images": IMAGES}, CLASSIFY_OUTPUTS),
    "glimpses": ({"images": IMAGES}, {**CLASSIFY_OUTPUTS, "read_window": f"(-1, {T}, 5)", "read_box": f"(-1, {T}, 4)"}),
}


def random_weights(model, seed=11):
    """The LSTM's and the softmax's weights random and large, so that the class changes from image to
    image; the read's as initialised, so that the first window sees the whole image."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if "/read/" not in variable.path:
            variable.assign(2.0 * rng.standard_normal(variable.shape).astype(np.float32))
    return model


def cluttered(count, seed=0):
    """Images in [0, 1]: a bright square at a random place on faint noise."""
    rng = np.random.default_rng(seed)
    x = 0.2 * rng.random((count, 100, 100, 1)).astype(np.float32)
    for image, (row, column) in zip(x, rng.integers(0, 80, (count, 2))):
        image[row:row + 20, column:column + 20] = 1.0
    return x


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny DrawClassifier with random weights, saved as .keras and exported by export/export.py."""
    model = random_weights(DrawClassifier.from_preset("tiny_classifier", seed=0))
    folder = tmp_path_factory.mktemp("classifier")
    path, printed = export_saved_model(model, folder)
    assert printed[0] == path
    assert "python export/client.py classify --images digits.npy" in "\n".join(printed)
    with ServingSession(path) as session:
        yield SimpleNamespace(model=model, folder=folder, path=path, session=session)


def test_classify_returns_what_predict_computes_and_its_most_probable_class(exported):
    x = cluttered(8)
    expected = exported.model.predict(x, verbose=0)  # p(y | x), (8, 10)
    for name in ("classify", "serving_default"):
        outputs = exported.session.predict(name, {"images": x})
        assert sorted(outputs) == ["classes", "probabilities"]
        np.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, rtol=1e-6)
        assert outputs["classes"].dtype == np.int64
        np.testing.assert_array_equal(outputs["classes"], np.argmax(expected, axis=1))
    assert len(set(outputs["classes"])) > 1  # random weights: not one class for every image


def test_glimpses_returns_the_read_windows_and_their_boxes(exported):
    x = cluttered(3)
    outputs = exported.session.predict("glimpses", {"images": x})
    window = np.asarray(exported.model.glimpse_sequence(x)["window"])  # (3, T, 5)
    np.testing.assert_allclose(outputs["read_window"], window, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["read_box"], np.stack(window_box(window, N), axis=-1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(outputs["probabilities"], exported.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    g_x, delta = window[..., 0], window[..., 2]  # the boxes' x ends are the outer filter centres (eq. 19), 0-based
    np.testing.assert_allclose(outputs["read_box"][..., 0], g_x - 1 - (N / 2 - 0.5) * delta, rtol=1e-4, atol=1e-3)


def test_signatures_declare_their_shapes_with_an_open_batch(exported):
    signatures = exported.session.signatures
    assert sorted(signatures) == sorted([*DOCUMENTED, "__saved_model_init_op"])
    for name in DOCUMENTED:
        shape = lambda info: [d.size for d in info.tensor_shape.dim]
        assert shape(signatures[name].inputs["images"]) == [-1, 100, 100, 1]
        assert shape(signatures[name].outputs["probabilities"]) == [-1, 10]
        assert shape(signatures[name].outputs["classes"]) == [-1] and signatures[name].outputs["classes"].dtype == 9


def zeros(*shape, value=0.0):
    return np.full(shape, value, np.float32)


IMAGES_SHAPE = r"images must have shape \(batch, height, width, channels\) = \(batch, 100, 100, 1\)"
BAD_REQUESTS = [  # (signature, images, message)
    ("classify", zeros(2, 100, 100), IMAGES_SHAPE + r"\. Received shape:\] \[2 100 100\]"),
    ("serving_default", zeros(2, 28, 28, 1), IMAGES_SHAPE + r"\. Received shape:\] \[2 28 28 1\]"),
    ("glimpses", zeros(1, 100, 100, 3), IMAGES_SHAPE + r"\. Received shape:\] \[1 100 100 3\]"),
    ("classify", zeros(1, 100, 100, 1, value=np.nan), r"images must be finite \(no NaN or infinity\)"),
    ("classify", zeros(1, 100, 100, 1, value=1.5), r"images must lie in \[0, 1\]\. Received values from\] \[1.5\] \[to\] \[1.5\]"),
    ("serving_default", zeros(1, 100, 100, 1, value=-0.5), r"images must lie in \[0, 1\]"),
    ("classify", zeros(1025, 100, 100, 1), r"images has more rows than the 1024 this model serves per request"),
]


@pytest.mark.parametrize("signature, images, message", BAD_REQUESTS)
def test_bad_requests_fail_with_invalid_argument_naming_the_input(exported, signature, images, message):
    with pytest.raises(SessionError) as error:
        exported.session.predict(signature, {"images": images})
    assert error.value.code == "INVALID_ARGUMENT" and re.search(message, error.value.message), error.value.message


def test_export_command_line_exports_a_classifier_preset_with_weights(exported, tmp_path):
    weights = tmp_path / "tiny_classifier.weights.h5"
    exported.model.save_weights(weights)
    assert export_cli.main(["--preset", "tiny_classifier", "--weights", str(weights),
                            "--model-base-path", str(tmp_path / "draw")]) == 0
    x = cluttered(2)
    with ServingSession(tmp_path / "draw" / "1") as session:
        np.testing.assert_array_equal(session.predict("classify", {"images": x})["probabilities"],
                                      exported.session.predict("classify", {"images": x})["probabilities"])


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures_and_runs_classify(exported):
    show = subprocess.run([*saved_model_cli(), "show", "--all", "--dir", exported.path], capture_output=True,
                          text=True, timeout=300)
    assert show.returncode == 0, show.stderr[-3000:]
    listed = parse_saved_model_cli(show.stdout)
    listed.pop("__saved_model_init_op")
    assert {name: (inputs, outputs) for name, (inputs, outputs, _) in listed.items()} == DOCUMENTED
    x = cluttered(2)
    np.save(exported.folder / "x.npy", x)
    run = subprocess.run([*saved_model_cli(), "run", "--dir", exported.path, "--tag_set", "serve", "--signature_def",
                          "classify", "--inputs", f"images={exported.folder / 'x.npy'}", "--outdir",
                          str(exported.folder / "cli"), "--overwrite"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = exported.model.predict(x, verbose=0)
    np.testing.assert_allclose(np.load(exported.folder / "cli" / "probabilities.npy"), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.load(exported.folder / "cli" / "classes.npy"), np.argmax(expected, axis=1))


# === The client, through the stand-in server ===


@pytest.fixture(scope="module")
def server(exported):
    stand_in = StandInServer(exported.folder / "draw", "draw", rest_api_port=0, port=0)
    yield SimpleNamespace(url=stand_in.rest_url, grpc=stand_in.grpc_target)
    stand_in.stop()


@pytest.mark.parametrize("transport", ["columns", "rows", "grpc"])
def test_the_client_classifies_as_the_export_does(exported, server, transport):
    client = Client(server.url, rows=transport == "rows", grpc=server.grpc if transport == "grpc" else None)
    x = cluttered(3)
    got, want = client.classify(x), exported.session.predict("classify", {"images": x})
    assert sorted(got) == ["classes", "probabilities"]
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=1e-6)
    np.testing.assert_array_equal(got["classes"], want["classes"])


def test_the_command_line_prints_each_images_class_and_probability(exported, server, tmp_path, capsys):
    x = cluttered(3)
    np.save(tmp_path / "x.npy", x[..., 0])  # (count, H, W): one channel added
    assert draw_client.main(["classify", "--images", str(tmp_path / "x.npy"), "--url", server.url]) == 0
    expected = exported.model.predict(x, verbose=0)
    assert capsys.readouterr().out.splitlines() == [
        f"image {i}: class {c} (probability {expected[i, c]:.3f})" for i, c in enumerate(np.argmax(expected, axis=1))]
    np.save(tmp_path / "bad.npy", np.full((1, 100, 100, 1), 3.0, np.float32))
    assert draw_client.main(["classify", "--images", str(tmp_path / "bad.npy"), "--grpc", server.grpc]) == 1
    err = capsys.readouterr().err
    assert err.startswith("client.py: error: ") and "images must lie in [0, 1]" in err and err.count("\n") == 1


def test_readme_documents_the_classifiers_signatures_with_a_curl_example():
    readme = (Path(__file__).resolve().parents[1] / "export" / "README.md").read_text()
    for name, (inputs, outputs) in DOCUMENTED.items():
        assert f"`{name}`" in readme, name
        for tensor in [*inputs, *outputs, "classes"]:
            assert f"`{tensor}`" in readme, tensor
    code_blocks = readme.split("```")[1::2]
    assert serving.signature_names(DrawClassifier.from_preset("tiny_classifier")) == ["classify", "glimpses"]
    assert any("curl" in block and '"signature_name": "classify"' in block for block in code_blocks)
