"""Training DRAW end to end: options, data, model, `fit`, and the files of a run.

`train(**options)` is what `python train.py` runs; notebooks and tests call it with the same
options. Every option is checked before anything is written (`TrainOptions.check` and building
the model), so a bad value leaves no trace.
"""

import dataclasses
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_draw import datasets, malloc, serving, strategies, visualize
from keras_draw.averaging import WeightAverage
from keras_draw.callbacks import RunProgbar, TestMetrics
from keras_draw.checkpoint import CheckpointCallback, config_differences
from keras_draw.draw import Draw
from keras_draw.files import exclusive_folder, write_json
from keras_draw.run_files import RunFiles
from keras_draw.schedule import LearningRateSchedule, epochs_since_best, scheduled_rate, validation_losses
from keras_draw.train_options import SWITCH_CHOICES, TrainOptions


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
                  jit_compile=SWITCH_CHOICES[options.jit_compile], unroll=options.unroll)
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
        checkpoint = RunFiles(options.resolved_output_dir()).latest_checkpoint()
        state = resume_state(model, options, checkpoint)
        averages = checkpoint.read_averages(state) if options.weight_average is not None else None
        data = datasets.load(options.dataset, options.batch_size, data_dir=options.data_dir,
                             manual_dir=options.manual_dir, seed=options.seed)
        check_batch_size(options, data.images)
        checkpoint.check_step(state, data.num_batches(options.steps_per_epoch))
        if state["epoch"] == 0 and state["step"] == 0:  # a fresh run: the canvas starts at the data's mean
            model.initialize_canvas(data.mean_image())
            if options.cover_windows:
                model.initialize_windows()
        averager = None
        if options.weight_average is not None:  # w̄ from the checkpoint's averages, else from the weights as initialised
            averager = WeightAverage(options.weight_average, initial=averages)
            averager.set_model(model)
            averager.build()
    chief = strategies.is_chief()  # other workers write into a folder of their own, then drop it
    files = RunFiles(options.resolved_output_dir() if chief else tempfile.mkdtemp(prefix="draw-worker-"))
    files.create()
    with exclusive_folder(files.output_dir):  # a second run into this folder stops here, having written nothing
        write_json(files.config, {"options": dataclasses.asdict(options), "model": model.get_config(),
                                  "malloc": malloc.active()})
        history = fit(model, options, files, state, data, verbose, log_test=options.log_test, averager=averager)
        if averager is not None:  # the model is w̄ from here on: saved, tested, drawn and exported
            averager.apply()
        files.save_model(model)
        test_metrics = model.evaluate(data.test, return_dict=True, verbose=verbose)
        write_json(files.test_metrics, {k: float(v) for k, v in test_metrics.items()})
        test_images = next(iter(data.test.unbatch().batch(32)))
        visualize.write_pictures(model, files.output_dir, images=test_images, seed=options.seed)
    if options.export_dir is not None and chief:
        print(f"Exported the SavedModel to {serving.export(model, options.export_dir)}")
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


def summary(options, test_loss):
    """The lines `python train.py` ends with: the figure, what it means, the files, what next."""
    out = options.resolved_output_dir()
    meaning = {
        "mnist": "dynamically binarized MNIST; a blurry model sits near 200, readable digits below about 110",
        "binarized_mnist": "the paper's binarized MNIST, whose Table 2 gives 80.97 for this network",
        "two_digit_mnist": "two dynamically binarized MNIST digits on 60x60, for which the paper gives no figure",
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
            f"({'; '.join(differences)}): use another output directory, or delete it to start over."
        )
    state = checkpoint.restore(model)
    # Written before the learning rate could change: the run's own rate, from its first epoch.
    state.setdefault("schedule", {"learning_rate": saved["config"].get("learning_rate", defaults.learning_rate),
                                  "from_epoch": 0})
    state["config"] = config
    return restart_schedule(state, options)


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


def fit(model, options, files, state, data, verbose, log_test=False, averager=None):
    """Runs `model.fit` one epoch at a time, from the state's epoch and step to `options.epochs`.

    Each epoch's batches are a pure function of (seed, epoch) (`datasets.Splits.epoch`), so
    resuming at any checkpoint replays exactly what an uninterrupted run would have done. The
    weights of the epoch with the lowest validation loss are kept in `files.best_weights`. With
    `log_test`, the test metrics join each epoch's row (`test_loss`, ...), for learning curves.
    With an `averager` (`keras_draw.averaging.WeightAverage`), validation, the test logs and the
    best weights are those of the averaged weights, and the checkpoints hold the averages.
    Returns a History of every epoch of the run.
    """
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
