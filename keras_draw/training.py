"""Training DRAW end to end: options, data, model, `fit`, and the files of a run.

`train(**options)` is what `python train.py` runs; notebooks and tests call it with the same
options. Every option is checked before anything is written (`TrainOptions.check` and building
the model), so a bad value leaves no trace.
"""

import dataclasses
import os

import keras
import numpy as np

from keras_draw import datasets, presets
from keras_draw.draw import Draw
from keras_draw.files import write_json
from keras_draw.images import save_grid
from keras_draw.run_files import RunFiles


@dataclasses.dataclass
class TrainOptions:
    """The options of a training run; None means "the preset's value" or "the default"."""

    dataset: str = "mnist"
    preset: str = "demo"
    epochs: int = 3
    steps_per_epoch: int | None = None
    batch_size: int = 100
    learning_rate: float = 1e-3
    num_steps: int | None = None
    read_n: int | None = None
    write_n: int | None = None
    no_attention: bool = False
    latent_dim: int | None = None
    units: int | None = None
    clip_norm: float = 10.0
    seed: int = 0
    data_dir: str | None = None
    manual_dir: str | None = None
    output_dir: str | None = None

    def check(self):
        """Raises ValueError, quoting the bad value, for any option that cannot work."""
        if self.dataset not in datasets.SUPPORTED:
            raise ValueError(
                f"Unknown dataset: {self.dataset!r}. Supported: {', '.join(datasets.SUPPORTED)}."
            )
        presets.get(self.preset)
        for name in ("epochs", "batch_size", "steps_per_epoch", "num_steps", "latent_dim", "units"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be positive. Received: learning_rate={self.learning_rate}")
        if not self.clip_norm >= 0:
            raise ValueError(f"`clip_norm` must be 0 (off) or positive. Received: clip_norm={self.clip_norm}")
        for name in ("data_dir", "manual_dir"):
            path = getattr(self, name)
            if path is not None and not os.path.isdir(path):
                raise ValueError(f"`{name}` is not an existing directory. Received: {name}={path!r}")
        check_output_dir(self.resolved_output_dir())

    def resolved_output_dir(self):
        return self.output_dir or os.path.join("runs", self.dataset)

    def model_config(self):
        """The `Draw` arguments: the preset, the dataset's image shape, then the overrides."""
        height, width, channels = datasets.image_shape(self.dataset)
        overrides = {
            "num_steps": self.num_steps,
            "read_n": self.read_n,
            "write_n": self.write_n,
            "latent_dim": self.latent_dim,
            "encoder_units": self.units,
            "decoder_units": self.units,
        }
        config = presets.get(self.preset)
        config.update({k: v for k, v in overrides.items() if v is not None})
        config.update(image_height=height, image_width=width, channels=channels)
        if self.no_attention:
            config["attention"] = False
        config.update(clip_norm=self.clip_norm or None, seed=self.seed)
        return config


def check_output_dir(path):
    """The output directory must be a directory, or creatable, and writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"`output_dir` exists and is not a directory. Received: output_dir={path!r}")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(os.path.abspath(existing))
    if not os.access(existing, os.W_OK):
        raise ValueError(f"`output_dir` is not writable. Received: output_dir={path!r}")


def build_model(options):
    """A compiled `Draw` for the options (Adam, the options' learning rate)."""
    model = Draw(**options.model_config())
    model.compile(optimizer=keras.optimizers.Adam(options.learning_rate))
    return model


def train(verbose="auto", **options):
    """Trains DRAW as `python train.py` does; returns the model and its `History`.

    Keyword arguments are the fields of `TrainOptions` (the command-line flags, with
    underscores). Writes into the output directory the files listed in `RunFiles`.
    """
    options = TrainOptions(**options)
    options.check()
    keras.utils.set_random_seed(options.seed)
    model = build_model(options)  # raises on a bad N or size, before anything is written
    train_ds, validation_ds, test_ds = datasets.load(
        options.dataset,
        options.batch_size,
        data_dir=options.data_dir,
        manual_dir=options.manual_dir,
        seed=options.seed,
    )
    files = RunFiles(options.resolved_output_dir())
    files.create()
    write_json(files.config, {"options": dataclasses.asdict(options), "model": model.get_config()})
    if options.steps_per_epoch:
        train_ds = train_ds.repeat()
    history = model.fit(
        train_ds,
        validation_data=validation_ds,
        epochs=options.epochs,
        steps_per_epoch=options.steps_per_epoch,
        callbacks=files.callbacks(),
        verbose=verbose,
    )
    files.save_model(model)
    test_metrics = model.evaluate(test_ds, return_dict=True, verbose=verbose)
    write_json(files.test_metrics, {k: float(v) for k, v in test_metrics.items()})
    save_grid(files.samples, model.generate(64, seed=options.seed))
    test_images = next(iter(test_ds.unbatch().batch(32)))
    reconstructions = model.reconstruct(test_images, seed=options.seed)
    save_grid(files.reconstructions, interleave(test_images, reconstructions), columns=8)
    return model, history


def interleave(originals, reconstructions):
    """Rows of originals over rows of their reconstructions, 8 a row, for a grid of 8 columns."""
    originals, reconstructions = np.asarray(originals), np.asarray(reconstructions)
    rows = []
    for start in range(0, len(originals), 8):
        rows += [originals[start : start + 8], reconstructions[start : start + 8]]
    return np.concatenate(rows)
