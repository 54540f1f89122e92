"""Pictures of DRAW's drawing process: the canvas σ(c_t) of every step, with its windows boxed.

A window's box joins the centres of its outermost filters. By eqs. 19-20 the centres of an N×N
grid run from g − (N/2 − 0.5)·δ (i = 1) to g + (N/2 − 0.5)·δ (i = N), in the paper's 1-based
coordinates; `window_box` (keras_draw.images) turns these into pixel indices of an image upscaled
`scale` times, where the boxes are drawn with Pillow. As in the paper's figures, the write window is red and,
for reconstructions, the read window green.
"""

import math

import numpy as np
from PIL import Image, ImageDraw

from keras_draw.files import atomic_path
from keras_draw.images import box_pixels, image_grid, window_box

WRITE_COLOUR = (255, 0, 0)
READ_COLOUR = (0, 255, 0)
PROGRESS_COLOUR = (96, 96, 96)
SCALE = 4  # each image pixel becomes SCALE×SCALE picture pixels
PADDING = 2  # white picture pixels between and around the images of a grid


def render(canvas, boxes=(), scale=SCALE):
    """One canvas (B, A, C) in [0, 1], upscaled, as RGB uint8 with `boxes` [(box, colour)] drawn."""
    pixels = np.round(np.clip(np.asarray(canvas, dtype=np.float32), 0.0, 1.0) * 255).astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).convert("RGB")
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    for box, colour in boxes:
        draw.rectangle(box_pixels(box, picture.width, picture.height), outline=colour)
    return np.asarray(picture)


def step_tiles(canvases, windows, step, scale=SCALE):
    """Every image's canvas at `step`, boxed, as (count, B·scale, A·scale, 3) uint8.

    Args:
        canvases: (count, T, B, A, C) canvases σ(c_t).
        windows: [(window sequence (count, T, 5), N, colour)], drawn in order.
        step: t − 1, the 0-based step.
    """
    tiles = []
    for k in range(len(canvases)):
        boxes = [(window_box(w[k, step], n, scale), colour) for w, n, colour in windows]
        tiles.append(render(canvases[k, step], boxes, scale))
    return np.stack(tiles)


def drawing_frames(canvases, windows=(), scale=SCALE, columns=None):
    """One RGB frame (H, W, 3) uint8 per step: the grid of every image's canvas at that step.

    Under each grid a grey bar grows with t, so no two frames are identical (a GIF writer would
    merge them) and the viewer sees how far the drawing has got.
    """
    canvases = np.asarray(canvases)
    windows = [(np.asarray(w), n, colour) for w, n, colour in windows]
    num_steps = canvases.shape[1]
    frames = []
    for step in range(num_steps):
        grid = image_grid(step_tiles(canvases, windows, step, scale) / 255.0, columns, PADDING)
        bar = np.full((scale + PADDING, grid.shape[1], 3), 255, dtype=np.uint8)
        bar[: scale, : math.ceil(grid.shape[1] * (step + 1) / num_steps)] = PROGRESS_COLOUR
        frames.append(np.concatenate([grid, bar]))
    return frames


def steps_strip(canvases, windows=(), steps=8, scale=SCALE):
    """A grid (H, W, 3) uint8: a row per image, a column per selected step, boxes drawn.

    `steps` evenly spaced steps are shown, always the first and the last.
    """
    canvases = np.asarray(canvases)
    windows = [(np.asarray(w), n, colour) for w, n, colour in windows]
    chosen = selected_steps(canvases.shape[1], steps)
    tiles = np.stack([step_tiles(canvases, windows, step, scale) for step in chosen], axis=1)
    tiles = tiles.reshape(-1, *tiles.shape[2:])  # (count·steps, B·scale, A·scale, 3), image-major
    return image_grid(tiles / 255.0, columns=len(chosen), padding=PADDING)


def selected_steps(num_steps, count):
    """Up to `count` evenly spaced 0-based steps of T, from the first to the last."""
    return sorted({round(s) for s in np.linspace(0, num_steps - 1, min(count, num_steps))})


def gif_palette(channels):
    """A fixed palette with the box colours: 254 greys, or a 6×6×6 colour cube and greys.

    Every frame is mapped onto it without dithering, so the box colours stay exact.
    """
    if channels == 1:
        colours = [(v, v, v) for v in np.round(np.linspace(0, 255, 254)).astype(int)]
        colours += [WRITE_COLOUR, READ_COLOUR]
    else:
        levels = range(0, 256, 51)
        colours = [(r, g, b) for r in levels for g in levels for b in levels]  # has both box colours
        colours += [(v, v, v) for v in range(8, 256, 8) if v % 51]
        colours += [PROGRESS_COLOUR]
    palette = Image.new("P", (1, 1))
    palette.putpalette([value for colour in colours for value in colour] + [0] * 3 * (256 - len(colours)))
    return palette


def save_gif(path, frames, channels=1, frame_ms=150, last_frame_ms=1500):
    """Writes RGB frames as a looping GIF, atomically (see files), one GIF frame per frame."""
    palette = gif_palette(channels)
    pictures = [
        Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames
    ]
    durations = [frame_ms] * (len(pictures) - 1) + [last_frame_ms]
    with atomic_path(path) as temporary:
        pictures[0].save(
            temporary,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=durations,
            loop=0,
            optimize=False,
        )


def save_png(path, picture):
    """Writes an RGB uint8 array as a PNG, atomically."""
    with atomic_path(path) as temporary:
        Image.fromarray(picture).save(temporary, format="PNG")
