"""Training DRAW end to end: options, data, model, `fit`, and the files of a run.

`train(**options)` is what `python train.py` runs; notebooks and tests call it with the same
options. Every option is checked before anything is written (`TrainOptions.check` and building
the model), so a bad value leaves no trace.
"""

import dataclasses
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_draw import datasets, presets, serving, strategies, visualize
from keras_draw.callbacks import RunProgbar, TestMetrics
from keras_draw.checkpoint import Checkpoint, CheckpointCallback, config_differences
from keras_draw.draw import Draw
from keras_draw.files import exclusive_folder, nearest_existing, write_json
from keras_draw.run_files import RunFiles
from keras_draw.schedule import LearningRateSchedule, epochs_since_best, validation_losses


# Keras dtype policies: mixed_bfloat16 runs the LSTMs in bfloat16 (see `Draw`).
PRECISIONS = ("float32", "mixed_bfloat16")

# `--jit-compile` values and what they mean to `Draw.compile`.
JIT_CHOICES = {"auto": "auto", "on": True, "off": False}


@dataclasses.dataclass
class TrainOptions:
    """The options of a training run; None means "the preset's value" or "the default"."""

    dataset: str = "mnist"
    preset: str = "demo"
    epochs: int | None = None  # None here: the preset's recipe (`presets.RECIPES`), else `DEFAULTS`
    steps_per_epoch: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
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
    checkpoint_every: int | None = None
    resume: bool = False
    deterministic: bool = False
    export_dir: str | None = None
    strategy: str = "default"
    jit_compile: str = "auto"
    unroll: bool | None = None
    log_test: bool = False
    lr_patience: int | None = None
    lr_factor: float = 0.5
    early_stopping: int | None = None
    precision: str = "float32"

    # The recipe of a preset that has none of its own.
    DEFAULTS = {"epochs": 3, "batch_size": 100, "learning_rate": 1e-3, "unroll": False}

    # Sizes beyond these are typos, not experiments: T=10**12 or 10**6 units cannot be built.
    # (`batch_size` is checked against the training split once it is loaded.)
    LIMITS = {"num_steps": 1000, "units": 8192, "latent_dim": 8192, "checkpoint_every": 10**7,
              "steps_per_epoch": 10**7, "epochs": 10**6}

    # Options that may change between a run and its resumption; the others must match.
    CHANGEABLE = ("epochs", "data_dir", "manual_dir", "output_dir", "checkpoint_every", "resume",
                  "deterministic", "export_dir", "strategy", "jit_compile", "unroll", "log_test",
                  "lr_patience", "lr_factor", "early_stopping", "precision")

    def __post_init__(self):
        recipe = {**self.DEFAULTS, **presets.recipe(self.preset)}
        for name, value in recipe.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def check(self):
        """Raises ValueError, quoting the bad value, for any option that cannot work."""
        if self.dataset not in datasets.SUPPORTED:
            raise ValueError(
                f"Unknown dataset: {self.dataset!r}. Supported: {', '.join(datasets.SUPPORTED)}."
            )
        presets.get(self.preset)
        if self.jit_compile not in JIT_CHOICES:
            raise ValueError(f"`jit_compile` must be one of {', '.join(JIT_CHOICES)}. "
                             f"Received: jit_compile={self.jit_compile!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {', '.join(PRECISIONS)}. Received: precision={self.precision!r}")
        if self.strategy not in strategies.STRATEGIES:
            raise ValueError(f"Unknown strategy: {self.strategy!r}. Supported: "
                             f"{', '.join(strategies.STRATEGIES)}. Received: strategy={self.strategy!r}")
        for name in ("epochs", "batch_size", "steps_per_epoch", "num_steps", "latent_dim", "units",
                     "checkpoint_every", "lr_patience", "early_stopping"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
            if value is not None and value > self.LIMITS.get(name, value):
                raise ValueError(f"`{name}` must be at most {self.LIMITS[name]}. Received: {name}={value!r}")
        if self.no_attention and (self.read_n is not None or self.write_n is not None):
            raise ValueError("`read_n` and `write_n` are the sizes of attention grids, which `no_attention` "
                             f"turns off. Received: read_n={self.read_n}, write_n={self.write_n}")
        if not 0 < self.learning_rate < 1:  # Adam moves each weight by about the rate per step
            raise ValueError(f"`learning_rate` must be in (0, 1). Received: learning_rate={self.learning_rate}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"`lr_factor` must be in (0, 1). Received: lr_factor={self.lr_factor}")
        if not 0 <= self.clip_norm < float("inf"):
            raise ValueError(f"`clip_norm` must be 0 (off) or a positive number. Received: clip_norm={self.clip_norm}")
        for name in ("output_dir", "export_dir"):
            if getattr(self, name) == "":
                raise ValueError(f"`{name}` must name a directory. Received: {name}=''")
        for name in ("data_dir", "manual_dir"):
            path = getattr(self, name)
            if path is not None and not os.path.isdir(path):
                raise ValueError(f"`{name}` is not an existing directory. Received: {name}={path!r}")
        check_output_dir(self.resolved_output_dir())
        if self.export_dir is not None:
            check_output_dir(self.export_dir, name="export_dir")

    def resumable(self):
        """The options a checkpoint must share with the run that resumes it."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.CHANGEABLE}

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


def check_output_dir(path, name="output_dir"):
    """An output directory must be a directory, or creatable, and writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"`{name}` exists and is not a directory. Received: {name}={path!r}")
    existing = nearest_existing(path)
    if not os.path.isdir(existing):
        raise ValueError(f"`{name}` lies under {existing!r}, which is a file, not a directory. "
                         f"Received: {name}={path!r}")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"`{name}` is not writable. Received: {name}={path!r}")


