"""A client of a DRAW served by TensorFlow Serving, over REST (default) or gRPC.

    python export/client.py generate --count 16 --out samples.png             # REST, localhost:8501
    python export/client.py generate --count 16 --seed 7 --out samples.png --grpc localhost:8500
    python export/client.py draw --count 4 --seed 7 --out drawing.png         # canvases + write boxes
    python export/client.py reconstruct --images digits.npy --out reconstructions.png
    python export/client.py elbo --images digits.npy                          # nats per image

From Python, `Client(url=..., model="draw").generate(16, seed=7)` returns a numpy array
(16, H, W, C) in [0, 1]; `Client.predict(signature, **inputs)` calls any signature (see
export/README.md) and returns a dict of numpy arrays. Row i of a request with `seed=S` uses the
seed S + i, so the same seed gives the same images.

REST needs only numpy and Pillow (urllib is the standard library's); gRPC needs
tensorflow-serving-api too. Every failure (an HTTP or gRPC error status, a timeout, a refused
connection) raises `ServingError` with a one-line message; the command line prints it and exits
with status 1. A flag no user can mean (--count 0, a port past 65535, a folder for --out) exits
with status 2 and one line before any request is sent.
"""

import argparse
import http.client
import json
import math
import os
import random
import re
import socket
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
from PIL import Image, ImageDraw

DEFAULT_URL = "http://localhost:8501"
# A signature with one output comes back over REST without the output's name (TF Serving's
# documented behaviour); these are the names of DRAW's single outputs.
SINGLE_OUTPUTS = {"serving_default": "images", "generate": "images", "generate_seeded": "images"}
MAX_GRPC_MESSAGE = 1 << 30  # canvases of a large batch exceed gRPC's 4 MiB default
MAX_COUNT = 1024  # images per command: the rows of one request (the stand-in's default --max-rows)
INT64 = 2**63  # seeds and versions are int64


class ServingError(Exception):
    """A request that failed, with a one-line message naming the server and the cause."""


