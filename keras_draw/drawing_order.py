"""Does DRAW draw one digit and then the other? The measure of the paper's Figure 8, per sample.

The paper says of its network on two digits in 60×60 (§4.2) that it "typically generates one
digit and then the other". On a generated drawing, the canvases σ(c̃_t) of `Draw.generate_sequence`:

1. Ink: a pixel of a canvas is inked where σ(c̃_t) > `threshold`, 0.5, where its Bernoulli is
   more likely on than off. (The first canvas σ(c_0) is a faint mean image, far below it.)
2. Regions of the final canvas: the connected components (8 neighbours) of its ink, once ink at
   most 2·`bridge` blank pixels apart is joined (a dilation by `bridge`), so that the strokes of
   one digit that do not quite touch (a 5's flag, a 4's open top) make one region; regions of
   fewer than `min_pixels` inked pixels are specks and ignored.
3. A sample is drawn one region then the other ("sequential") when its final canvas has exactly
   two regions and, at the first step at which one of them is complete (holds `complete` of its
   final ink), the other holds at most `started` of its own: only one region has ink then.

Why the final regions, followed back in time, and not a count of regions at mid-run: the step at
which a network turns from one digit to the other differs between samples, and a half-drawn
digit falls into pieces that a count would take for digits. Following each final region's ink
needs no labelling of the intermediate canvases and asks exactly the paper's question: was one
digit there before the other began? Two regions that complete together, or grow side by side,
are not sequential. The constants are calibrated on the data itself (docs/paper.md): with them,
the region count of real images agrees with where their two digits were placed.

`sequential_fractions(model)` gives the figures for a trained model;
`python -m keras_draw.drawing_order --model RUN/model.keras` prints them.
"""

import argparse
import json
import sys

from keras_draw import console

if __name__ == "__main__":  # a command: TensorFlow starts without its C++ start-up lines
    console.start_tensorflow()

import numpy as np

from keras_draw.model_file import load_model

THRESHOLD = 0.5
BRIDGE = 1  # joins ink at most 2 blank pixels apart
MIN_PIXELS = 10
COMPLETE = 0.8
STARTED = 0.2
PROGRAM = "drawing_order"


def dilate(mask, radius):
    """Boolean masks (..., B, A) dilated by a (2·radius+1)² square."""
    if radius == 0:
        return mask
    height, width = mask.shape[-2:]
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(radius, radius)] * 2)
    out = np.zeros_like(mask)
    for dr in range(2 * radius + 1):
        for dc in range(2 * radius + 1):
            out |= padded[..., dr : dr + height, dc : dc + width]
    return out


def label_components(mask):
    """Connected components (8 neighbours) of a boolean mask (B, A): (labels (B, A) int32, count),
    label 0 the background and 1..count the components, numbered in raster order of their first pixel."""
    labels = np.zeros(mask.shape, np.int32)
    height, width = mask.shape
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        stack = [start]
        while stack:  # a flood fill from `start`
            row, column = stack.pop()
            for r in range(max(row - 1, 0), min(row + 2, height)):
                for c in range(max(column - 1, 0), min(column + 2, width)):
                    if mask[r, c] and not labels[r, c]:
                        labels[r, c] = count
                        stack.append((r, c))
    return labels, count


def ink_regions(canvas, threshold=THRESHOLD, bridge=BRIDGE, min_pixels=MIN_PIXELS):
    """The regions of one canvas (B, A) or (B, A, 1) in [0, 1]: a list of boolean masks (B, A),
    each the dilated area of one region holding at least `min_pixels` inked pixels."""
    ink = np.asarray(canvas).reshape(np.shape(canvas)[:2]) > threshold
    labels, count = label_components(dilate(ink, bridge))
    masks = [labels == k for k in range(1, count + 1)]
    return [m for m in masks if np.count_nonzero(ink & m) >= min_pixels]


def region_counts(images, **kwargs):
    """The number of regions (`ink_regions`) of each image (count, B, A, C): int array (count,)."""
    return np.array([len(ink_regions(image, **kwargs)) for image in np.asarray(images)])


def drawing_order(canvases, threshold=THRESHOLD, bridge=BRIDGE, min_pixels=MIN_PIXELS, complete=COMPLETE,
                  started=STARTED):
    """Per sample, whether its final canvas has two regions, and whether they were drawn one then the other.

    Args:
        canvases: (count, T, B, A, C) canvases σ(c_t) in [0, 1] of every step (`generate_sequence`).
        threshold, bridge, min_pixels: what ink and a region are (the module docstring).
        complete, started: the fractions of a region's final ink at which it is complete, and
            below which it has not started.

    Returns:
        dict of arrays (count,): `regions`, the final canvas's number of regions; `two_regions`,
        exactly two; `sequential`, two regions drawn one then the other; `first_complete`, the
        0-based step at which the first region became complete (-1 without two regions).
    """
    canvases = np.asarray(canvases)
    count, num_steps = canvases.shape[:2]
    ink = canvases.reshape(count, num_steps, *canvases.shape[2:4]) > threshold  # (count, T, B, A)
    regions = np.zeros(count, np.int64)
    sequential = np.zeros(count, bool)
    first_complete = np.full(count, -1, np.int64)
    for k in range(count):
        masks = ink_regions(canvases[k, -1], threshold, bridge, min_pixels)
        regions[k] = len(masks)
        if len(masks) != 2:
            continue
        inked = np.stack([np.count_nonzero(ink[k] & m, axis=(1, 2)) for m in masks])  # (2, T)
        fraction = inked / inked[:, -1:]  # of each region's final ink, over the steps
        done = np.argmax(fraction >= complete, axis=1)  # each region's first complete step
        first = int(np.argmin(done))
        step = done[first]
        first_complete[k] = step
        sequential[k] = fraction[1 - first, step] <= started  # the other not begun: one region has ink
    return {"regions": regions, "two_regions": regions == 2, "sequential": sequential,
            "first_complete": first_complete}


def sequential_fractions(model, num_images=1000, seed=0, batch_size=100):
    """The figures of a model's generated drawings: how many of `num_images` samples (noise from
    `seed`) end in two regions, and how many of them were drawn one region then the other."""
    results = []
    for start in range(0, num_images, batch_size):
        sequence = model.decode(model.sample_noise(min(batch_size, num_images - start), seed=seed + start),
                                return_sequence=True)
        results.append(drawing_order(np.asarray(sequence["canvases"])))
    order = {name: np.concatenate([r[name] for r in results]) for name in results[0]}
    two, sequential = int(order["two_regions"].sum()), int(order["sequential"].sum())
    return {
        "samples": num_images,
        "seed": seed,
        "two_regions": two,
        "sequential": sequential,
        "fraction_two_regions": two / num_images,
        "fraction_sequential": sequential / num_images,
        "fraction_sequential_of_two_regions": sequential / two if two else None,  # no two-region sample
        "definition": {"threshold": THRESHOLD, "bridge": BRIDGE, "min_pixels": MIN_PIXELS,
                       "complete": COMPLETE, "started": STARTED},
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=f"python -m keras_draw.{PROGRAM}",
        description="How often a DRAW model draws one region (digit) and then the other, on generated samples.",
    )
    parser.add_argument("--model", required=True, help="a saved model, e.g. RUN/model.keras")
    parser.add_argument("--num-images", type=int, default=1000, help="generated samples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the samples' noise (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        console.check_positive_flags(num_images=args.num_images)
        figures = sequential_fractions(load_model(args.model, compile=False), args.num_images, args.seed)
    except ValueError as err:
        return console.fail(PROGRAM, err)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
