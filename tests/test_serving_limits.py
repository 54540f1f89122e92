"""The stand-in server's limits (export/stand_in_limits.py): requests too large are refused with a
one-line message naming the limit before the model runs, a busy server answers 503 (gRPC
RESOURCE_EXHAUSTED) in arrival order, and its command line refuses flags no user can mean.
"""

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest

from export import stand_in_predict, stand_in_server
from export.client import Client, ServingError
from export.stand_in_limits import Admission, Limits, RequestError
from export.stand_in_server import StandInServer
from keras_draw import Draw, serving

T, Z = 3, 4  # the tiny preset's num_steps and latent_dim
DRAW_VALUES_PER_ROW = 28 * 28 + T * 28 * 28 + T * 5 + T * 4  # images, canvases, write_window, write_box
LIMITS = Limits(max_body_bytes=64 * 1024, max_rows=16, max_answer_values=8 * DRAW_VALUES_PER_ROW,
                max_concurrent=1, max_waiting=1, wait_seconds=0.5)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving") / "draw"
    serving.export(Draw.from_preset("tiny", seed=0), folder)
    return folder


@pytest.fixture
def server(export_dir, monkeypatch):
    """The stand-in at LIMITS over REST and gRPC; `runs` counts the model's executions."""
    runs = []
    run_signature = stand_in_predict.run_signature
    monkeypatch.setattr(stand_in_predict, "run_signature", lambda *args: runs.append(1) or run_signature(*args))
    stand_in = StandInServer(export_dir, "draw", rest_port=0, grpc_port=0, limits=LIMITS)
    yield SimpleNamespace(url=stand_in.rest_url, grpc=stand_in.grpc_target, stand_in=stand_in, runs=runs)
    stand_in.stop()


def post(url, data):
    """(HTTP status, JSON answer, headers) of a raw POST of `data` bytes."""
    request = urllib.request.Request(url + "/v1/models/draw:predict", data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def seeds(signature, count):
    return json.dumps({"signature_name": signature, "inputs": {"seed": list(range(count))}}).encode()


TOO_LARGE = [  # (body, HTTP status, the message's start, the flag it names)
    (seeds("generate_seeded", 17), 400, "The request has 17 rows (batch size); this server takes at most 16", "--max-rows"),
    (json.dumps({"signature_name": "generate_seeded", "instances": list(range(1000))}).encode(), 400,
     "The request has 1,000 rows", "--max-rows"),
    (seeds("draw_seeded", 9), 400, f"The answer to 9 rows of 'draw_seeded' would hold {9 * DRAW_VALUES_PER_ROW:,} values",
     "--max-answer-values"),
    (b" " * (64 * 1024 + 1), 413, "The request body is 65,537 bytes; this server reads at most 65,536", "--max-body-bytes"),
]


@pytest.mark.parametrize("data, status, message, flag", TOO_LARGE, ids=["columns", "instances", "answer", "body"])
def test_requests_past_a_limit_are_refused_before_the_model_runs(server, data, status, message, flag):
    code, answer, _ = post(server.url, data)
    assert (code, set(answer)) == (status, {"error"})
    assert answer["error"].startswith(message) and flag in answer["error"] and "\n" not in answer["error"]
    assert server.runs == []
    assert post(server.url, seeds("draw_seeded", 8))[0] == 200  # the limits themselves are allowed
    assert len(server.runs) == 1


def test_grpc_applies_the_same_limits(server):
    client = Client(grpc=server.grpc)
    with pytest.raises(ServingError, match=r"^gRPC INVALID_ARGUMENT .*17 rows .*--max-rows"):
        client.generate(17, seed=0)
    with pytest.raises(ServingError, match=rf"^gRPC INVALID_ARGUMENT .*would hold {9 * DRAW_VALUES_PER_ROW:,} values.*--max-answer"):
        client.draw(9, seed=0)
    with pytest.raises(ServingError, match=r"^gRPC RESOURCE_EXHAUSTED .*larger than max \(\d+ vs\. 65536\)"):
        client.predict("generate", noise=np.zeros((16, T, 1024), np.float32))  # a 196 KiB message
    assert server.runs == []
    assert client.generate(16, seed=0).shape == (16, 28, 28, 1)


def test_a_grpc_tensor_declaring_a_huge_shape_is_refused_before_it_is_unpacked(server):
    import grpc
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "draw", "generate"
    noise = request.inputs["noise"]
    noise.dtype = types_pb2.DT_FLOAT
    for size in (10**6, 64, 100):  # 25.6 GB once unpacked: TensorProto's one value stands for all
        noise.tensor_shape.dim.add(size=size)
    noise.float_val.append(0.5)
    with grpc.insecure_channel(server.grpc) as channel:
        with pytest.raises(grpc.RpcError) as error:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "declares shape [1000000, 64, 100]" in error.value.details() and "--max-body-bytes" in error.value.details()


def test_a_busy_server_queues_one_request_then_answers_503_at_once(server):
    """max_concurrent=1, max_waiting=1: with the slot held, one request waits, the next is refused."""
    with server.stand_in.admission.slot():  # the model "runs" until the block ends
        waiting = []
        thread = threading.Thread(target=lambda: waiting.append(post(server.url, seeds("generate_seeded", 1))))
        thread.start()
        while not server.stand_in.admission._queue:  # the request is in the queue (deterministic)
            time.sleep(0.01)
        code, answer, headers = post(server.url, seeds("generate_seeded", 1))
        assert code == 503 and headers["Retry-After"] == "1"
        assert answer["error"] == ("The server is busy: 1 requests running and 1 waiting "
                                   "(--max-concurrent, --max-waiting). Retry later.")
        with pytest.raises(ServingError, match=r"^gRPC RESOURCE_EXHAUSTED .*The server is busy"):
            Client(grpc=server.grpc).generate(1, seed=0)
        thread.join()  # its wait (0.5 s) ran out
    assert waiting[0][0] == 503 and "within 0.5 s (--wait-seconds)" in waiting[0][1]["error"]
    assert server.runs == []
    assert post(server.url, seeds("generate_seeded", 1))[0] == 200  # the slot is free again


@pytest.mark.parametrize("max_concurrent", [1, 2])
def test_admission_runs_at_most_max_concurrent_in_arrival_order(max_concurrent):
    admission = Admission(Limits(max_concurrent=max_concurrent, max_waiting=8, wait_seconds=30))
    order, release = [], threading.Event()

    def request(k):
        with admission.slot():
            order.append(k)
            release.wait()

    threads = [threading.Thread(target=request, args=(k,)) for k in range(6)]
    for k, thread in enumerate(threads):
        thread.start()
        while len(order) + len(admission._queue) <= k:  # request k is running or queued before k + 1 starts
            time.sleep(0.001)
    assert sorted(order) == list(range(max_concurrent))  # the others wait
    release.set()
    for thread in threads:
        thread.join()
    assert admission.peak_running == max_concurrent and sorted(order) == list(range(6))
    if max_concurrent == 1:
        assert order == list(range(6))  # one at a time: exactly the arrival order


@pytest.mark.parametrize("field, value", [("max_rows", 0), ("max_body_bytes", 2**40), ("max_concurrent", 0),
                                          ("wait_seconds", float("nan")), ("max_waiting", -1), ("max_rows", True)])
def test_limits_no_user_can_mean_are_refused(field, value):
    with pytest.raises(ValueError, match=rf"^--{field.replace('_', '-')} must be between .* Received: "):
        Limits(**{field: value})


def test_malformed_rest_bodies_get_400(server):
    assert post(server.url, b"[" * 60_000)[0] == 400  # nested too deep for json: RecursionError
    connection = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30)
    with connection:  # no Content-Length: the body is not read
        connection.sendall(b"POST /v1/models/draw:predict HTTP/1.0\r\n\r\n")
        assert connection.makefile("rb").readline().split()[1] == b"411"
    assert server.runs == []


