"""The pictures of a trained DRAW model: samples, reconstructions, and its drawing process.

`write_pictures(model, out_dir, images)` writes, into `out_dir`:
    samples.png                 64 generated images
    drawing.gif                 the canvas of every step while 16 images are generated, the write
                                window boxed in red (the paper's video)
    drawing_steps.png           selected steps of 4 of them, a row per image
and, when test images are given:
    reconstructions.png         images (odd rows) over their reconstructions (even rows)
    reconstruction_drawing.gif  the same for the inference pass, the read window boxed in green
    reconstruction_steps.png

`python -m keras_draw.visualize --model RUN/model.keras --output-dir DIR` writes them for a saved
model (or `--preset mnist --weights binarized_mnist`, the shipped weights), taking test images from
the run's dataset (--dataset, config.json beside the model, or the shipped weights' dataset).
"""

import argparse
import os
import sys

from keras_draw import console

if __name__ == "__main__":  # a command: one line on Ctrl-C; TensorFlow starts without its C++ start-up lines
    console.catch_stops("visualize")
    console.start_tensorflow()

import numpy as np

from keras_draw import animation, datasets
from keras_draw.evaluate import SPLITS
from keras_draw.files import WriteError, check_replaceable
from keras_draw.layers.validation import check_count, check_fits_in_memory
from keras_draw.model_file import (add_model_flags, check_model_flags, load_model, model_from_flags, preset_model_name,
                                   shipped_dataset)
from keras_draw.images import save_grid
from keras_draw.inputs import check_image_array
from keras_draw.run_files import RunFiles

PROGRAM = "visualize"
PICTURES = {
    "samples": "samples.png",
    "drawing": "drawing.gif",
    "drawing_steps": "drawing_steps.png",
    "reconstructions": "reconstructions.png",
    "reconstruction_drawing": "reconstruction_drawing.gif",
    "reconstruction_steps": "reconstruction_steps.png",
}


# Memory per image of a drawing, per pixel of an image and step: the canvases in float32 (4 bytes
# a channel) and the GIF's frames (RGB, upscaled 4 times: 48 bytes), with their copies while they
# are made and quantized (`python benchmarks/memory.py` measures it against this estimate;
# docs/speed.md has the figures).
DRAWING_BYTES_PER_PIXEL_STEP = 96


def drawing_bytes(model):
    """About the memory that one image of `write_pictures`'s animations takes, in bytes."""
    pixels = model.image_height * model.image_width
    return model.num_steps * pixels * (DRAWING_BYTES_PER_PIXEL_STEP + 4 * model.channels)


def check_num_images(model, num_images, flag=False):
    """ValueError unless `num_images` is a positive integer whose drawings fit in memory."""
    name = "num_images"
    check_count(name, num_images)
    check_fits_in_memory(name, num_images, drawing_bytes(model), "an image's drawing", flag=flag)


