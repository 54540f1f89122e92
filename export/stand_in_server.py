"""A STAND-IN for TensorFlow Serving, for tests and demos. It is not TensorFlow Serving.

The TF Serving binary cannot be installed everywhere (not on our CI machines), so this small
server lets the client be tested end to end: it follows TF Serving's documented REST predict API

    POST /v1/models/NAME[/versions/N]:predict   {"signature_name": ..., "instances" | "inputs": ...}
    GET  /v1/models/NAME[/versions/N]           the versions and their state

(answers {"predictions": ...} / {"outputs": ...}, or {"error": "..."} with HTTP 400 for a bad
request and 404 for an unknown model, version or path) and, with a gRPC port, the Predict method of
tensorflow.serving.PredictionService. It runs the real exported SavedModel, loaded with plain
`tf.saved_model.load` (no keras_draw), and serves the highest version unless asked for another.
It listens on 127.0.0.1 only. Not implemented: classify/regress, "b64" values, model configs,
batching, version labels and the metadata API.

It refuses, before running the model, a request larger than its limits (body size, rows, answer
size) and runs at most --max-concurrent requests at once (stand_in_limits.py says why and how).

    python export/stand_in_server.py --export-dir serving/draw --rest-port 8501 --grpc-port 8500
"""

import argparse
import http.server
import json
import os
import re
import sys
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if __package__:  # imported as export.stand_in_server
    from .stand_in_limits import (Admission, Limits, RequestError, add_limit_flags, body_length, check_answer,
                                  check_rows, check_tensor_proto, declared_length, limits_from_args)
else:  # run as a script: export/ is sys.path[0]
    from stand_in_limits import (Admission, Limits, RequestError, add_limit_flags, body_length, check_answer,
                                 check_rows, check_tensor_proto, declared_length, limits_from_args)

HOST = "127.0.0.1"  # loopback only, never 0.0.0.0
PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(:predict)?$")
MODEL_NAME = re.compile(r"[\w.-]+")  # what fits in the URL path


# === The models ===


class Servables:
    """The versions of one model in a TF Serving model folder, each loaded on first use."""

    def __init__(self, export_dir, model_name):
        self.export_dir = export_dir
        self.model_name = model_name
        self._loaded = {}
        self._lock = threading.Lock()

    def versions(self):
        return sorted(int(name) for name in os.listdir(self.export_dir) if re.fullmatch(r"\d+", name))

    def signature(self, model_name, version, signature_name):
        """(the concrete function, the version it came from); RequestError when not found."""
        if model_name != self.model_name:
            raise RequestError(404, f"Servable not found for request: Latest({model_name})")
        versions = self.versions()
        if version is None and versions:
            version = versions[-1]
        if version not in versions:
            raise RequestError(404, f"Servable not found for request: Specific({model_name}, {version})")
        with self._lock:
            if version not in self._loaded:
                self._loaded[version] = tf.saved_model.load(os.path.join(self.export_dir, str(version)))
        signatures = self._loaded[version].signatures
        if signature_name not in signatures:
            raise RequestError(400, f'Serving signature name: "{signature_name}" not found in signature def')
        return signatures[signature_name], version


def input_specs(function):
    """{input name: TensorSpec} of a signature function."""
    return dict(function.structured_input_signature[1])


def run_signature(function, arrays):
    """Calls a signature with {name: numpy array}; returns {name: numpy array}."""
    specs = input_specs(function)
    if set(arrays) != set(specs):  # TF Serving's message (predict_util.cc)
        braces = lambda names: "{" + ",".join(sorted(names)) + "}"
        raise RequestError(400, (
            f"input size does not match signature: {len(arrays)}!={len(specs)} len({braces(arrays)}) != "
            f"len({braces(specs)}). Sent extra: {braces(set(arrays) - set(specs))}. "
            f"Missing but required: {braces(set(specs) - set(arrays))}."
        ))
    for name, array in arrays.items():
        if array.dtype != specs[name].dtype.as_numpy_dtype:
            raise RequestError(400, f"Expects arg {name} to be {specs[name].dtype.name} but {array.dtype} is provided")
    try:
        outputs = function(**{name: tf.constant(array) for name, array in arrays.items()})
    except tf.errors.InvalidArgumentError as err:
        raise RequestError(400, status_message(err)) from None
    except tf.errors.OpError as err:
        raise RequestError(500, status_message(err)) from None
    return {name: value.numpy() for name, value in outputs.items()}


