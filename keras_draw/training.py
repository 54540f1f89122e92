"""Training DRAW end to end: options, data, model, `fit`, and the files of a run.

The same loop trains `Draw` and `DrawClassifier`; what differs between them is their task
(`keras_draw.tasks`), which the preset chooses.

`train(**options)` is what `python train.py` runs; notebooks and tests call it with the same
options. Every option is checked before anything is written (`TrainOptions.check` and building
the model), so a bad value leaves no trace.
"""

import dataclasses
import itertools
import math
import os
import shutil
import tempfile
import warnings

import keras
import tensorflow as tf

from keras_draw import datasets, malloc, serving, strategies, tasks
from keras_draw.averaging import WeightAverage
from keras_draw.callbacks import RunProgbar, TestMetrics
from keras_draw.checkpoint import CheckpointCallback, config_differences
from keras_draw.files import exclusive_folder, write_json
from keras_draw.layers.validation import check_fits_in_memory
from keras_draw.run_files import RunFiles
from keras_draw.schedule import LearningRateSchedule, epochs_since_best, scheduled_rate, validation_losses
from keras_draw.train_options import TrainOptions


def check_batch_size(options, images):
    """A batch must not hold more images than the training split."""
    count = int(images.cardinality())
    if options.batch_size > count:
        raise ValueError(f"`batch_size` must be at most the {count} images of {options.dataset}'s training "
                         f"split. Received: batch_size={options.batch_size}")


# fit's peak memory per image of a batch on a CPU, over what `training_bytes` counts of each step
# (what the backward pass keeps; the runtime's temporaries come on top): the ratio of the two as
# `python benchmarks/memory.py` measures them (docs/speed.md has the figures).
TRAINING_MEMORY_FACTOR = 1.7


def training_bytes(model):
    """About the memory one image of a training batch takes on a CPU, in bytes: per step, in
    float32, what the backward pass keeps (x̂, the canvas, its sigmoid and the write, the glimpse,
    the LSTMs' states and gates, z, μ and log σ), scaled by `TRAINING_MEMORY_FACTOR`."""
    pixels = math.prod(model.image_shape)
    read = 2 * model.read_n**2 * model.channels if model.attention else 2 * pixels
    floats = 4 * pixels + read + 6 * (model.encoder_units + model.decoder_units) + 3 * model.latent_dim
    return int(TRAINING_MEMORY_FACTOR * 4 * model.num_steps * floats)


def check_batch_memory(options, model):
    """ValueError unless a DRAW's batch fits in memory (`check_fits_in_memory`). On GPUs and TPUs
    the device's memory bounds it instead, which TensorFlow reports at the first step. A
    classifier's 8 glimpses take a small fraction of a DRAW's memory per image."""
    if options.strategy == "tpu" or tf.config.list_logical_devices("GPU") or not hasattr(model, "latent_dim"):
        return
    check_fits_in_memory("batch_size", options.batch_size, training_bytes(model), "an image of a training batch")


