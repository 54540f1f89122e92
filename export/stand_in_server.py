"""A STAND-IN for TensorFlow Serving, for tests and demos: not TensorFlow Serving.

    python export/stand_in_server.py --model-base-path serving/draw --rest-api-port 8501 --port 8500

The command line of keras_draw.serving.stand_in_server: serves the highest version in
--model-base-path over TF Serving's REST API and gRPC on 127.0.0.1,
with TF Serving's flag names, until Ctrl-C. A flag no user can mean, a folder without a version or
a port in use exits with status 2 and one line; a version that does not load, with status 1.
"""

import argparse
import os
import re
import sys
import threading

from keras_draw import console
from keras_draw.serving.session import SessionError
from keras_draw.serving.stand_in_server import StandInServer


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", required=True, help="the model folder of version subfolders, e.g. serving/draw")
    parser.add_argument("--model-name", default="draw", help="the name in request URLs (default: %(default)s)")
    parser.add_argument("--rest-api-port", type=int, default=8501, help="0: any free port (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8500, help="gRPC; 0: any free port (default: %(default)s)")
    parser.add_argument("--rest-api-timeout-in-ms", type=int, default=30000,
                        help="the longest a REST request may take, from connection to answer (default: %(default)s)")
    return parser.parse_args(argv)


def check_args(args):
    """ValueError (one line) for a flag no user can mean, before anything is loaded."""
    if not re.fullmatch(r"[\w.-]+", args.model_name):
        raise ValueError(f"--model-name must be letters, digits, '_', '.' or '-'. Received: {args.model_name!r}")
    for flag, port in (("--rest-api-port", args.rest_api_port), ("--port", args.port)):
        if not 0 <= port <= 65535:
            raise ValueError(f"{flag} must be a port from 0 (any free one) to 65535. Received: {flag}={port}")
    if args.port and args.port == args.rest_api_port:
        raise ValueError(f"--rest-api-port and --port must differ. Received: both {args.port}")
    if not 1 <= args.rest_api_timeout_in_ms <= 3_600_000:
        raise ValueError("--rest-api-timeout-in-ms must be from 1 to 3600000 (an hour). "
                         f"Received: {args.rest_api_timeout_in_ms}")
    if not os.path.isdir(args.model_base_path) or not any(re.fullmatch(r"\d+", n) for n in os.listdir(args.model_base_path)):
        raise ValueError(f"--model-base-path must be a folder holding a version folder (1, 2, ...), as export.py writes. "
                         f"Received: {args.model_base_path!r}")


def main(argv=None):
    args = parse_args(argv)
    try:
        check_args(args)
        console.start_tensorflow()
        server = StandInServer(args.model_base_path, args.model_name, args.rest_api_port, args.port,
                               args.rest_api_timeout_in_ms)
    except (ValueError, OSError) as err:  # a bad flag, a port in use
        return console.fail("stand_in_server.py", err)
    try:
        _, version = server.servables.get(args.model_name)  # loaded now, as TF Serving does
    except SessionError as err:
        server.stop()
        return console.fail("stand_in_server.py", f"Cannot load {args.model_base_path}: {err}", status=1)
    print(f"Stand-in (not TensorFlow Serving) for {args.model_base_path}, version {version}: REST {server.rest_url}, "
          f"gRPC {server.grpc_target}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
