"""The client (keras_draw.serving.Client and export/client.py) end to end, over REST and gRPC,
against the stand-in server on 127.0.0.1.

The stand-in (keras_draw.serving.stand_in_server) is not TensorFlow Serving: it follows TF Serving's
documented REST predict API and gRPC PredictionService, and runs the real exported SavedModel
through TF Serving's loader (tests/test_serving.py checks that loader against the Python model).
"""

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from export import client as draw_client
from keras_draw import Draw, serving
from keras_draw.serving import Client, ServingError, transports
from keras_draw.serving.session import ServingSession
from keras_draw.serving.stand_in_server import StandInServer

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(8)
T, Z = 3, 4  # the tiny preset's num_steps and latent_dim


def binary_images(count):
    return (RNG.random((count, 28, 28, 1)) > 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tiny DRAW exported as version 1, served by the stand-in over REST and gRPC."""
    folder = tmp_path_factory.mktemp("serving")
    path = serving.export(Draw.from_preset("tiny", seed=0), folder / "draw")
    stand_in = StandInServer(folder / "draw", "draw", rest_api_port=0, port=0)
    with ServingSession(path) as session:
        yield SimpleNamespace(url=stand_in.rest_url, grpc=stand_in.grpc_target, folder=folder, session=session)
    stand_in.stop()


@pytest.fixture
def silent_port():
    """A port on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free again once closed: connections are refused


def post(url, body, path="/v1/models/draw:predict"):
    """(HTTP status, JSON answer) of a raw POST."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data=data), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def expected(server, signature, **inputs):
    """The outputs of `signature` run in this process, through TF Serving's loader."""
    return server.session.predict(signature, inputs)


@pytest.mark.parametrize("transport", ["columns", "rows", "grpc", "version 1"])
def test_generate_returns_the_saved_models_images(server, transport):
    client = Client(server.url, rows=transport == "rows", grpc=server.grpc if transport == "grpc" else None,
                    version=1 if transport == "version 1" else None)
    images = client.generate(4, seed=3)  # rows use the seeds 3, 4, 5, 6
    assert images.shape == (4, 28, 28, 1) and images.dtype == np.float32
    # Equal up to float rounding: oneDNN's matmuls round differently for other batch sizes.
    same = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    same(images, expected(server, "generate_seeded", seed=np.arange(3, 7))["images"])
    same(client.generate(1, seed=5)[0], images[2])
    noise = RNG.standard_normal((2, T, Z)).astype(np.float32)
    same(client.predict("generate", noise=noise)["images"], expected(server, "generate", noise=noise)["images"])


@pytest.mark.parametrize("transport", ["columns", "rows", "grpc"])
def test_draw_reconstruct_and_elbo_return_every_output(server, transport):
    client = Client(server.url, rows=transport == "rows", grpc=server.grpc if transport == "grpc" else None)
    x, seeds = binary_images(2), np.array([9, 10], np.int64)
    for got, want in [
        (client.draw(2, seed=9), expected(server, "draw_seeded", seed=seeds)),
        (client.reconstruct(x, seed=9), expected(server, "reconstruct_seeded", images=x, seed=seeds)),
        (client.elbo(x, seed=9), expected(server, "elbo_seeded", images=x, seed=seeds)),
    ]:
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)


def body(signature, rows=None, **inputs):
    """A predict request: columnar ("inputs") unless `rows` ("instances") are given."""
    lists = {k: np.asarray(v).tolist() for k, v in inputs.items()}
    return {"signature_name": signature, **({"instances": rows} if rows is not None else {"inputs": lists})}


def lists(*shape, value=0.0):
    return np.full(shape, value).tolist()