def one_line(message):
    """TensorFlow's multi-line error message as one line, without its node references."""
    skipped = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[")
    lines = [line.strip() for line in str(message).splitlines()]
    kept = [line for line in lines if line and not line.startswith(skipped)]
    return " ".join(kept or [line for line in lines if line][:1])


# === REST: POST /v1/models/NAME[/versions/N]:predict ===


def rest_predict(url, model, signature, inputs, version=None, timeout=30.0, rows=False):
    """Calls `signature` through TF Serving's REST predict API; returns {output name: array}.

    Args:
        url: the server, e.g. "http://localhost:8501".
        inputs: {input name: array}; sent in the columnar format ("inputs"), or with `rows` in
            the row format ("instances").
    """
    endpoint = f"{url.rstrip('/')}/v1/models/{model}"
    endpoint += f"/versions/{version}:predict" if version is not None else ":predict"
    body = {"signature_name": signature, **_request_body(inputs, rows)}
    request = urllib.request.Request(
        endpoint, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise ServingError(f"HTTP {err.code} from {endpoint}: {_error_text(err)}") from None
    except (TimeoutError, socket.timeout):
        raise ServingError(f"No answer from {endpoint} within {timeout} s") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, (TimeoutError, socket.timeout)):
            raise ServingError(f"No answer from {endpoint} within {timeout} s") from None
        raise ServingError(f"Cannot reach {endpoint}: {one_line(err.reason)}") from None
    except (ConnectionError, http.client.HTTPException, ValueError) as err:  # dropped, or not JSON
        raise ServingError(f"Bad answer from {endpoint}: {one_line(err)}") from None
    return _response_arrays(answer, signature)


def _request_body(inputs, rows):
    """The "instances" (row) or "inputs" (columnar) part of a predict request."""
    lists = {name: np.asarray(value).tolist() for name, value in inputs.items()}
    if not rows:
        return {"inputs": lists}
    if len(lists) == 1:  # one input: each instance is that input's row
        return {"instances": next(iter(lists.values()))}
    count = len(next(iter(lists.values())))
    return {"instances": [{name: value[i] for name, value in lists.items()} for i in range(count)]}


def _error_text(err):
    """The message of an HTTP error: TF Serving's {"error": "..."} body, or the raw text."""
    text = err.read().decode(errors="replace")
    try:
        return one_line(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return one_line(text[:300]) or err.reason


def _response_arrays(answer, signature):
    """{output name: array} from a "predictions" (row) or "outputs" (columnar) answer."""
    single = SINGLE_OUTPUTS.get(signature, "output")
    if not isinstance(answer, dict):
        raise ServingError(f"The answer is not a JSON object: {one_line(str(answer)[:200])}")
    if "predictions" in answer:
        predictions = answer["predictions"]
        if predictions and isinstance(predictions[0], dict):
            return {name: np.asarray([row[name] for row in predictions], np.float32) for name in predictions[0]}
        return {single: np.asarray(predictions, np.float32)}
    if "outputs" in answer:
        outputs = answer["outputs"]
        if isinstance(outputs, dict):
            return {name: np.asarray(value, np.float32) for name, value in outputs.items()}
        return {single: np.asarray(outputs, np.float32)}
    raise ServingError(f"The answer has neither 'predictions' nor 'outputs': {one_line(str(answer)[:200])}")


# === gRPC: tensorflow.serving.PredictionService/Predict ===


def grpc_predict(target, model, signature, inputs, version=None, timeout=30.0):
    """Calls `signature` through TF Serving's gRPC PredictionService; returns {name: array}."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the protos import TensorFlow
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = predict_request(model, signature, inputs, version)
    options = [(f"grpc.max_{way}_message_length", MAX_GRPC_MESSAGE) for way in ("receive", "send")]
    try:
        with grpc.insecure_channel(target, options=options) as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)
    except grpc.RpcError as err:
        code, details = err.code(), one_line(err.details() or "")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise ServingError(f"No answer from {target} within {timeout} s (gRPC DEADLINE_EXCEEDED)") from None
        if code == grpc.StatusCode.UNAVAILABLE:
            raise ServingError(f"Cannot reach {target}: {details}") from None
        raise ServingError(f"gRPC {code.name} from {target}: {details}") from None
    return {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}


def predict_request(model, signature, inputs, version=None):
    """A tensorflow_serving PredictRequest for `signature` with `inputs` {name: array}."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(to_tensor_proto(value))
    return request


def _dtypes():
    """numpy dtype ↔ TensorProto DataType, for the dtypes DRAW's signatures use."""
    from tensorflow.core.framework import types_pb2

    return {
        np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
        np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
        np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
        np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
    }


def to_tensor_proto(value):
    """A TensorProto holding `value` (float32, float64, int32 or int64), with numpy only."""
    from tensorflow.core.framework import tensor_pb2

    array = np.asarray(value)
    if array.dtype not in _dtypes():
        raise ValueError(f"Unsupported dtype for a TensorProto: {array.dtype}")
    proto = tensor_pb2.TensorProto(dtype=_dtypes()[array.dtype][0])
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
    return proto


def from_tensor_proto(proto):
    """The numpy array of a TensorProto, packed (`tensor_content`) or as repeated values."""
    by_enum = {enum: (dtype, field) for dtype, (enum, field) in _dtypes().items()}
    if proto.dtype not in by_enum:
        raise ServingError(f"Unsupported dtype in the answer: DataType {proto.dtype}")
    dtype, field = by_enum[proto.dtype]
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    values = np.asarray(getattr(proto, field), dtype)
    if values.size == 1 and math.prod(shape) != 1:  # one value stands for all (TensorProto's rule)
        values = np.full(math.prod(shape), values[0], dtype)
    return values.reshape(shape)


# === The client ===


class Client:
    """A DRAW served by TF Serving: REST at `url`, or gRPC at `grpc` ("host:port") if given."""

    def __init__(self, url=DEFAULT_URL, model="draw", version=None, grpc=None, timeout=30.0, rows=False):
        self.url = url
        self.model = model
        self.version = version
        self.grpc = grpc
        self.timeout = timeout
        self.rows = rows

    def predict(self, signature, **inputs):
        """Any signature (export/README.md): {output name: numpy array}."""
        if self.grpc:
            return grpc_predict(self.grpc, self.model, signature, inputs, self.version, self.timeout)
        return rest_predict(self.url, self.model, signature, inputs, self.version, self.timeout, self.rows)

    def generate(self, count, seed=None):
        """`count` generated images (count, H, W, C) in [0, 1]; row i from the seed `seed` + i."""
        return self.predict("generate_seeded", seed=row_seeds(count, seed))["images"]

    def draw(self, count, seed=None):
        """Generation with every step: images, canvases, write_window and write_box."""
        return self.predict("draw_seeded", seed=row_seeds(count, seed))

    def reconstruct(self, images, seed=None):
        """Reconstructions of `images` (count, H, W, C) in [0, 1], canvases, windows and boxes."""
        images = np.asarray(images, np.float32)
        return self.predict("reconstruct_seeded", images=images, seed=row_seeds(len(images), seed))

    def elbo(self, images, seed=None):
        """Per-image loss (the negative ELBO), reconstruction_loss and kl_loss, in nats."""
        images = np.asarray(images, np.float32)
        return self.predict("elbo_seeded", images=images, seed=row_seeds(len(images), seed))


def row_seeds(count, seed=None):
    """The seeds of `count` rows, seed, seed + 1, ...; a random start when `seed` is None."""
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    return np.arange(seed, seed + count, dtype=np.int64)


# === Images ===


def image_grid(images, columns=None, padding=1):
    """Tiles images (count, H, W, C) in [0, 1] into one uint8 array; also returns tile offsets."""
    images = np.clip(np.nan_to_num(np.asarray(images, np.float32)), 0.0, 1.0)
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.ones((rows * (height + padding) + padding, columns * (width + padding) + padding, channels), np.float32)
    offsets = []
    for k, image in enumerate(images):
        top, left = padding + (k // columns) * (height + padding), padding + (k % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
        offsets.append((left, top))
    return np.round(grid * 255).astype(np.uint8), offsets


def save_grid(path, images, columns=None, boxes=None, scale=2):
    """Writes images as a PNG grid, each pixel `scale`×`scale`; `boxes` (count, 4) drawn in red.

    A box is (x_min, y_min, x_max, y_max) in 0-based pixel coordinates (the signatures'
    `read_box` / `write_box`). The file is written whole or not at all.
    """
    grid, offsets = image_grid(images, columns)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    if boxes is not None:
        picture = picture.convert("RGB")
        pen = ImageDraw.Draw(picture)
        for (left, top), (x_min, y_min, x_max, y_max) in zip(offsets, np.asarray(boxes)):
            corners = [(left + x_min + 0.5) * scale, (top + y_min + 0.5) * scale,
                       (left + x_max + 0.5) * scale, (top + y_max + 0.5) * scale]  # pixel centres
            pen.rectangle(corners, outline=(255, 0, 0))
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(suffix=".png", dir=folder)
    os.close(handle)
    try:
        picture.save(temporary, format="PNG")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def load_images(paths):
    """Images (count, H, W, C) in [0, 1] from .npy arrays and image files (PNG, ...)."""
    arrays = []
    for path in paths:
        if path.endswith(".npy"):
            array = np.load(path)
            array = array / 255.0 if array.dtype == np.uint8 else array
            array = array[..., None] if array.ndim == 3 else array  # (count, H, W) → one channel
        else:
            with Image.open(path) as picture:
                grey = picture.mode in ("1", "L", "LA", "I", "I;16", "F")
                array = np.asarray(picture.convert("L" if grey else "RGB"), np.float32)[None] / 255.0
                array = array[..., None] if grey else array
        if array.ndim != 4:
            raise ValueError(f"{path}: expected images (count, H, W[, C]). Received shape: {array.shape}")
        if arrays and array.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(f"{path}: images of size {array.shape[1:]}, unlike the first file's {arrays[0].shape[1:]}")
        arrays.append(np.asarray(array, np.float32))
    return np.concatenate(arrays)


# === Command line ===


def parse_args(argv):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=DEFAULT_URL, help="REST server (default: %(default)s)")
    common.add_argument("--grpc", metavar="HOST:PORT", default=None, help="use gRPC at HOST:PORT instead of REST")
    common.add_argument("--model", default="draw", help="the served model's name (default: %(default)s)")
    common.add_argument("--version", type=int, default=None, help="a model version (default: the latest)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: %(default)s)")
    common.add_argument("--rows", action="store_true", help='REST row format ("instances"), not columnar ("inputs")')
    common.add_argument("--seed", type=int, default=None, help="row i uses seed SEED + i (default: random)")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("generate", "a grid of generated images"),
                            ("draw", "every step of generation, a row per image, write boxes in red")):
        command = commands.add_parser(name, parents=[common], help=help_text)
        command.add_argument("--count", type=int, default=16)
        command.add_argument("--out", required=True, help="the PNG to write")
    for name, help_text in (("reconstruct", "originals (top) and their reconstructions (bottom)"),
                            ("elbo", "print the negative ELBO of each image, in nats")):
        command = commands.add_parser(name, parents=[common], help=help_text)
        command.add_argument("--images", nargs="+", required=True, help=".npy arrays or image files, values in [0, 1]")
        if name == "reconstruct":
            command.add_argument("--out", required=True, help="the PNG to write")
    return parser.parse_args(argv)


def check_args(args):
    """ValueError (one line) for a flag no user can mean, before any file is read or request sent."""
    url = urllib.parse.urlsplit(args.url)
    try:
        port = url.port
    except ValueError:  # "Port out of range 0-65535"
        port = 0
    if url.scheme not in ("http", "https") or not url.hostname or port == 0:
        raise ValueError(f"--url must be http://HOST[:PORT], a port from 1 to 65535. Received: --url={args.url!r}")
    if args.grpc is not None:
        host, _, grpc_port = args.grpc.rpartition(":")
        if not host or not grpc_port.isdigit() or not 1 <= int(grpc_port) <= 65535:
            raise ValueError(f"--grpc must be HOST:PORT, a port from 1 to 65535. Received: --grpc={args.grpc!r}")
    if not re.fullmatch(r"[\w.-]+", args.model):
        raise ValueError(f"--model must be letters, digits, '_', '.' or '-'. Received: --model={args.model!r}")
    if args.version is not None and not 1 <= args.version < INT64:
        raise ValueError(f"--version must be a positive integer. Received: --version={args.version}")
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= 3600):
        raise ValueError(f"--timeout must be seconds, more than 0 and at most 3600. Received: --timeout={args.timeout}")
    count = getattr(args, "count", None)
    if count is not None and not 1 <= count <= MAX_COUNT:
        raise ValueError(f"--count must be from 1 to {MAX_COUNT} (the rows of one request). Received: --count={count}")
    if args.seed is not None and not -INT64 <= args.seed <= INT64 - (count or MAX_COUNT):
        raise ValueError(f"--seed must be a 64-bit integer, room left for a seed per row. Received: --seed={args.seed}")
    out = getattr(args, "out", None)
    if out is not None and (os.path.isdir(out) or not os.path.isdir(os.path.dirname(os.path.abspath(out)))):
        raise ValueError(f"--out must be a file in an existing folder. Received: --out={out!r}")


