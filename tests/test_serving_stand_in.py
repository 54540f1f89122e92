"""The stand-in server (keras_draw.serving.stand_in_server, export/stand_in_server.py): TF Serving's REST metadata and predict API over
TF Serving's loader, the documented curl examples run as written, slow clients cut off at the
request deadline without holding up anyone else, and a command line that refuses flags no user
can mean. The model is the mnist preset (its initial weights), the size the docs' examples are for.
"""

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from export import stand_in_server as stand_in_cli
from keras_draw import Draw, serving
from keras_draw.serving import stand_in_server
from keras_draw.serving.session import ServingSession
from keras_draw.serving.stand_in_server import StandInServer

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_MS = 2000  # the stand-in's --rest-api-timeout-in-ms in these tests


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The mnist preset exported as version 1, served by the stand-in, and loaded here as TF Serving loads it."""
    folder = tmp_path_factory.mktemp("serving")
    path = serving.export(Draw.from_preset("mnist", seed=0), folder / "draw")
    server = StandInServer(folder / "draw", rest_api_port=0, port=0, rest_api_timeout_in_ms=DEADLINE_MS)
    with ServingSession(path) as session:
        yield SimpleNamespace(url=server.rest_url, grpc=server.grpc_target, port=server.rest_url.rsplit(":", 1)[1],
                              folder=folder, session=session, server=server)
    server.stop()


def request(url, data=None, path="/v1/models/draw:predict"):
    """(HTTP status, JSON answer) of a GET (no data) or a POST of `data` (bytes or a JSON value)."""
    body = data if data is None or isinstance(data, bytes) else json.dumps(data).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data=body), timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_metadata_lists_every_signature_with_its_declared_shapes(served):
    for path in ("/v1/models/draw/metadata", "/v1/models/draw/versions/1/metadata"):
        status, answer = request(served.url, path=path)
        assert status == 200
        assert answer["model_spec"] == {"name": "draw", "signature_name": "", "version": "1"}
        signatures = answer["metadata"]["signature_def"]["signature_def"]
        assert sorted(signatures) == sorted(["__saved_model_init_op", "serving_default", "generate", "generate_seeded",
                                             "draw", "draw_seeded", "reconstruct", "reconstruct_seeded", "elbo",
                                             "elbo_seeded"])
        dims = lambda info: [int(d["size"]) for d in info["tensor_shape"]["dim"]]
        noise, seed = signatures["generate"]["inputs"]["noise"], signatures["elbo_seeded"]["inputs"]["seed"]
        assert (noise["dtype"], dims(noise), noise["tensor_shape"]["unknown_rank"]) == ("DT_FLOAT", [-1, 64, 100], False)
        assert (seed["dtype"], dims(seed)) == ("DT_INT64", [-1])
        assert dims(signatures["elbo_seeded"]["inputs"]["images"]) == [-1, 28, 28, 1]
        assert signatures["draw"]["method_name"] == "tensorflow/serving/predict"
    assert request(served.url, path="/v1/models/other/metadata") == (
        404, {"error": "Servable not found for request: Latest(other)"})


def test_answers_are_the_loaders_in_both_formats(served):
    seeds, x = [3, 4], (np.random.default_rng(0).random((2, 28, 28, 1)) > 0.5).astype(np.float32)
    expected = served.session.predict("elbo_seeded", {"images": x, "seed": np.array(seeds)})
    status, answer = request(served.url, {"signature_name": "elbo_seeded", "inputs": {"images": x.tolist(), "seed": seeds}})
    assert status == 200 and sorted(answer["outputs"]) == ["kl_loss", "loss", "reconstruction_loss"]
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(answer["outputs"][key], np.float32), value, err_msg=key)
    rows = [{"images": x[i].tolist(), "seed": seeds[i]} for i in range(2)]
    status, answer = request(served.url, {"signature_name": "elbo_seeded", "instances": rows})
    assert status == 200 and len(answer["predictions"]) == 2
    np.testing.assert_array_equal(np.asarray([row["loss"] for row in answer["predictions"]], np.float32), expected["loss"])


BAD = [  # (path, body, HTTP status, message): what TF Serving answers to each
    ("/v1/models/draw:predict", {"signature_name": "generate", "inputs": {"noise": np.zeros((2, 5, 100)).tolist()}},
     400, r"^assertion failed: \[noise must have shape \(batch, T, latent_dim\) = \(batch, 64, 100\)\. Received shape:\] \[2 5 100\]"),
    ("/v1/models/draw:predict", {"signature_name": "generate_seeded", "instances": [[1, 2], [3, 4]]}, 400,
     r"seed must have shape \(batch,\), one integer per row\. Received shape:\] \[2 2\]"),
    ("/v1/models/draw:predict", {"signature_name": "generate_seeded", "inputs": {"seed": list(range(1025))}}, 400,
     r"seed has more rows than the 1024 this model serves per request"),
    ("/v1/models/draw:predict", {"signature_name": "elbo_seeded", "inputs": {"seed": [1]}}, 400,
     r"Missing but required: \{images\}"),
    ("/v1/models/draw:predict", {"signature_name": "sample", "inputs": {"seed": [1]}}, 400,
     r'Serving signature name: "sample" not found in signature def'),
    ("/v1/models/draw/versions/2:predict", {"inputs": {"seed": [1]}}, 404, r"Servable not found for request: Specific\(draw, 2\)"),
    ("/v1/models/draw:sample", {}, 400, r"Malformed request: POST /v1/models/draw:sample"),
    ("/v2/predict", {}, 404, r"Malformed request"),
    ("/v1/models/draw:predict", b"{not json", 400, r"JSON Parse error"),
    ("/v1/models/draw:predict", b"[" * 100_000, 400, r"JSON Parse error"),  # nested too deep for Python's json
]


@pytest.mark.parametrize("path, body, status, message", BAD)
def test_bad_requests_get_tf_servings_status_and_message(served, path, body, status, message):
    code, answer = request(served.url, body, path)
    assert code == status and set(answer) == {"error"} and re.search(message, answer["error"]), answer


def test_a_body_past_the_limit_or_without_a_length_is_refused(served, monkeypatch):
    monkeypatch.setattr(stand_in_server, "MAX_BODY_BYTES", 1024)
    code, answer = request(served.url, b" " * 1025)
    assert code == 413 and "Content-Length of at most 1,024 bytes" in answer["error"]
    with socket.create_connection(("127.0.0.1", int(served.port)), timeout=30) as connection:
        connection.sendall(b"POST /v1/models/draw:predict HTTP/1.0\r\n\r\n")
        assert connection.makefile("rb").readline().split()[1] == b"411"


def test_a_run_past_the_deadline_answers_504(served):
    """1024 rows of `draw` at the mnist preset (64 steps of 256-unit LSTMs) take far more than 300 ms."""
    server = StandInServer(served.folder / "draw", rest_api_port=0, port=0, rest_api_timeout_in_ms=300)
    try:
        server.servables.get("draw")  # loaded before the request, as at the start of a server
        code, answer = request(server.rest_url, {"signature_name": "draw_seeded", "inputs": {"seed": list(range(1024))}})
    finally:
        server.stop()
    assert code == 504 and "Timed out" in answer["error"], (code, str(answer)[:300])


def slow_client(port, results, trickle_headers):
    """Sends a request one byte every 0.25 s (its headers too, with `trickle_headers`), at most 200
    bytes (50 s); records the seconds until the server closed the connection, or None."""
    body = b'{"signature_name": "generate_seeded", "inputs": {"seed": [1]}}' + b" " * 200
    head = f"POST /v1/models/draw:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    data = (head + body) if trickle_headers else body
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        if not trickle_headers:
            connection.sendall(head)
        try:
            for k in range(200):
                connection.sendall(data[k:k + 1])
                time.sleep(0.25)
        except OSError:  # reset by the server
            results.append(time.monotonic() - start)
            return
        connection.settimeout(5)
        try:
            results.append(time.monotonic() - start if connection.recv(1) == b"" else None)
        except OSError:
            results.append(time.monotonic() - start)


def test_slow_clients_are_cut_off_at_the_deadline_and_starve_no_one(served):
    """Eight clients sending a byte every 0.25 s (headers or body) while valid requests come: every
    valid request is answered, and each slow client is cut off near the 2 s deadline, long before
    its 50 s of bytes."""
    port, results = int(served.port), []
    slow = [threading.Thread(target=slow_client, args=(port, results, k % 2 == 0)) for k in range(8)]
    for thread in slow:
        thread.start()
    time.sleep(0.5)  # all of them connected and sending
    answers = [request(served.url, {"signature_name": "generate_seeded", "inputs": {"seed": [k]}})[0] for k in range(6)]
    for thread in slow:
        thread.join()
    assert answers == [200] * 6
    assert len(results) == 8 and all(seconds is not None and seconds < 20 for seconds in results), results


def test_a_new_version_is_served_and_the_old_one_no_longer(served, tmp_path):
    """TF Serving's default: the highest version only."""
    base = tmp_path / "draw"
    shutil.copytree(served.folder / "draw" / "1", base / "1")
    server = StandInServer(base, rest_api_port=0, port=0)
    try:
        body = {"signature_name": "generate_seeded", "instances": [5]}
        first = request(server.rest_url, body)
        shutil.copytree(base / "1", base / "2")
        assert request(server.rest_url, path="/v1/models/draw/metadata")[1]["model_spec"]["version"] == "2"
        assert request(server.rest_url, body) == first  # the same weights, now version 2
        assert request(server.rest_url, body, "/v1/models/draw/versions/1:predict")[0] == 404
    finally:
        server.stop()