def build_model(options):
    """The compiled model of the options' preset: a `Draw` or a `DrawClassifier` (`tasks`)."""
    return tasks.of(options).build_model(options)


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
    task = tasks.of(options)
    task.check(options)
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(options.seed)
    strategy = strategies.make_strategy(options.strategy)
    chief = strategies.is_chief()  # other workers write into a folder of their own, then drop it
    files = RunFiles(options.resolved_output_dir() if chief else tempfile.mkdtemp(prefix="draw-worker-"))
    with strategy.scope():
        model = build_model(options)  # raises on a bad N or size, before anything is written
    check_batch_memory(options, model)
    # The run owns its folder from before its first read to its end: a second run into it stops
    # here, having read and written nothing (had it read the checkpoint first, the first run could
    # finish meanwhile, and the second would overwrite the newer checkpoint with an older state).
    with exclusive_folder(files.output_dir):
        with strategy.scope():
            checkpoint = RunFiles(options.resolved_output_dir()).latest_checkpoint()
            state = resume_state(model, options, checkpoint)
            averages = checkpoint.read_averages(state) if options.weight_average is not None else None
            data = datasets.load(options.dataset, options.batch_size, data_dir=options.data_dir,
                                 manual_dir=options.manual_dir, seed=options.seed)
            check_batch_size(options, data.images)
            checkpoint.check_step(state, data.num_batches(options.steps_per_epoch))
            if state["epoch"] == 0 and state["step"] == 0:  # a fresh run (DRAW: the canvas starts at the data's mean)
                task.start(model, data, options)
            averager = None
            if options.weight_average is not None:  # w̄ from the checkpoint's averages, else from the weights as initialised
                averager = WeightAverage(options.weight_average, initial=averages)
                averager.set_model(model)
                averager.build()
        write_json(files.config, {"options": dataclasses.asdict(options), "model": model.get_config(),
                                  "malloc": malloc.active()})
        history = fit(model, options, files, state, data, verbose, log_test=options.log_test, averager=averager,
                      callbacks=task.callbacks(files))
        if averager is not None:  # the model is w̄ from here on: saved, tested, drawn and exported
            averager.apply()
        files.save_model(model)
        test_metrics = model.evaluate(data.test, return_dict=True, verbose=verbose)
        write_json(files.test_metrics, {k: float(v) for k, v in test_metrics.items()})
        test_images = tf.nest.flatten(next(iter(data.test.unbatch().batch(32))))[0]  # without labels, if any
        task.write_pictures(model, files.output_dir, test_images, seed=options.seed)
        if options.model_base_path is not None and chief:
            print(f"Exported the SavedModel to {serving.export(model, options.model_base_path)}")
    if not chief:
        shutil.rmtree(files.output_dir, ignore_errors=True)
    return model, history


def kept(options):
    """What a stopped run keeps, in words: its last checkpoint, or none."""
    checkpoint = RunFiles(options.resolved_output_dir()).latest_checkpoint()
    try:
        state = checkpoint.read_state()
    except ValueError:
        return f"it kept no checkpoint in {checkpoint.directory}"
    if state["step"] == 0:
        return f"its checkpoint after epoch {state['epoch']} is kept in {checkpoint.directory}"
    return f"its checkpoint at epoch {state['epoch'] + 1}, step {state['step']} is kept in {checkpoint.directory}"


def summary(options, test_metrics):
    """The lines `python train.py` ends with: the test figure, what it means, the files, what next."""
    return tasks.of(options).summary(options, test_metrics)


