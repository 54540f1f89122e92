"""A STAND-IN for TensorFlow Serving, for tests and demos. It is not TensorFlow Serving.

Where TF Serving's binary cannot be installed (our CI machines), this small server answers TF
Serving's REST API

    POST /v1/models/NAME[/versions/N]:predict   {"signature_name": ..., "instances" | "inputs": ...}
    GET  /v1/models/NAME[/versions/N]/metadata  the signatures, as TF Serving lists them

and, on its gRPC port, PredictionService.Predict, through TF Serving's own loader and Predict
(keras_draw.serving.session, TensorFlow's C API): what it answers is what TF Serving answers, the
same numbers and the same errors, each with the HTTP status TF Serving gives its status code. Like
TF Serving by default, it serves the highest version in the model folder, and picks up a new one.
It listens on 127.0.0.1 only. Not implemented: classify and regress, "b64" values, version labels,
model status, batching and model configs (TF Serving's flags set those: docs/serving.md).

A REST request may take `rest_api_timeout_in_ms` (TF Serving's flag, default 30 s) from its
connection to its answer: a client that sends its request slowly is cut off at that time, whatever
it sends meanwhile, so slow clients cost a thread each for at most that long and never hold up
other requests; the model's run gets the time left and ends with HTTP 504 past it. A body or gRPC
message larger than MAX_BODY_BYTES is refused. The command line is export/stand_in_server.py.
"""

import http.server
import io
import json
import os
import re
import socket
import threading
import time

import numpy as np

from keras_draw.serving.session import DTYPES, ServingSession, SessionError

HOST = "127.0.0.1"  # loopback only, never 0.0.0.0
MAX_BODY_BYTES = 64 * 2**20  # 1024 rows of 28×28 images as JSON take ~16 MiB
PREDICT = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict")
METADATA = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?/metadata")
# TF Serving's HTTP status for each status code (model_servers/http_server.cc).
HTTP_STATUS = {"CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404,
               "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
               "UNAVAILABLE": 503}


# === The model ===


class Servables:
    """The highest version in `model_base_path`, loaded (once) when a request asks for it."""

    def __init__(self, model_base_path, model_name):
        self.model_base_path, self.model_name = model_base_path, model_name
        self._sessions, self._lock = {}, threading.Lock()

    def get(self, model_name, version=None):
        """(ServingSession, version) of the request's model; SessionError NOT_FOUND if not served."""
        names = os.listdir(self.model_base_path) if os.path.isdir(self.model_base_path) else []
        latest = max((int(name) for name in names if re.fullmatch(r"\d+", name)), default=None)
        if model_name != self.model_name or latest is None or version not in (None, latest):
            request = f"Latest({model_name})" if version is None else f"Specific({model_name}, {version})"
            raise SessionError("NOT_FOUND", f"Servable not found for request: {request}")
        with self._lock:
            if latest not in self._sessions:
                self._sessions[latest] = ServingSession(os.path.join(self.model_base_path, str(latest)))
        return self._sessions[latest], latest

    def close(self):
        for session in self._sessions.values():
            session.close()


# === REST ===


class _DeadlineReader(socket.SocketIO):
    """A socket's reads, each given the time left until `deadline` (time.monotonic()): a client
    sending a byte at a time cannot stretch its request past it (TimeoutError)."""

    def __init__(self, sock, deadline):
        super().__init__(sock, "rb")
        self.deadline = deadline

    def readinto(self, buffer):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took longer than --rest-api-timeout-in-ms")
        self._sock.settimeout(left)
        return super().readinto(buffer)


