"""A training run's output directory: where each of its files lies, how the others are read, and
the callbacks that write them. Training, evaluation, pictures and publishing know a run through it."""

import csv
import io
import os

import keras

from keras_draw.callbacks import SampleGrid
from keras_draw.checkpoint import Checkpoint
from keras_draw.files import UnreadableError, atomic_path, file_exists, read_bytes, read_json, save_model


class RunFiles:
    """Paths in a run's output directory.

    model.keras          the trained model (`keras.saving.load_model` loads it)
    config.json          the run's options, the model's configuration and the malloc library it ran
                         with (`read_config`; keras_draw/malloc.py)
    metrics.csv          loss, reconstruction_loss, kl_loss (and val_*) per epoch, in nats; for the
                         classifier, loss (the cross-entropy) and accuracy
    test_metrics.json    the same on the test split after training
    logs/                TensorBoard logs (losses, and a grid of samples every epoch)
    samples.png          generated images
    reconstructions.png  test images over their reconstructions
    drawing.gif          the canvas after each step of generation, write window in red
    drawing_steps.png    selected steps of that drawing, a strip per image
    reconstruction_drawing.gif, reconstruction_steps.png   the same for test images, read
                         window in green
    glimpses.png, glimpses.gif   the classifier's instead of the five above: its glimpses on test
                         images, read window in green (keras_draw.glimpse_pictures)
    best.weights.h5      the weights of the epoch with the lowest validation loss so far
    checkpoint/          the latest checkpoint, from which a rerun resumes (`latest_checkpoint`)
    recipe_changes.json  written by hand, by whoever changed a resumable option mid-run: at which
                         epoch, what, why (`read_recipe_changes`)
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
        self.recipe_changes = os.path.join(output_dir, "recipe_changes.json")

    @classmethod
    def of_model(cls, model_path):
        """The run whose folder holds the model file `model_path` (RUN/model.keras)."""
        return cls(os.path.dirname(os.path.abspath(model_path)))

    def latest_checkpoint(self):
        return Checkpoint(self.checkpoint)

    def callbacks(self):
        """DRAW's: TensorBoard, and a grid of samples every epoch."""
        return [self.tensorboard(), SampleGrid(os.path.join(self.logs, "samples"))]

    def tensorboard(self):
        # No graph: the step loop makes it large and slow to write, and it is of little use.
        return keras.callbacks.TensorBoard(self.logs, write_graph=False)

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

    def read_metrics(self):
        """The rows `write_metrics` wrote, as {column: float}, without the cells a row left empty;
        [] without metrics.csv."""
        if not file_exists(self.metrics):
            return []
        text = read_bytes(self.metrics).decode("utf-8")
        return [{name: float(value) for name, value in row.items() if value != ""}
                for row in csv.DictReader(io.StringIO(text, newline=""))]

    def save_model(self, model):
        save_model(model, self.model)

    def read_config(self):
        """config.json as train.py writes it, {"options": its options, "model": the model's
        configuration}; None without the file; UnreadableError if it cannot be read, ValueError
        naming it and saying what it holds where it is not that."""
        if not file_exists(self.config):
            return None
        try:
            config = read_json(self.config)
        except UnreadableError:
            raise
        except ValueError as err:
            raise ValueError(f"{self.config} is {err}") from None
        if not isinstance(config, dict) or not isinstance(config.get("options"), dict):
            raise ValueError(f'{self.config} must be a JSON object whose "options" is an object')
        return config

    def data_options(self, dataset=None, data_dir=None, manual_dir=None):
        """(dataset, data_dir, manual_dir), each the given one or else the run's, from config.json
        (None where neither says). Without `dataset`, a config.json that cannot be read or is
        damaged is an error naming it (the dataset was to come from it); with one, it says nothing.
        The run's folders are taken only where they exist from here (they were written relative
        to where train.py ran), its manual_dir only for its own dataset."""
        try:
            options = (self.read_config() or {"options": {}})["options"]
        except ValueError as err:
            if dataset is None:
                raise ValueError(f"{str(err).rstrip('.')}; it names the run's dataset: give --dataset.") from None
            options = {}
        folder = lambda key: options[key] if isinstance(options.get(key), str) and os.path.isdir(options[key]) else None
        run_dataset = options.get("dataset") if isinstance(options.get("dataset"), str) else None
        dataset = dataset or run_dataset
        manual_dir = manual_dir or (folder("manual_dir") if dataset == run_dataset else None)
        return dataset, data_dir or folder("data_dir"), manual_dir

    def read_recipe_changes(self):
        """recipe_changes.json, [{"epoch", "change", "why"}]; [] without one. ValueError if damaged."""
        if not file_exists(self.recipe_changes):
            return []
        try:
            changes = read_json(self.recipe_changes)
        except UnreadableError:
            raise
        except ValueError as err:
            raise ValueError(f"{self.recipe_changes} is {err}") from None
        if not isinstance(changes, list) or not all(isinstance(c, dict) and {"epoch", "change", "why"} <= set(c)
                                                    for c in changes):
            raise ValueError(f'{self.recipe_changes} must be a list of {{"epoch", "change", "why"}} entries')
        return changes