def status_message(err):
    """TensorFlow's status message, as TF Serving returns it: without the header Python adds."""
    lines = err.message.splitlines()
    header = ("Graph execution error", "Detected at node", "<stack traces unavailable>", " ")
    while lines and (not lines[0].strip() or lines[0].startswith(header)):
        lines.pop(0)
    return "\n".join(lines) or err.message


# === REST ===


def json_to_array(value, dtype, name):
    """A JSON value as an array of the signature's dtype; integers only for an integer input."""
    try:
        array = np.asarray(value)
        if dtype.is_integer and array.size and array.dtype.kind not in "iu":
            raise ValueError(f"is not of expected type: {dtype.name} (received {array.dtype.name} values)")
        return array.astype(dtype.as_numpy_dtype)
    except (ValueError, TypeError) as err:
        raise RequestError(400, f"Failed to process input {name!r} as {dtype.name}: {err}") from None


def rest_inputs(body, dtypes):
    """{name: array} from a predict request body, row ("instances") or columnar ("inputs").

    `dtypes` is {input name: tf.DType} of the signature.
    """
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(400, "JSON Value: must have exactly one of 'instances' or 'inputs'")
    if "inputs" in body:
        columns = body["inputs"]
        if not isinstance(columns, dict):  # a single input, given by value
            columns = {name: columns for name in dtypes} if len(dtypes) == 1 else {"inputs": columns}
        return {name: json_to_array(value, dtypes.get(name, tf.float32), name) for name, value in columns.items()}
    rows = body["instances"]
    if not isinstance(rows, list):
        raise RequestError(400, "JSON Value: 'instances' must be a list")
    if rows and all(isinstance(row, dict) for row in rows):
        names = set(rows[0])
        if any(set(row) != names for row in rows):
            raise RequestError(400, "Failed to process 'instances': every instance must have the same named inputs")
        return {name: json_to_array([row[name] for row in rows], dtypes.get(name, tf.float32), name) for name in names}
    if len(dtypes) != 1:
        raise RequestError(400, f"'instances' must be objects naming the inputs {sorted(dtypes)}")
    ((name, dtype),) = dtypes.items()
    return {name: json_to_array(rows, dtype, name)}


def rest_answer(outputs, rows):
    """{"predictions": ...} (row format) or {"outputs": ...}; one output goes unnamed."""
    if not rows:
        return {"outputs": next(iter(outputs.values())).tolist() if len(outputs) == 1 else
                {name: value.tolist() for name, value in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{name: value[i].tolist() for name, value in outputs.items()} for i in range(count)]}


def rest_predict(servables, model_name, version, body, limits):
    """The JSON answer to a predict request, or RequestError (a request past `limits` included)."""
    if not isinstance(body, dict):
        raise RequestError(400, "JSON Value: the request must be a JSON object")
    signature_name = body.get("signature_name", "serving_default")
    function, _ = servables.signature(model_name, version, signature_name)
    dtypes = {name: spec.dtype for name, spec in input_specs(function).items()}
    arrays = rest_inputs(body, dtypes)
    rows = check_rows({name: array.shape for name, array in arrays.items()}, limits)
    check_answer(function, signature_name, rows, limits)
    return rest_answer(run_signature(function, arrays), rows="instances" in body)


def model_status(servables, model_name, version):
    """GET /v1/models/NAME[/versions/N]: the versions available."""
    versions = servables.versions() if model_name == servables.model_name else []
    versions = [v for v in versions if version is None or v == version]
    if not versions:
        raise RequestError(404, f"Could not find any versions of model {model_name}")
    ok = {"error_code": "OK", "error_message": ""}
    return {"model_version_status": [{"version": str(v), "state": "AVAILABLE", "status": ok} for v in versions]}