def run_documented(block, served, workdir):
    """Runs a bash block of the docs, its `curl` and `python` lines, against the stand-in."""
    answers = []
    for line in block.strip().splitlines():
        line = line.split("  #")[0].strip()
        if "cluttered" in line or "classify" in line:
            continue  # a DrawClassifier's requests: tests/test_serving_classifier.py serves one
        if line.startswith("python export/client.py"):
            line = line.replace("python export/client.py", f"{sys.executable} {ROOT / 'export' / 'client.py'}")
            line = line.replace("localhost:8500", served.grpc) + f" --url {served.url}"
        elif line.startswith("python -c"):
            line = line.replace("python", sys.executable, 1)
        elif not line.startswith("curl"):
            continue
        line = line.replace("localhost:8501", f"127.0.0.1:{served.port}")
        result = subprocess.run(["bash", "-c", line], cwd=workdir, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (line, result.stderr[-2000:])
        if line.startswith("curl"):
            answers.append(json.loads(result.stdout))
    return answers


@pytest.mark.slow
@pytest.mark.parametrize("document", ["docs/serving.md", "export/README.md"])
def test_the_documented_requests_run_as_written(served, tmp_path, document):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    np.save(tmp_path / "digits.npy", (np.random.default_rng(1).random((3, 28, 28, 1)) > 0.5).astype(np.float32))
    text = (ROOT / document).read_text()
    blocks = [block[len("bash"):] for block in text.split("```")[1::2] if block.startswith("bash")]
    answers = [answer for block in blocks if "curl" in block or "client.py" in block
               for answer in run_documented(block, served, tmp_path)]
    assert len(answers) >= 4 and all("error" not in answer for answer in answers), answers
    by_shape = {json.dumps(answer)[:40] for answer in answers}
    assert any(key.startswith('{"predictions"') for key in by_shape) and any(key.startswith('{"outputs"') for key in by_shape)
    if document == "docs/serving.md":
        seeded = next(answer for answer in answers if "predictions" in answer)
        expected = served.session.predict("generate_seeded", {"seed": np.array([7, 8, 9])})["images"]
        np.testing.assert_array_equal(np.asarray(seeded["predictions"], np.float32), expected)
        assert (tmp_path / "samples.png").is_file() and (tmp_path / "drawing.png").is_file()  # the gRPC client


@pytest.mark.parametrize("flags, message", [
    (["--rest-api-port", "70000"], "--rest-api-port must be a port from 0 (any free one) to 65535. Received: --rest-api-port=70000"),
    (["--port", "-1"], "--port must be a port from 0"),
    (["--rest-api-port", "8600", "--port", "8600"], "--rest-api-port and --port must differ"),
    (["--model-name", "a/b"], "--model-name must be letters"),
    (["--rest-api-timeout-in-ms", "0"], "--rest-api-timeout-in-ms must be from 1 to 3600000"),
])
def test_stand_in_command_line_refuses_bad_flags_in_one_line(served, capsys, flags, message):
    assert stand_in_cli.main(["--model-base-path", str(served.folder / "draw"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stand_in_server.py: error: ") and message in err and err.count("\n") == 1, err


def test_stand_in_command_line_refuses_a_folder_without_versions_and_a_port_in_use(served, tmp_path, capsys):
    for folder in (tmp_path / "absent", tmp_path):
        assert stand_in_cli.main(["--model-base-path", str(folder)]) == 2
        assert "--model-base-path must be a folder holding a version folder" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        for flags, kind in ((["--rest-api-port", port, "--port", "0"], "REST"), (["--rest-api-port", "0", "--port", port], "gRPC")):
            assert stand_in_cli.main(["--model-base-path", str(served.folder / "draw"), *flags]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"stand_in_server.py: error: Cannot listen for {kind} on 127.0.0.1:{port}"), err
            assert err.count("\n") == 1


@pytest.mark.parametrize("sent", [b"GARBAGE\r\n\r\n", b"PUT /v1/models/draw:predict HTTP/1.1\r\nHost: x\r\n\r\n"])
def test_a_request_http_server_cannot_parse_gets_a_status_line_and_a_json_error(served, sent):
    """Not http.server's HTML page, nor for a request line without a version an HTTP/0.9 answer
    (the body alone, without a status)."""
    with socket.create_connection(("127.0.0.1", int(served.port)), timeout=20) as connection:
        connection.sendall(sent)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert head.startswith(b"HTTP/1.0 ") and status in (400, 501), answer[:200]
    assert json.loads(body)["error"].startswith("Malformed request: ")
    assert request(served.url, {"signature_name": "generate_seeded", "inputs": {"seed": [1]}})[0] == 200