class RestHandler(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST predict and metadata endpoints over `self.server.servables`."""

    # A request line without a version ("GARBAGE") is answered with a status line and headers,
    # not as HTTP/0.9 (the body alone, which a client cannot tell from an answer).
    default_request_version = "HTTP/1.0"

    def setup(self):
        super().setup()
        self.reader = _DeadlineReader(self.connection, time.monotonic() + self.server.timeout_seconds)
        self.rfile = io.BufferedReader(self.reader)

    def do_GET(self):
        self._route(METADATA.fullmatch(self.path), lambda match: metadata(self.server.servables, match))

    def do_POST(self):
        match = PREDICT.fullmatch(self.path)
        header = self.headers.get("Content-Length", "")
        length = int(header) if header.isdigit() else -1
        try:
            body = self.rfile.read(length) if 0 <= length <= MAX_BODY_BYTES else self._discard(length)
        except OSError:  # TimeoutError included: too slow, cut off without an answer
            self.close_connection = True
            return
        if match and body is None:
            return self._answer(413 if length > MAX_BODY_BYTES else 411, {"error": (
                f"The request needs a Content-Length of at most {MAX_BODY_BYTES:,} bytes (this stand-in's limit). "
                f"Received: Content-Length: {header or 'none'}")})
        time_left_ms = lambda: max(int((self.reader.deadline - time.monotonic()) * 1000), 1)
        self._route(match, lambda match: rest_predict(self.server.servables, match, body, time_left_ms()))

    def _discard(self, length):
        """Reads and drops a body too large to keep (closing a socket with unread data resets it, and
        the client would lose the answer); returns None. Without a length, nothing can be read."""
        self.close_connection = True
        while length > 0 and (chunk := self.rfile.read(min(length, 1 << 16))):
            length -= len(chunk)

    def _route(self, match, answer):
        """The answer(match) of an endpoint, or TF Serving's status and message for a refused request."""
        if not match:
            return self._answer(404 if not self.path.startswith("/v1/") else 400,
                                {"error": f"Malformed request: {self.command} {self.path}"})
        try:
            self._answer(200, answer(match))
        except SessionError as err:
            self._answer(HTTP_STATUS.get(err.code, 500), {"error": err.message})

    def send_error(self, code, message=None, explain=None):
        """A request http.server cannot parse (a bad request line, headers too long): its status
        with a JSON error, as every other answer, instead of http.server's HTML page."""
        self.close_connection = True
        self._answer(code, {"error": f"Malformed request: {message or self.responses.get(code, ('',))[0]}"})

    def _answer(self, status, value):
        data = json.dumps(value).encode()
        self.connection.settimeout(max(self.reader.deadline - time.monotonic(), 1.0))  # a slow reader is cut off too
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def log_message(self, *args):  # quiet, like a test fixture should be
        pass


def rest_predict(servables, match, body, timeout_in_ms):
    """The JSON answer to a predict request's `body` (bytes); SessionError for a refused request."""
    session, _ = servables.get(match.group(1), match.group(2) and int(match.group(2)))
    try:
        body = json.loads(body)
    except (ValueError, RecursionError) as err:  # RecursionError: [[[[... nested too deep
        raise SessionError("INVALID_ARGUMENT", f"JSON Parse error: {err}") from None
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise SessionError("INVALID_ARGUMENT", 'The request must be a JSON object with either "instances" or "inputs"')
    name = body.get("signature_name", "serving_default")
    if name not in session.signatures:
        raise SessionError("INVALID_ARGUMENT", f'Serving signature name: "{name}" not found in signature def')
    dtypes = {key: tensor.dtype for key, tensor in session.signatures[name].inputs.items()}
    outputs = session.predict(name, rest_inputs(body, dtypes), timeout_in_ms)
    return rest_answer(outputs, rows="instances" in body)


def rest_inputs(body, dtypes):
    """{name: array} of a request in the columnar ("inputs") or row ("instances") format; `dtypes`
    {name: DataType enum} of the signature's inputs. A signature of one input may take it unnamed."""
    columns = body.get("inputs", body.get("instances"))
    try:
        if "instances" in body and columns and all(isinstance(row, dict) for row in columns):
            columns = {name: [row[name] for row in columns] for name in columns[0]}  # rows of named inputs
        elif not (isinstance(columns, dict) and "inputs" in body):
            columns = {next(iter(dtypes)): columns}  # one input, given by value
    except (KeyError, TypeError):
        raise SessionError("INVALID_ARGUMENT", "Every instance must be an object naming the same inputs") from None
    return {name: json_array(value, dtypes.get(name), name) for name, value in columns.items()}


def json_array(value, dtype, name):
    """The numpy array of a JSON value for an input of DataType `dtype` (None: not in the signature)."""
    wanted = {code: numpy for numpy, code in DTYPES.items()}.get(dtype, np.dtype(np.float32))
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged lists
        raise SessionError("INVALID_ARGUMENT", f"Input {name!r} is not a rectangular array: {err}") from None
    if array.dtype.kind not in "biuf" or (wanted.kind in "iu" and array.dtype.kind == "f"):
        raise SessionError("INVALID_ARGUMENT", f"JSON Value of input {name!r} is not of expected type: {wanted.name}")
    return array.astype(wanted)


def rest_answer(outputs, rows):
    """{"predictions": ...} (row format) or {"outputs": ...}; a single output goes unnamed."""
    if not rows:
        return {"outputs": next(iter(outputs.values())).tolist() if len(outputs) == 1 else
                {name: value.tolist() for name, value in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{name: value[i].tolist() for name, value in outputs.items()} for i in range(count)]}


def metadata(servables, match):
    """GET .../metadata: the model spec and its SignatureDefs, in TF Serving's JSON."""
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    session, version = servables.get(match.group(1), match.group(2) and int(match.group(2)))
    signatures = get_model_metadata_pb2.SignatureDefMap(signature_def=session.signatures)
    to_json = lambda proto: json_format.MessageToDict(proto, always_print_fields_with_no_presence=True,
                                                     preserving_proto_field_name=True)
    return {"model_spec": {"name": servables.model_name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": to_json(signatures)}}


class RestServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: socketserver's 5 reset connections in bursts of clients


# === gRPC ===


def grpc_server(servables, port, threads=8):
    """A gRPC server with PredictionService.Predict, listening on 127.0.0.1:`port` (not started)."""
    from concurrent import futures

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            spec = request.model_spec
            try:
                session, version = servables.get(spec.name, spec.version.value if spec.HasField("version") else None)
                inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
                left = context.time_remaining()
                outputs = session.predict(spec.signature_name, inputs, int(left * 1000) if left else 0)
            except SessionError as err:
                context.abort(getattr(grpc.StatusCode, err.code, grpc.StatusCode.UNKNOWN), err.message)
            answer = predict_pb2.PredictResponse()
            answer.model_spec.name, answer.model_spec.version.value = spec.name, version
            answer.model_spec.signature_name = spec.signature_name or "serving_default"
            for name, value in outputs.items():
                answer.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            return answer

    options = [("grpc.max_receive_message_length", MAX_BODY_BYTES), ("grpc.max_send_message_length", -1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(), server)
    try:
        return server, server.add_insecure_port(f"{HOST}:{port}")
    except RuntimeError as err:  # grpc: "Failed to bind to address ..."
        raise OSError(f"Cannot listen for gRPC on {HOST}:{port}: {str(err).split(';')[0]}") from None


# === Starting and stopping ===


class StandInServer:
    """REST and gRPC on 127.0.0.1, in threads; port 0 picks a free port (`rest_url`, `grpc_target`)."""

    def __init__(self, model_base_path, model_name="draw", rest_api_port=0, port=0, rest_api_timeout_in_ms=30000):
        self.servables = Servables(model_base_path, model_name)
        try:
            self._http = RestServer((HOST, rest_api_port), RestHandler)
        except OSError as err:  # EADDRINUSE, EACCES
            raise OSError(f"Cannot listen for REST on {HOST}:{rest_api_port}: {err.strerror or err}") from None
        self._http.servables, self._http.timeout_seconds = self.servables, rest_api_timeout_in_ms / 1000
        self.rest_url = f"http://{HOST}:{self._http.server_address[1]}"
        try:
            self._grpc, grpc_port = grpc_server(self.servables, port)
        except OSError:
            self._http.server_close()
            raise
        self.grpc_target = f"{HOST}:{grpc_port}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._grpc.start()

    def stop(self):
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=None)
        self.servables.close()