class RestHandler(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST predict and status endpoints over `self.server.servables`.

    A predict request's body is read only once its size is within the limits and an execution
    slot is free; the slot is held until the answer is written, so that decoding, running and
    encoding (where the memory goes) happen for at most --max-concurrent requests at once.
    """

    timeout = 30  # seconds a stalled client may hold its connection (and a slot) before it is dropped
    DRAIN_LIMIT = 1 << 31  # a refused body up to this size is read and dropped (see `_drain`)

    def do_POST(self):
        self._unread = declared_length(self.headers.get("Content-Length"))
        match = PREDICT_PATH.match(self.path)
        if not match or not match.group(3):
            return self._answer(404, {"error": f"Malformed request: POST {self.path}"})
        try:
            body_length(self.headers.get("Content-Length"), self.server.limits)
            with self.server.admission.slot():
                self._respond(rest_predict, match, self._read_json(), self.server.limits)
        except RequestError as err:
            self._answer(err.status, {"error": str(err)})

    def do_GET(self):
        self._unread = 0
        match = PREDICT_PATH.match(self.path)
        if not match or match.group(3):
            return self._answer(404, {"error": f"Malformed request: GET {self.path}"})
        self._respond(model_status, match)

    def _read_json(self):
        data, self._unread = self.rfile.read(self._unread), 0
        try:
            return json.loads(data or b"null")
        except (ValueError, RecursionError) as err:  # RecursionError: [[[[... nested too deep
            raise RequestError(400, f"JSON Parse error: {err}") from None

    def _respond(self, handler, match, *args):
        model_name, version = match.group(1), match.group(2) and int(match.group(2))
        try:
            self._answer(200, handler(self.server.servables, model_name, version, *args))
        except RequestError as err:
            self._answer(err.status, {"error": str(err)})
        except Exception as err:  # the server answers, whatever went wrong
            self._answer(500, {"error": f"{type(err).__name__}: {err}"})

    def _answer(self, status, value):
        data = json.dumps(value).encode()
        self._drain()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(data)

    def _drain(self):
        """Reads and drops the unread body of a refused request, in small pieces: closing a
        connection with unread data resets it, and the client would lose the answer."""
        if self._unread > self.DRAIN_LIMIT:
            self.close_connection = True
            return
        while self._unread > 0:
            chunk = self.rfile.read(min(self._unread, 1 << 16))
            if not chunk:
                break
            self._unread -= len(chunk)

    def log_message(self, *args):  # quiet, like a test fixture should be
        pass


class RestServer(http.server.ThreadingHTTPServer):
    """A thread per connection; a listen backlog for bursts of clients (socketserver's 5 made the
    kernel reset connections when 50 clients connected at once)."""

    daemon_threads = True
    request_queue_size = 256


# === gRPC ===


def grpc_inputs(request, function, signature_name, limits):
    """{name: array} of a PredictRequest, once the shapes its tensors declare fit `limits`."""
    shapes = {name: check_tensor_proto(name, proto, limits) for name, proto in request.inputs.items()}
    check_answer(function, signature_name, check_rows(shapes, limits), limits)
    try:
        return {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    except (ValueError, TypeError) as err:  # a tensor_content that does not fill its shape, ...
        raise RequestError(400, f"Cannot read the input tensors: {err}") from None


def grpc_servicer(servables, limits, admission):
    """A tensorflow.serving.PredictionService servicer with Predict over `servables`."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    codes = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 500: grpc.StatusCode.INTERNAL,
             503: grpc.StatusCode.RESOURCE_EXHAUSTED}  # what gRPC itself answers past maximum_concurrent_rpcs

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            signature_name = spec.signature_name or "serving_default"
            try:
                with admission.slot():
                    function, version = servables.signature(spec.name, version, signature_name)
                    outputs = run_signature(function, grpc_inputs(request, function, signature_name, limits))
                    return response(spec.name, version, signature_name, outputs, request.output_filter)
            except RequestError as err:
                context.abort(codes[err.status], str(err))

    def response(model_name, version, signature_name, outputs, output_filter):
        answer = predict_pb2.PredictResponse()
        answer.model_spec.name = model_name
        answer.model_spec.version.value = version
        answer.model_spec.signature_name = signature_name
        for name, value in outputs.items():
            if not output_filter or name in output_filter:
                answer.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return answer

    return PredictionService(), prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server