def check_batch_size(options, images):
    """A batch must not hold more images than the training split."""
    count = int(images.cardinality())
    if options.batch_size > count:
        raise ValueError(f"`batch_size` must be at most the {count} images of {options.dataset}'s training "
                         f"split. Received: batch_size={options.batch_size}")


def build_model(options):
    """A compiled `Draw` for the options (Adam, the options' learning rate)."""
    model = Draw(**options.model_config(), dtype=options.precision)
    model.compile(optimizer=keras.optimizers.Adam(options.learning_rate),
                  jit_compile=JIT_CHOICES[options.jit_compile], unroll=options.unroll)
    return model


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def train(verbose="auto", **options):
    """Trains DRAW as `python train.py` does; returns the model and its `History`.

    Keyword arguments are the fields of `TrainOptions` (the command-line flags, with
    underscores). Writes into the output directory the files listed in `RunFiles`. If the output
    directory holds a checkpoint of the same configuration, training resumes from it exactly
    (weights, optimizer, epoch and step, noise, metrics history); with more `epochs` than it
    reached, training goes on.
    """
    options = TrainOptions(**options)
    options.check()
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(options.seed)
    strategy = strategies.make_strategy(options.strategy)
    with strategy.scope():
        model = build_model(options)  # raises on a bad N or size, before anything is written
        checkpoint = Checkpoint(RunFiles(options.resolved_output_dir()).checkpoint)
        state = resume_state(model, options, checkpoint)
        images = datasets.training_images(options.dataset, data_dir=options.data_dir, manual_dir=options.manual_dir)
        check_batch_size(options, images)
        checkpoint.check_step(state, datasets.num_batches(images, options.batch_size, options.steps_per_epoch))
        if state["epoch"] == 0 and state["step"] == 0:  # a fresh run: the canvas starts at the data's mean
            model.initialize_canvas(datasets.mean_image(images.batch(10_000)))
    _, validation_ds, test_ds = load_data(options, datasets.load)
    chief = strategies.is_chief()  # other workers write into a folder of their own, then drop it
    files = RunFiles(options.resolved_output_dir() if chief else tempfile.mkdtemp(prefix="draw-worker-"))
    files.create()
    with exclusive_folder(files.output_dir):  # a second run into this folder stops here, having written nothing
        write_json(files.config, {"options": dataclasses.asdict(options), "model": model.get_config()})
        history = fit(model, options, files, state, images, validation_ds, verbose,
                      test_ds=test_ds if options.log_test else None)
        files.save_model(model)
        test_metrics = model.evaluate(test_ds, return_dict=True, verbose=verbose)
        write_json(files.test_metrics, {k: float(v) for k, v in test_metrics.items()})
        test_images = next(iter(test_ds.unbatch().batch(32)))
        visualize.write_pictures(model, files.output_dir, images=test_images, seed=options.seed)
    if options.export_dir is not None and chief:
        print(f"Exported the SavedModel to {serving.export(model, options.export_dir)}")
    if not chief:
        shutil.rmtree(files.output_dir, ignore_errors=True)
    return model, history


def kept(options):
    """What a stopped run keeps, in words: its last checkpoint, or none."""
    checkpoint = Checkpoint(RunFiles(options.resolved_output_dir()).checkpoint)
    try:
        state = checkpoint.read_state()
    except ValueError:
        return f"it kept no checkpoint in {checkpoint.directory}"
    if state["step"] == 0:
        return f"its checkpoint after epoch {state['epoch']} is kept in {checkpoint.directory}"
    return f"its checkpoint at epoch {state['epoch'] + 1}, step {state['step']} is kept in {checkpoint.directory}"