def resume_state(model, options, checkpoint):
    """The state to start from: a fresh one, or the checkpoint's, loaded into the model."""
    model_config = {k: v for k, v in model.get_config().items() if k not in ("name", "trainable", "dtype")}
    config = {**options.resumable(), **model_config}
    if not checkpoint.exists():
        if options.resume:
            raise ValueError(f"`resume`: no checkpoint in {checkpoint.directory} to resume from.")
        return {"epoch": 0, "step": 0, "history": [], "config": config,
                "schedule": {"learning_rate": options.learning_rate, "from_epoch": 0}}
    saved = checkpoint.read_state()
    # An option added after the checkpoint was written had its default value in that run; one
    # made changeable since (the learning rate) is not compared.
    defaults = TrainOptions(preset=options.preset)
    saved_config = {**{k: v for k, v in defaults.resumable().items() if k not in saved["config"]},
                    **{k: v for k, v in saved["config"].items() if k not in TrainOptions.CHANGEABLE}}
    differences = config_differences(saved_config, config)
    if differences:
        raise ValueError(
            f"{checkpoint.directory} holds a checkpoint of another configuration "
            f"({'; '.join(differences)}): rerun with its options (its config.json), or pass another output "
            f"directory (--output-dir {unused_folder(options.resolved_output_dir())})."
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = checkpoint.restore(model)
    if any(str(w.message).startswith("Skipping variable loading for optimizer") for w in caught):
        # Keras loads the weights and skips, with a warning, an optimizer state of another shape:
        # a mixed_float16 run's Adam lies inside a LossScaleOptimizer, another run's does not.
        raise ValueError(
            f"{checkpoint.directory} holds an optimizer state this run's optimizer cannot take (mixed_float16 "
            "keeps Adam inside a loss-scale optimizer, float32 and mixed_bfloat16 do not): resume with the "
            f"checkpoint's precision, or pass another output directory. Received: precision={options.precision!r}"
        )
    # Written before the learning rate could change: the run's own rate, from its first epoch.
    state.setdefault("schedule", {"learning_rate": saved["config"].get("learning_rate", defaults.learning_rate),
                                  "from_epoch": 0})
    state["config"] = config
    return restart_schedule(state, options)


def unused_folder(path):
    """`path`-2, `path`-3, ...: the first that does not exist."""
    return next(f"{path}-{k}" for k in itertools.count(2) if not os.path.exists(f"{path}-{k}"))


def restart_schedule(state, options):
    """The state with its schedule restarted at `options.learning_rate` from the epoch it resumes
    in, if that differs from the rate the schedule started from: a warm restart, whose plateau
    cuts count the validation losses from that epoch on only."""
    base = state["schedule"]["learning_rate"]
    if options.learning_rate == base:
        return state
    rate = scheduled_rate(base, since_restart(state), options.lr_patience, options.lr_factor)
    print(f"Learning rate {rate:g} -> {options.learning_rate:g} from epoch {state['epoch'] + 1} on; "
          "the learning-rate cuts count the validation losses from there.")
    return {**state, "schedule": {"learning_rate": options.learning_rate, "from_epoch": state["epoch"]}}


def since_restart(state):
    """The rows of the state's history that its schedule counts: those from its last restart on."""
    return [row for row in state["history"] if row["epoch"] >= state["schedule"]["from_epoch"]]


def fit(model, options, files, state, data, verbose, log_test=False, averager=None, callbacks=None):
    """Runs `model.fit` one epoch at a time, from the state's epoch and step to `options.epochs`.

    Each epoch's batches are a pure function of (seed, epoch) (`datasets.Splits.epoch`), so
    resuming at any checkpoint replays exactly what an uninterrupted run would have done. The
    weights of the epoch with the lowest validation loss are kept in `files.best_weights`. With
    `log_test`, the test metrics join each epoch's row (`test_loss`, ...), for learning curves.
    With an `averager` (`keras_draw.averaging.WeightAverage`), validation, the test logs and the
    best weights are those of the averaged weights, and the checkpoints hold the averages.
    `callbacks`: the task's own (default: `files.callbacks()`, DRAW's).
    Returns a History of every epoch of the run.
    """
    callbacks = files.callbacks() if callbacks is None else callbacks
    steps_per_epoch = data.num_batches(options.steps_per_epoch)
    callback = CheckpointCallback(
        files.latest_checkpoint(), state, steps_per_epoch, options.checkpoint_every,
        on_epoch_end=files.write_metrics, best_weights=files.best_weights, averager=averager,
    )
    schedule = LearningRateSchedule(state["schedule"]["learning_rate"], lambda: since_restart(state),
                                    options.lr_patience, options.lr_factor)
    first_callbacks = [*([averager] if averager else []), *([TestMetrics(data.test, averager)] if log_test else []),
                       schedule]
    while state["epoch"] < options.epochs and not callback.diverged:
        val_losses = validation_losses(state["history"])
        waited = epochs_since_best(val_losses)
        if options.early_stopping and waited >= options.early_stopping:
            print(f"Early stopping: no lower validation loss in the last {options.early_stopping} epochs "
                  f"(lowest {min(val_losses):.2f} at epoch {len(val_losses) - waited}).")
            break
        epoch, step = state["epoch"], state["step"]
        train_ds = data.epoch(epoch, first_step=step, steps_per_epoch=options.steps_per_epoch)
        callback.start_epoch(step)
        model.fit(
            train_ds,
            validation_data=data.validation,
            initial_epoch=epoch,
            epochs=epoch + 1,
            steps_per_epoch=steps_per_epoch - step,
            # The progress bar last, as Keras places its own: it prints what the others logged.
            callbacks=[*first_callbacks, callback, *callbacks, RunProgbar(options.epochs)],
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