# === Starting and stopping ===


class StandInServer:
    """The REST server (and the gRPC one, with `grpc_port`) on 127.0.0.1, in threads.

    Port 0 picks a free port; `rest_url` and `grpc_target` say where they listen. Both share
    one `admission` (the model's executions) and the `limits` (default: `Limits()`).
    """

    def __init__(self, export_dir, model_name="draw", rest_port=0, grpc_port=None, limits=None):
        self.servables = Servables(export_dir, model_name)
        self.limits = limits or Limits()
        self.admission = Admission(self.limits)
        try:
            self._http = RestServer((HOST, rest_port), RestHandler)
        except OSError as err:  # EADDRINUSE, EACCES
            raise OSError(f"Cannot listen for REST on {HOST}:{rest_port}: {err.strerror or err}") from None
        self._http.servables, self._http.limits, self._http.admission = self.servables, self.limits, self.admission
        self.rest_url = f"http://{HOST}:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._grpc, self.grpc_target = None, None
        if grpc_port is not None:
            try:
                self._start_grpc(grpc_port)
            except BaseException:
                self.stop()
                raise

    def _start_grpc(self, port):
        from concurrent import futures

        import grpc

        workers = self.limits.max_concurrent + self.limits.max_waiting  # the rest: RESOURCE_EXHAUSTED
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=self.limits.grpc_options(),
                                 maximum_concurrent_rpcs=workers)
        servicer, add_servicer = grpc_servicer(self.servables, self.limits, self.admission)
        add_servicer(servicer, self._grpc)
        try:
            self.grpc_target = f"{HOST}:{self._grpc.add_insecure_port(f'{HOST}:{port}')}"
        except RuntimeError as err:  # grpc: "Failed to bind to address ..."
            raise OSError(f"Cannot listen for gRPC on {HOST}:{port}: {str(err).split(';')[0]}") from None
        self._grpc.start()

    def stop(self):
        self._http.shutdown()
        self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace=None)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", required=True, help="the TF Serving model folder, e.g. serving/draw")
    parser.add_argument("--model-name", default="draw")
    parser.add_argument("--rest-port", type=int, default=8501, help="0: any free port (default: %(default)s)")
    parser.add_argument("--grpc-port", type=int, default=None, help="0: any free port (default: no gRPC)")
    add_limit_flags(parser)
    return parser.parse_args(argv)


def checked_limits(args):
    """The Limits of the command line, or ValueError (one line) for a value no user can mean."""
    if not os.path.isdir(args.export_dir):
        raise ValueError(f"No such folder. Received: --export-dir={args.export_dir!r}")
    if not MODEL_NAME.fullmatch(args.model_name):
        raise ValueError(f"--model-name must be letters, digits, '_', '.' or '-'. Received: {args.model_name!r}")
    for flag, port in (("--rest-port", args.rest_port), ("--grpc-port", args.grpc_port)):
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"{flag} must be a port from 0 (any free one) to 65535. Received: {flag}={port}")
    if args.grpc_port and args.grpc_port == args.rest_port:
        raise ValueError(f"--rest-port and --grpc-port must differ. Received: both {args.rest_port}")
    return limits_from_args(args)


def main(argv=None):
    args = parse_args(argv)
    try:
        server = StandInServer(args.export_dir, args.model_name, args.rest_port, args.grpc_port, checked_limits(args))
    except (ValueError, OSError) as err:  # a bad flag, a port in use
        print(f"stand_in_server.py: error: {err}", file=sys.stderr)
        return 2
    print(f"Stand-in (not TensorFlow Serving) for {args.export_dir}: REST {server.rest_url}"
          + (f", gRPC {server.grpc_target}" if server.grpc_target else ""), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