def bound_port():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    return listener


@pytest.mark.parametrize("flags, message", [
    (["--rest-port", "70000"], "--rest-port must be a port from 0 (any free one) to 65535. Received: --rest-port=70000"),
    (["--grpc-port", "-1"], "--grpc-port must be a port from 0"),
    (["--rest-port", "8600", "--grpc-port", "8600"], "--rest-port and --grpc-port must differ"),
    (["--model-name", "a/b"], "--model-name must be letters"),
    (["--max-rows", "0"], "--max-rows must be between 1 and 1048576. Received: 0"),
    (["--max-body-bytes", "10"], "--max-body-bytes must be between 1024"),
    (["--wait-seconds", "inf"], "--wait-seconds must be between"),
    (["--max-concurrent", "1000"], "--max-concurrent must be between 1 and 64"),
])
def test_stand_in_command_line_refuses_bad_flags_in_one_line(export_dir, capsys, flags, message):
    assert stand_in_server.main(["--export-dir", str(export_dir), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stand_in_server.py: error: ") and message in err and err.count("\n") == 1, err


def test_stand_in_command_line_refuses_a_missing_folder_and_a_port_in_use(export_dir, tmp_path, capsys):
    assert stand_in_server.main(["--export-dir", str(tmp_path / "absent")]) == 2
    assert "No such folder" in capsys.readouterr().err
    with bound_port() as taken:
        port = str(taken.getsockname()[1])
        for flags in (["--rest-port", port], ["--rest-port", "0", "--grpc-port", port]):
            assert stand_in_server.main(["--export-dir", str(export_dir), *flags]) == 2
            err = capsys.readouterr().err
            assert err.startswith("stand_in_server.py: error: ") and err.count("\n") == 1, err
            assert f"Cannot listen for {'gRPC' if '--grpc-port' in flags else 'REST'} on 127.0.0.1:{port}" in err, err


def test_refusals_are_request_errors_with_http_statuses():
    limits = Limits(max_body_bytes=1024)
    from export.stand_in_limits import body_length, check_rows

    assert body_length("1024", limits) == 1024
    for header, status in ((None, 411), ("-3", 400), ("ten", 400), ("1025", 413)):
        with pytest.raises(RequestError) as error:
            body_length(header, limits)
        assert error.value.status == status
    assert check_rows({"images": (3, 28, 28, 1), "seed": (3,)}, limits) == 3
    assert check_rows({"noise": ()}, limits) == 1  # a scalar: the graph refuses its shape
