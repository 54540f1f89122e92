"""A STAND-IN for TensorFlow Serving, for tests and demos. It is not TensorFlow Serving.

The TF Serving binary cannot be installed everywhere (not on our CI machines), so this small
server lets the client be tested end to end: it follows TF Serving's documented REST predict API

    POST /v1/models/NAME[/versions/N]:predict   {"signature_name": ..., "instances" | "inputs": ...}
    GET  /v1/models/NAME[/versions/N]           the versions and their state

(answers {"predictions": ...} / {"outputs": ...}, or {"error": "..."} with HTTP 400 for a bad
request and 404 for an unknown model, version or path) and, with a gRPC port, the Predict method of
tensorflow.serving.PredictionService. It runs the real exported SavedModel, loaded with plain
`tf.saved_model.load` (no keras_draw model code: stand_in_predict.py answers the requests), and
serves the highest version unless asked for another. It listens on 127.0.0.1 only. Not
implemented: classify/regress, "b64" values, model configs, batching, version labels and the
metadata API.

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
from pathlib import Path

if __package__:  # imported as export.stand_in_server
    from .stand_in_limits import (Admission, Limits, RequestError, add_limit_flags, body_length, declared_length,
                                  limits_from_args)
    from .stand_in_predict import Servables, grpc_predict, model_status, rest_predict
else:  # run as a script: export/ is sys.path[0]; keras_draw may be the checkout's
    sys.path.append(str(Path(__file__).resolve().parents[1]))
    from stand_in_limits import (Admission, Limits, RequestError, add_limit_flags, body_length, declared_length,
                                 limits_from_args)
    from stand_in_predict import Servables, grpc_predict, model_status, rest_predict

from keras_draw import console  # noqa: E402

HOST = "127.0.0.1"  # loopback only, never 0.0.0.0
PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(:predict)?$")
MODEL_NAME = re.compile(r"[\w.-]+")  # what fits in the URL path


# === REST ===


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


def grpc_servicer(servables, limits, admission):
    """A tensorflow.serving.PredictionService servicer with Predict over `servables`."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    codes = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 500: grpc.StatusCode.INTERNAL,
             503: grpc.StatusCode.RESOURCE_EXHAUSTED}  # what gRPC itself answers past maximum_concurrent_rpcs

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            try:
                with admission.slot():
                    return grpc_predict(servables, request, limits)
            except RequestError as err:
                context.abort(codes[err.status], str(err))

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
        return console.fail("stand_in_server.py", err)
    print(f"Stand-in (not TensorFlow Serving) for {args.export_dir}: REST {server.rest_url}"
          + (f", gRPC {server.grpc_target}" if server.grpc_target else ""), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
