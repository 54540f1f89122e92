"""A client of a DRAW or DrawClassifier served by TensorFlow Serving, over REST (default) or gRPC.

    python export/client.py generate --num-images 16 --output samples.png        # REST, localhost:8501
    python export/client.py generate --num-images 16 --seed 7 --output samples.png --grpc localhost:8500
    python export/client.py draw --num-images 4 --seed 7 --output drawing.png    # canvases + write boxes
    python export/client.py reconstruct --images digits.npy --output reconstructions.png
    python export/client.py elbo --images digits.npy                             # nats per image
    python export/client.py classify --images cluttered.npy one.png              # a DrawClassifier

A thin command line over `keras_draw.serving.Client` (from Python: `Client(url=...).generate(16,
seed=7)`). Over REST it runs without TensorFlow: numpy, Pillow and keras_draw's `serving.client`,
`console` and `images` import none. A failed request prints one line and exits with status 1; a
flag no user can mean (--num-images 0, a port past 65535, a folder for --output) exits with
status 2 and one line before any request is sent.
"""

import argparse
import math
import os
import re
import sys
import urllib.parse

import numpy as np
from PIL import Image

from keras_draw import console
from keras_draw.images import save_grid
from keras_draw.serving.client import DEFAULT_URL, Client
from keras_draw.serving.transports import ServingError

MAX_IMAGES = 1024  # images per command: the rows of one request (an export's default max_batch)
INT64 = 2**63  # seeds and versions are int64


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
    common.add_argument("--model-name", default="draw", help="the served model's name (default: %(default)s)")
    common.add_argument("--version", type=int, default=None, help="a model version (default: the latest)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: %(default)s)")
    common.add_argument("--rows", action="store_true", help='REST row format ("instances"), not columnar ("inputs")')
    common.add_argument("--seed", type=int, default=0, help="row i uses the seed SEED + i (default: %(default)s)")
    # Flags taken whole (console.ArgumentParser): `--model` names a .keras file in the other commands and
    # must not pass for --model-name here.
    parser = console.ArgumentParser(prog="client.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("generate", "a grid of generated images"),
                            ("draw", "every step of generation, a row per image, write boxes in red")):
        command = commands.add_parser(name, parents=[common], help=help_text)
        command.add_argument("--num-images", type=int, default=16, help="images, one request (default: %(default)s)")
        command.add_argument("--output", required=True, help="the PNG to write")
    for name, help_text in (("reconstruct", "originals (top) and their reconstructions (bottom)"),
                            ("elbo", "print the negative ELBO of each image, in nats"),
                            ("classify", "print each image's class and its probability (a DrawClassifier)")):
        command = commands.add_parser(name, parents=[common], help=help_text)
        command.add_argument("--images", nargs="+", required=True, help=".npy arrays or image files, values in [0, 1]")
        if name == "reconstruct":
            command.add_argument("--output", required=True, help="the PNG to write")
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
    if not re.fullmatch(r"[\w.-]+", args.model_name):
        raise ValueError(f"--model-name must be letters, digits, '_', '.' or '-'. Received: --model-name={args.model_name!r}")
    console.check_positive_flags(version=args.version)
    if args.version is not None and args.version >= INT64:
        raise ValueError(f"--version must be a 64-bit integer. Received: --version={args.version}")
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= 3600):
        raise ValueError(f"--timeout must be seconds, more than 0 and at most 3600. Received: --timeout={args.timeout}")
    num_images = getattr(args, "num_images", None)
    if num_images is not None and not 1 <= num_images <= MAX_IMAGES:
        raise ValueError(f"--num-images must be from 1 to {MAX_IMAGES} (the rows of one request). "
                         f"Received: --num-images={num_images}")
    if not -INT64 <= args.seed <= INT64 - (num_images or MAX_IMAGES):
        raise ValueError(f"--seed must be a 64-bit integer, room left for a seed per row. Received: --seed={args.seed}")
    output = getattr(args, "output", None)
    if output is not None and (os.path.isdir(output) or not os.path.isdir(os.path.dirname(os.path.abspath(output)))):
        raise ValueError(f"--output must be a file in an existing folder. Received: --output={output!r}")


def run(args):
    """Runs one command line; returns the lines to print."""
    client = Client(args.url, args.model_name, args.version, args.grpc, args.timeout, args.rows)
    seed = args.seed
    if args.command == "generate":
        images = client.generate(args.num_images, seed)
        save_grid(args.output, images)
        return [f"Wrote {args.output}: {len(images)} images, seeds {seed}..{seed + len(images) - 1}"]
    if args.command == "draw":
        drawing = client.draw(args.num_images, seed)
        canvases = drawing["canvases"]  # (count, T, H, W, C)
        count, steps = canvases.shape[:2]
        boxes = drawing["write_box"].reshape(count * steps, 4) if "write_box" in drawing else None
        save_grid(args.output, canvases.reshape(count * steps, *canvases.shape[2:]), columns=steps, boxes=boxes)
        return [f"Wrote {args.output}: {count} images × {steps} steps, seeds {seed}..{seed + count - 1}"]
    images = load_images(args.images)
    if len(images) > MAX_IMAGES:
        raise ValueError(f"--images hold {len(images)} images; one request takes at most {MAX_IMAGES}")
    if args.command == "classify":
        result = client.classify(images)
        return [f"image {i}: class {c} (probability {result['probabilities'][i, c]:.3f})"
                for i, c in enumerate(result["classes"])]
    if args.command == "reconstruct":
        reconstructions = client.reconstruct(images, seed)["reconstructions"]
        save_grid(args.output, np.concatenate([images, reconstructions]), columns=len(images))
        return [f"Wrote {args.output}: {len(images)} images above their reconstructions, seeds {seed}.."
                f"{seed + len(images) - 1}"]
    terms = client.elbo(images, seed)
    lines = [f"image {i}: loss {terms['loss'][i]:.2f} = reconstruction {terms['reconstruction_loss'][i]:.2f}"
             f" + kl {terms['kl_loss'][i]:.2f} nats" for i in range(len(images))]
    return lines + [f"mean: loss {terms['loss'].mean():.2f} nats over {len(images)} images, seeds {seed}.."
                    f"{seed + len(images) - 1}"]


def main(argv=None):
    args = parse_args(argv)
    try:
        check_args(args)
        lines = run(args)
    except ServingError as err:  # the server answered with an error, or not at all
        return console.fail("client.py", err, status=1)
    except (OSError, ValueError) as err:  # a bad flag, a missing or unreadable image file, a bad array
        return console.fail("client.py", err)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
