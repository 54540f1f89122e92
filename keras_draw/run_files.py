"""The files of a training run's output directory, and the callbacks that write them."""

import csv
import os

import keras

from keras_draw.callbacks import SampleGrid
from keras_draw.files import atomic_path, save_model


class RunFiles:
    """Paths in a run's output directory.

    model.keras          the trained model (`keras.saving.load_model` loads it)
    config.json          the run's options and the model's configuration
    metrics.csv          loss, reconstruction_loss, kl_loss (and val_*) per epoch, in nats
    test_metrics.json    the same three on the test split after training
    logs/                TensorBoard logs (losses, and a grid of samples every epoch)
    samples.png          generated images
    reconstructions.png  test images over their reconstructions
    drawing.gif          the canvas after each step of generation, write window in red
    drawing_steps.png    selected steps of that drawing, a strip per image
    reconstruction_drawing.gif, reconstruction_steps.png   the same for test images, read
                         window in green
    best.weights.h5      the weights of the epoch with the lowest validation loss so far
    checkpoint/          the latest checkpoint, from which a rerun resumes (see checkpoint.py)
    .lock                held by the run while it writes here: a second run into the folder is refused
    """

    def __init__(self, output_dir):
        self.output_dir = output_dir
        self.model = os.path.join(output_dir, "model.keras")
        self.config = os.path.join(output_dir, "config.json")
        self.metrics = os.path.join(output_dir, "metrics.csv")
        self.test_metrics = os.path.join(output_dir, "test_metrics.json")
        self.logs = os.path.join(output_dir, "logs")
        self.samples = os.path.join(output_dir, "samples.png")
        self.reconstructions = os.path.join(output_dir, "reconstructions.png")
        self.checkpoint = os.path.join(output_dir, "checkpoint")
        self.best_weights = os.path.join(output_dir, "best.weights.h5")

    def create(self):
        os.makedirs(self.output_dir, exist_ok=True)

    def callbacks(self):
        # No graph: the step loop makes it large and slow to write, and it is of little use.
        return [keras.callbacks.TensorBoard(self.logs, write_graph=False), SampleGrid(os.path.join(self.logs, "samples"))]

    def write_metrics(self, history):
        """Writes the per-epoch history rows as CSV, atomically."""
        if not history:
            return
        names = list(dict.fromkeys(name for row in history for name in row))  # e.g. test_* joining later
        with atomic_path(self.metrics) as temporary:
            with open(temporary, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=names, restval="")
                writer.writeheader()
                writer.writerows(history)

    def save_model(self, model):
        save_model(model, self.model)