def write_pictures(model, out_dir, images=None, seed=0, num_images=16, strip_images=4, strip_steps=8):
    """Writes the pictures listed in the module docstring; returns {name: path} of those written.

    Args:
        model: a `Draw`, or the path of a saved `.keras` model.
        out_dir: the folder to write into (created if need be).
        images: test images (count, B, A, C) in [0, 1] for the reconstructions, or None.
        seed: seeds the generated and the posterior noise; the same seed, the same pictures.
        num_images: images in each animation.
        strip_images, strip_steps: rows and columns of the static strips.
    """
    model = load_model(model)
    check_num_images(model, num_images)  # before anything is written
    check_count("strip_images", strip_images), check_count("strip_steps", strip_steps)
    if images is not None:
        images = check_image_array(model.image_shape, images)  # at least one, in [0, 1], or ValueError
    paths = {name: os.path.join(out_dir, file) for name, file in PICTURES.items()}
    written = ("samples", "drawing", "drawing_steps") if images is None else paths
    for name in written:  # none written if one cannot be
        check_replaceable(paths[name])
    os.makedirs(out_dir, exist_ok=True)
    save_grid(paths["samples"], model.generate(64, seed=seed))
    sequence = model.generate_sequence(num_images, seed=seed)
    write_drawing(model, sequence, paths["drawing"], paths["drawing_steps"], strip_images, strip_steps)
    if images is None:
        return {name: paths[name] for name in ("samples", "drawing", "drawing_steps")}
    columns = min(8, len(images))
    shown = images[: min(32, len(images)) // columns * columns]  # whole rows only
    reconstructions = model.reconstruct(shown, seed=seed)
    save_grid(paths["reconstructions"], interleave(shown, reconstructions, columns), columns=columns)
    sequence = model.reconstruct_sequence(images[:num_images], seed=seed)
    write_drawing(
        model,
        sequence,
        paths["reconstruction_drawing"],
        paths["reconstruction_steps"],
        strip_images,
        strip_steps,
    )
    return paths


def write_drawing(model, sequence, gif_path, strip_path, strip_images=4, strip_steps=8):
    """The animation and the strip of one drawing `sequence` (from `generate_sequence` or
    `reconstruct_sequence`), with its windows boxed."""
    canvases = np.asarray(sequence["canvases"])  # (count, T, B, A, C)
    windows = drawing_windows(model, sequence)
    animation.save_gif(gif_path, animation.drawing_frames(canvases, windows), channels=model.channels)
    strip_windows = [(w[:strip_images], n, colour) for w, n, colour in windows]
    strip = animation.steps_strip(canvases[:strip_images], strip_windows, strip_steps)
    animation.save_png(strip_path, strip)


def drawing_windows(model, sequence):
    """[(window sequence, N, colour)] of a sequence: read (if any) under write; none without
    attention."""
    windows = []
    if "read_window" in sequence:
        windows.append((np.asarray(sequence["read_window"]), model.read_n, animation.READ_COLOUR))
    if "write_window" in sequence:
        windows.append((np.asarray(sequence["write_window"]), model.write_n, animation.WRITE_COLOUR))
    return windows


def interleave(originals, reconstructions, columns=8):
    """Rows of originals over rows of their reconstructions, for a grid of `columns` columns
    (a multiple of `columns` images)."""
    originals, reconstructions = np.asarray(originals), np.asarray(reconstructions)
    rows = []
    for start in range(0, len(originals), columns):
        rows += [originals[start : start + columns], reconstructions[start : start + columns]]
    return np.concatenate(rows)


def dataset_images(dataset, split="test", count=32, data_dir=None, manual_dir=None):
    """The first `count` images of a dataset's split, (count, B, A, C)."""
    splits = datasets.load(dataset, count, data_dir=data_dir, manual_dir=manual_dir)
    return next(iter(splits[SPLITS.index(split)])).numpy()


def parse_args(argv):
    parser = console.ArgumentParser(
        prog="python -m keras_draw.visualize",
        description="Samples, reconstructions and animations of DRAW's drawing process.",
    )
    add_model_flags(parser)
    parser.add_argument("--output-dir", default=None,
                        help="the folder to write into (default: the model's folder; with --preset, PRESET-WEIGHTS here)")
    parser.add_argument("--dataset", default=None, choices=datasets.SUPPORTED,
                        help="images to reconstruct (default: the run's, from config.json beside --model, or the "
                             "dataset of shipped --weights)")
    parser.add_argument("--split", default="test", choices=SPLITS, help="default: %(default)s")
    parser.add_argument("--no-reconstructions", action="store_true", help="generated pictures only")
    parser.add_argument("--num-images", type=int, default=16, help="images in each animation (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the generated and posterior noise (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data directory (default: the run's, "
                                                         "else ~/tensorflow_datasets)")
    parser.add_argument("--manual-dir", default=None, help="folder holding the dataset's original files")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        console.check_positive_flags(num_images=args.num_images)
        check_model_flags(args.model, args.preset, args.weights)
        if args.model is not None:
            run = RunFiles.of_model(args.model)
            out_dir = args.output_dir or run.output_dir
            dataset, data_dir, manual_dir = run.data_options(args.dataset, args.data_dir, args.manual_dir)
        else:
            out_dir = args.output_dir or preset_model_name(args.preset, args.weights)
            dataset = args.dataset or shipped_dataset(args.preset, args.weights)
            data_dir, manual_dir = args.data_dir, args.manual_dir
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise ValueError(f"`--output-dir` exists and is not a folder. Received: --output-dir={out_dir!r}")
        model = model_from_flags(args.model, args.preset, args.weights, compile=False)
        check_num_images(model, args.num_images, flag=True)
        images = None
        if not args.no_reconstructions and dataset is not None:
            images = dataset_images(dataset, args.split, data_dir=data_dir, manual_dir=manual_dir)
        paths = write_pictures(model, out_dir, images, seed=args.seed, num_images=args.num_images)
    except console.STOPS as stop:
        return console.stopped(PROGRAM, stop, "each picture is whole: the new one, or the one before")
    except (ValueError, datasets.DatasetUnavailableError) as err:
        return console.fail(PROGRAM, err)
    except WriteError as err:  # a full disk: a failure of the run, not of its input
        return console.fail(PROGRAM, err, status=1)
    if images is None and not args.no_reconstructions:
        print("No --dataset given and none in config.json beside the model: generated pictures only.")
    names = ", ".join(os.path.basename(path) for path in paths.values())
    print(f"Written to {out_dir}: {names}.")
    print(f"Next: open {os.path.join(out_dir, PICTURES['drawing'])}, the drawing step by step (docs/evaluation.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