def run(args):
    """Runs one command line; returns the lines to print."""
    client = Client(args.url, args.model, args.version, args.grpc, args.timeout, args.rows)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    if args.command == "generate":
        images = client.generate(args.count, seed)
        save_grid(args.out, images)
        return [f"Wrote {args.out}: {len(images)} images, seeds {seed}..{seed + len(images) - 1}"]
    if args.command == "draw":
        drawing = client.draw(args.count, seed)
        canvases = drawing["canvases"]  # (count, T, H, W, C)
        count, steps = canvases.shape[:2]
        boxes = drawing["write_box"].reshape(count * steps, 4) if "write_box" in drawing else None
        save_grid(args.out, canvases.reshape(count * steps, *canvases.shape[2:]), columns=steps, boxes=boxes)
        return [f"Wrote {args.out}: {count} images × {steps} steps, seeds {seed}..{seed + count - 1}"]
    images = load_images(args.images)
    if len(images) > MAX_COUNT:
        raise ValueError(f"--images hold {len(images)} images; one request takes at most {MAX_COUNT}")
    if args.command == "reconstruct":
        reconstructions = client.reconstruct(images, seed)["reconstructions"]
        save_grid(args.out, np.concatenate([images, reconstructions]), columns=len(images))
        return [f"Wrote {args.out}: {len(images)} images above their reconstructions, seed {seed}"]
    terms = client.elbo(images, seed)
    lines = [f"image {i}: loss {terms['loss'][i]:.2f} = reconstruction {terms['reconstruction_loss'][i]:.2f}"
             f" + kl {terms['kl_loss'][i]:.2f} nats" for i in range(len(images))]
    return lines + [f"mean: loss {terms['loss'].mean():.2f} nats over {len(images)} images, seed {seed}"]


def main(argv=None):
    args = parse_args(argv)
    try:
        check_args(args)
        lines = run(args)
    except ServingError as err:
        print(f"client.py: error: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:  # a bad flag, a missing or unreadable image file, a bad array
        print(f"client.py: error: {one_line(err)}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
