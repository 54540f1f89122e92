"""The paper's Figure 3: the glimpses a `DrawClassifier` takes, boxed on the images it classifies.

`write_glimpse_pictures(model, out_dir, images)` writes, into `out_dir`:
    glimpses.png   a row per image, a column per glimpse: the image with that step's read window
                   boxed in green (its outermost filter centres, as the drawing pictures box theirs)
    glimpses.gif   every image at once, one frame per glimpse, the window moving step by step
"""

import os

import numpy as np

from keras_draw import animation

PICTURES = {"glimpses": "glimpses.png", "glimpses_animation": "glimpses.gif"}
SCALE = 2  # 100×100 images at 200×200 picture pixels


def write_glimpse_pictures(model, out_dir, images, strip_images=4, animation_images=16):
    """Writes the pictures listed in the module docstring; returns {name: path}.

    Args:
        model: a `DrawClassifier`.
        out_dir: the folder to write into (created if need be).
        images: test images (count, B, A, C) in [0, 1].
        strip_images: rows of glimpses.png; animation_images: images in glimpses.gif.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, file) for name, file in PICTURES.items()}
    images = np.asarray(images, dtype=np.float32)[:max(strip_images, animation_images)]
    windows = np.asarray(model.glimpse_sequence(images, names=("window",))["window"])  # (count, T, 5)
    canvases = np.repeat(images[:, None], model.num_steps, axis=1)  # the image at every step, (count, T, B, A, C)
    boxed = lambda count: [(windows[:count], model.read_n, animation.READ_COLOUR)]
    strip = animation.steps_strip(canvases[:strip_images], boxed(strip_images), model.num_steps, scale=SCALE)
    animation.save_png(paths["glimpses"], strip)
    frames = animation.drawing_frames(canvases[:animation_images], boxed(animation_images), scale=SCALE)
    animation.save_gif(paths["glimpses_animation"], frames, channels=model.channels)
    return paths