def summary(options, test_loss):
    """The lines `python train.py` ends with: the figure, what it means, the files, what next."""
    out = options.resolved_output_dir()
    meaning = {
        "mnist": "dynamically binarized MNIST; a blurry model sits near 200, readable digits below about 110",
        "binarized_mnist": "the paper's binarized MNIST, whose Table 2 gives 80.97 for this network",
    }.get(options.dataset, f"{options.dataset}, a cross-entropy of the intensities (not a likelihood)")
    lines = [
        f"Test negative ELBO: {test_loss:.1f} nats per image (lower is better; {meaning}).",
        f"Written to {out}/: samples.png (generated images), drawing.gif (the drawing, step by step), "
        "reconstructions.png, model.keras, metrics.csv (see docs/training.md).",
    ]
    if options.preset == "demo":
        lines.append("Next: look at the pictures in that folder, or train the paper's network: "
                     "python train.py --preset mnist --dataset binarized_mnist --manual-dir DIR (docs/training.md).")
    else:
        lines.append(f"Next: python -m keras_draw.evaluate --model {out}/model.keras --importance-samples 1000 "
                     "(a tighter bound on -log p(x); docs/evaluation.md).")
    return lines


def load_data(options, loader, **kwargs):
    return loader(
        options.dataset,
        options.batch_size,
        data_dir=options.data_dir,
        manual_dir=options.manual_dir,
        seed=options.seed,
        **kwargs,
    )


def resume_state(model, options, checkpoint):
    """The state to start from: a fresh one, or the checkpoint's, loaded into the model."""
    model_config = {k: v for k, v in model.get_config().items() if k not in ("name", "trainable", "dtype")}
    config = {**options.resumable(), **model_config}
    if not checkpoint.exists():
        if options.resume:
            raise ValueError(f"`resume`: no checkpoint in {checkpoint.directory} to resume from.")
        return {"epoch": 0, "step": 0, "history": [], "config": config}
    saved = checkpoint.read_state()
    # An option added after the checkpoint was written had its default value in that run.
    defaults = TrainOptions(preset=options.preset).resumable()
    saved_config = {**{k: v for k, v in defaults.items() if k not in saved["config"]}, **saved["config"]}
    differences = config_differences(saved_config, config)
    if differences:
        raise ValueError(
            f"{checkpoint.directory} holds a checkpoint of another configuration "
            f"({'; '.join(differences)}): use another output directory, or delete it to start over."
        )
    return checkpoint.restore(model)


def fit(model, options, files, state, images, validation_ds, verbose, test_ds=None):
    """Runs `model.fit` one epoch at a time, from the state's epoch and step to `options.epochs`.

    Each epoch's batches are a pure function of (seed, epoch) (`datasets.epoch_batches`), so
    resuming at any checkpoint replays exactly what an uninterrupted run would have done. The
    weights of the epoch with the lowest validation loss are kept in `files.best_weights`. With
    `test_ds`, the test metrics join each epoch's row (`test_loss`, ...), for learning curves.
    Returns a History of every epoch of the run.
    """
    steps_per_epoch = datasets.num_batches(images, options.batch_size, options.steps_per_epoch)
    callback = CheckpointCallback(
        Checkpoint(files.checkpoint), state, steps_per_epoch, options.checkpoint_every,
        on_epoch_end=files.write_metrics, best_weights=files.best_weights,
    )
    schedule = LearningRateSchedule(options.learning_rate, lambda: state["history"], options.lr_patience,
                                    options.lr_factor)
    first_callbacks = [*([TestMetrics(test_ds)] if test_ds is not None else []), schedule]
    while state["epoch"] < options.epochs and not callback.diverged:
        val_losses = validation_losses(state["history"])
        waited = epochs_since_best(val_losses)
        if options.early_stopping and waited >= options.early_stopping:
            print(f"Early stopping: no lower validation loss in the last {options.early_stopping} epochs "
                  f"(lowest {min(val_losses):.2f} at epoch {len(val_losses) - waited}).")
            break
        epoch, step = state["epoch"], state["step"]
        train_ds = datasets.epoch_batches(
            images, epoch, options.batch_size, binarize=options.dataset == "mnist",
            seed=options.seed, first_step=step, steps_per_epoch=options.steps_per_epoch,
        )
        callback.start_epoch(step)
        model.fit(
            train_ds,
            validation_data=validation_ds,
            initial_epoch=epoch,
            epochs=epoch + 1,
            steps_per_epoch=steps_per_epoch - step,
            # The progress bar last, as Keras places its own: it prints what the others logged.
            callbacks=[*first_callbacks, callback, *files.callbacks(), RunProgbar(options.epochs)],
            shuffle=False,
            verbose=verbose,
        )
    if callback.diverged:
        raise TrainingDiverged(
            f"The loss became NaN or infinite at epoch {callback.diverged[0] + 1}, step "
            f"{callback.diverged[1]}; training stopped. The last good checkpoint is kept in "
            f"{files.checkpoint} (epoch {state['epoch']}, step {state['step']}): try a lower "
            "learning rate or --clip-norm."
        )
    files.write_metrics(state["history"])
    return history_of(state["history"])


def history_of(rows):
    """A `keras.callbacks.History` holding every epoch of the run, resumed ones included."""
    history = keras.callbacks.History()
    history.epoch = [row["epoch"] for row in rows]
    names = [k for k in (rows[0] if rows else {}) if k != "epoch"]
    history.history = {name: [row[name] for row in rows] for name in names}
    return history