BAD_REQUESTS = [  # (body, HTTP status, message)
    (body("generate", noise=lists(2, 5, Z)), 400, r"noise must have shape \(batch, T, latent_dim\) = \(batch, 3, 4\)"),
    (body("generate", rows=lists(2, T)), 400, r"noise must have shape .* \[2 3\]"),
    (body("draw", noise=lists(1, T, Z, value=np.nan)), 400, "noise must be finite"),
    (body("generate_seeded", seed=[[1], [2]]), 400, r"seed must have shape \(batch,\)"),
    (body("reconstruct_seeded", images=lists(1, 28, 27, 1), seed=[1]), 400,
     r"images must have shape \(batch, height, width, channels\) = \(batch, 28, 28, 1\)"),
    (body("elbo_seeded", images=lists(1, 28, 28, 1, value=np.inf), seed=[1]), 400, "images must be finite"),
    (body("elbo_seeded", rows=[{"images": lists(28, 28, 1, value=255.0), "seed": 1}]), 400, r"images must lie in \[0, 1\]"),
    (body("elbo", images=lists(2, 28, 28, 1), noise=lists(1, T, Z)), 400, "with the batch size of images"),
    (body("elbo_seeded", images=lists(1, 28, 28, 1)), 400, r"Missing but required: \{seed\}"),
    (body("generate_seeded", seed=[1.5]), 400, "is not of expected type: int64"),
    (body("no_such_signature", seed=[1]), 400, "no_such_signature"),
    (b"{not json", 400, "JSON Parse error"),
]


@pytest.mark.parametrize("request_body, status, message", BAD_REQUESTS)
def test_bad_rest_requests_get_an_error_answer(server, request_body, status, message):
    code, answer = post(server.url, request_body)
    assert code == status and set(answer) == {"error"}
    assert re.search(message, answer["error"]), answer["error"]


def test_unknown_models_and_versions_are_not_found(server):
    for path, request in [("other", "Latest(other)"), ("draw/versions/2", "Specific(draw, 2)")]:
        status, answer = post(server.url, {"inputs": {"noise": []}}, f"/v1/models/{path}:predict")
        assert (status, answer) == (404, {"error": f"Servable not found for request: {request}"})


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_errors_reach_the_client_as_one_line(server, transport):
    client = Client(server.url, grpc=server.grpc if transport == "grpc" else None)
    with pytest.raises(ServingError) as error:
        client.predict("generate", noise=np.zeros((2, 5, Z), np.float32))
    message = str(error.value)
    assert "\n" not in message and "noise must have shape (batch, T, latent_dim) = (batch, 3, 4)" in message
    assert message.startswith("HTTP 400 from" if transport == "rest" else "gRPC INVALID_ARGUMENT from")
    with pytest.raises(ServingError, match="images must lie in"):
        client.elbo(np.full((1, 28, 28, 1), 2.0, np.float32), seed=1)
    with pytest.raises(ServingError, match="(HTTP 404|gRPC NOT_FOUND).*Servable not found"):
        Client(server.url, model_name="other", grpc=client.grpc).generate(1, seed=1)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_timeouts_and_refused_connections_are_reported_in_one_line(silent_port, transport):
    def client(port, timeout):
        grpc = f"127.0.0.1:{port}" if transport == "grpc" else None
        return Client(f"http://127.0.0.1:{port}", grpc=grpc, timeout=timeout)

    with pytest.raises(ServingError, match=r"^No answer from .* within 0.5 s") as error:
        client(silent_port, 0.5).generate(1, seed=1)
    assert "\n" not in str(error.value)
    with pytest.raises(ServingError, match=r"^Cannot reach .*127.0.0.1") as error:
        client(closed_port(), 10).generate(1, seed=1)
    assert "\n" not in str(error.value)


def test_grpc_request_and_response_protos_are_built_and_parsed():
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    noise = RNG.standard_normal((2, T, Z)).astype(np.float32)
    inputs = {"images": binary_images(2), "seed": np.array([4, 5])}
    request = transports.predict_request("draw", "elbo_seeded", inputs, version=3)
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())  # over the wire
    spec = request.model_spec
    assert (spec.name, spec.signature_name, spec.version.value) == ("draw", "elbo_seeded", 3)
    assert request.inputs["seed"].dtype == types_pb2.DT_INT64 and request.inputs["images"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in request.inputs["images"].tensor_shape.dim] == [2, 28, 28, 1]
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["seed"]), [4, 5])
    np.testing.assert_array_equal(transports.from_tensor_proto(transports.to_tensor_proto(noise)), noise)

    response = predict_pb2.PredictResponse()
    response.outputs["loss"].CopyFrom(tf.make_tensor_proto(np.array([1.5, 2.5], np.float32)))
    response.outputs["kl_loss"].CopyFrom(tf.make_tensor_proto(np.float32(0.25), shape=[2]))  # one value for all
    response.outputs["kl_loss"].ClearField("tensor_content")
    response = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    np.testing.assert_array_equal(transports.from_tensor_proto(response.outputs["loss"]), [1.5, 2.5])
    np.testing.assert_array_equal(transports.from_tensor_proto(response.outputs["kl_loss"]), [0.25, 0.25])


def test_command_line_writes_png_grids_and_prints_the_elbo(server, tmp_path, capsys):
    url = ["--url", server.url]
    assert draw_client.main(["generate", "--num-images", "4", "--seed", "1", "--output", str(tmp_path / "g.png"), *url]) == 0
    assert "seeds 1..4" in capsys.readouterr().out
    with Image.open(tmp_path / "g.png") as picture:
        assert picture.size == ((2 * 29 + 1) * 2, (2 * 29 + 1) * 2)  # 2×2 tiles of 28 px + 1 px gaps, scale 2
    assert draw_client.main(["draw", "--num-images", "2", "--seed", "1", "--output", str(tmp_path / "d.png"),
                             "--grpc", server.grpc]) == 0
    with Image.open(tmp_path / "d.png") as picture:
        assert picture.size == ((T * 29 + 1) * 2, (2 * 29 + 1) * 2) and picture.mode == "RGB"  # T columns, red boxes
    np.save(tmp_path / "x.npy", binary_images(3)[..., 0])  # (count, H, W): one channel added
    assert draw_client.main(["reconstruct", "--images", str(tmp_path / "x.npy"), "--output", str(tmp_path / "r.png"),
                             *url]) == 0
    with Image.open(tmp_path / "r.png") as picture:
        assert picture.size == ((3 * 29 + 1) * 2, (2 * 29 + 1) * 2)  # originals above reconstructions
    capsys.readouterr()
    assert draw_client.main(["elbo", "--images", str(tmp_path / "x.npy"), "--seed", "2", "--rows", *url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("image 0: loss ") and lines[-1].startswith("mean: loss ")


def test_command_line_reports_failures_in_one_line(server, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.full((1, 28, 28, 1), 3.0, np.float32))
    assert draw_client.main(["elbo", "--images", str(tmp_path / "bad.npy"), "--url", server.url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("client.py: error: HTTP 400") and "images must lie in [0, 1]" in err and err.count("\n") == 1
    assert draw_client.main(["elbo", "--images", str(tmp_path / "missing.npy"), "--url", server.url]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert draw_client.main(["generate", "--output", str(tmp_path / "g.png"), "--url",
                             f"http://127.0.0.1:{closed_port()}"]) == 1
    assert capsys.readouterr().err.startswith("client.py: error: Cannot reach")
    assert not (tmp_path / "g.png").exists()


HEAVY = ("tensorflow", "grpc", "tensorflow_serving", "keras", "tensorflow_datasets", "tensorflow_probability")


@pytest.mark.slow
def test_the_rest_client_runs_with_numpy_and_pillow_only(server, tmp_path):
    """python export/client.py in a process where TensorFlow, Keras and gRPC cannot be imported:
    keras_draw's `serving.client`, `console` and `images` import none of them. keras_draw comes
    from this checkout, as `pip install -e .` installs it."""
    script = (
        "import runpy, sys\n"
        f"for name in {HEAVY}:\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        "sys.argv, sys.path[0] = ['client.py', *sys.argv[1:]], 'export'  # as `python export/client.py` has them\n"
        "runpy.run_path('export/client.py', run_name='__main__')\n"
    )
    out = tmp_path / "samples.png"
    result = subprocess.run(
        [sys.executable, "-c", script, "generate", "--num-images", "2", "--seed", "4", "--output", str(out), "--url",
         server.url],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "seeds 4..5" in result.stdout


@pytest.mark.slow
def test_importing_the_client_imports_no_tensorflow(tmp_path):
    """`from keras_draw.serving import Client` (export/README.md), from outside the repository."""
    script = ("import sys; from keras_draw.serving import Client, ServingError; "
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY}))")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("flags, message", [
    (["generate", "--num-images", "0"], "--num-images must be from 1 to 1024 (the rows of one request). "
                                        "Received: --num-images=0"),
    (["generate", "--num-images", "100000"], "--num-images must be from 1 to 1024"),
    (["draw", "--num-images", "-3"], "--num-images must be from 1 to 1024"),
    (["generate", "--seed", str(2**63)], "--seed must be a 64-bit integer"),
    (["generate", "--url", "http://127.0.0.1:99999"], "--url must be http://HOST[:PORT], a port from 1 to 65535"),
    (["generate", "--url", "localhost:8501"], "--url must be http://HOST[:PORT]"),
    (["generate", "--grpc", "localhost"], "--grpc must be HOST:PORT"),
    (["generate", "--grpc", "localhost:0"], "--grpc must be HOST:PORT, a port from 1 to 65535"),
    (["generate", "--timeout", "0"], "--timeout must be seconds, more than 0"),
    (["generate", "--timeout", "nan"], "--timeout must be seconds"),
    (["generate", "--version", "0"], "--version must be a positive integer"),
    (["generate", "--model-name", "draw/../x"], "--model-name must be letters, digits"),
    (["elbo", "--images", "x.npy", "--seed", str(-2**63 - 1)], "--seed must be a 64-bit integer"),
])
def test_command_line_refuses_flags_no_user_can_mean_before_any_request(tmp_path, capsys, flags, message):
    command, *rest = flags
    out = ["--output", str(tmp_path / "g.png")] if command in ("generate", "draw") else []
    # A request would fail with status 1 ("Cannot reach"): status 2 means none was sent.
    url = [] if "--url" in rest else ["--url", f"http://127.0.0.1:{closed_port()}"]
    assert draw_client.main([command, *rest, *out, *url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("client.py: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("flags, message", [
    (["generate", "--model", "draw"], "unrecognized arguments: --model draw"),  # a .keras file elsewhere
    (["generate", "--out", "g.png"], "unrecognized arguments: --out g.png"),  # now --output
    (["generate", "--count", "4"], "unrecognized arguments: --count 4"),  # now --num-images
])
def test_flags_are_taken_whole_so_another_commands_flag_is_never_read_as_one_of_its_own(tmp_path, capsys, flags,
                                                                                      message):
    with pytest.raises(SystemExit) as exit_info:
        draw_client.main([*flags, "--output", str(tmp_path / "g.png"), "--url", f"http://127.0.0.1:{closed_port()}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("client.py: error: ") and message in err, err
    assert err.count("\n") == 1 and not (tmp_path / "g.png").exists()


def test_command_line_refuses_an_out_path_it_cannot_write_before_the_request(tmp_path, capsys):
    for out in (tmp_path / "missing" / "g.png", tmp_path):
        assert draw_client.main(["generate", "--output", str(out), "--url", f"http://127.0.0.1:{closed_port()}"]) == 2
        assert "--output must be a file in an existing folder" in capsys.readouterr().err


def test_command_line_refuses_more_images_than_one_request_takes(tmp_path, capsys):
    np.save(tmp_path / "many.npy", np.zeros((1025, 28, 28), np.float32))
    assert draw_client.main(["elbo", "--images", str(tmp_path / "many.npy"), "--url", f"http://127.0.0.1:{closed_port()}"]) == 2
    assert "--images hold 1025 images; one request takes at most 1024" in capsys.readouterr().err


def test_the_default_seed_is_0_so_a_command_repeats_its_images(server, tmp_path, capsys):
    url = ["--url", server.url]
    for name in ("a.png", "b.png"):
        assert draw_client.main(["generate", "--num-images", "3", "--output", str(tmp_path / name), *url]) == 0
    assert "seeds 0..2" in capsys.readouterr().out
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    np.testing.assert_array_equal(Client(server.url).generate(3), expected(server, "generate_seeded", seed=np.arange(3))["images"])
