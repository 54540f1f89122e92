"""Checkpoints from which an interrupted training run resumes exactly where it stopped.

A checkpoint is a folder holding `state.json` and the `.weights.h5` file it names (the model's
weights and the optimizer's state), and with weight averaging the `.average.npz` file of the
averaged weights that it names too. `state.json` also holds the epoch and step reached, the
noise generator's state, the running metric sums of an unfinished epoch, the per-epoch history
and the configuration of the run. Each save writes a new weights file, then replaces
`state.json` atomically, then removes the old weights: killed at any instant, the folder holds a
complete checkpoint, the old one or the new one.
"""

import contextlib
import os
import time
import zipfile

import keras
import numpy as np

from keras_draw.files import (UnreadableError, atomic_path, check_readable, file_exists, read_json, save_weights,
                              write_json)

STATE_FILE = "state.json"
CHECKPOINT_FILES = (".weights.h5", ".average.npz")  # the endings of the files `save` writes beside it


class Checkpoint:
    """The checkpoint folder of a run."""

    def __init__(self, directory):
        self.directory = directory
        self.state_path = os.path.join(directory, STATE_FILE)

    def exists(self):
        """Whether there is a checkpoint; UnreadableError where that cannot be known."""
        return file_exists(self.state_path, "Checkpoint ")

    def read_state(self):
        """The saved state. UnreadableError if state.json or a file it names cannot be read (it
        may be sound), ValueError naming the file if it is damaged or malformed."""
        try:
            state = read_json(self.state_path, "Checkpoint ")
            _check_state(state)
        except UnreadableError:
            raise
        except (ValueError, KeyError, TypeError) as err:
            raise self.corrupt(err) from None
        for what, name in (("weights", state["weights"]), ("averages", state.get("average"))):
            if name is not None and not file_exists(os.path.join(self.directory, name), f"Checkpoint {what} "):
                raise ValueError(f"Checkpoint {what} {os.path.join(self.directory, name)} are missing; "
                                 f"delete {self.directory} to start over.")
        return state

    def read_averages(self, state):
        """The averaged weights that `state` names (`keras_draw.averaging`), or None if it names none."""
        if state.get("average") is None:
            return None
        path = os.path.join(self.directory, state["average"])
        check_readable(path, "Checkpoint averages ")
        try:
            with np.load(path) as arrays:
                return [arrays[f"w{i}"] for i in range(len(arrays.files))]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise ValueError(f"Checkpoint averages {path} are corrupt or truncated ({type(err).__name__}); "
                             f"delete {self.directory} to start over.") from None

    def corrupt(self, reason):
        return ValueError(f"Checkpoint {self.state_path} is corrupt ({reason}); delete it to start over.")

    def check_step(self, state, steps_per_epoch):
        """ValueError unless the state's step lies within an epoch of `steps_per_epoch` steps."""
        if state["step"] >= steps_per_epoch:
            raise self.corrupt(f"step {state['step']} lies beyond the epoch's {steps_per_epoch} steps")

    def save(self, model, state, averages=None):
        """Writes the model's weights, the averaged weights if given (arrays) and `state` as the
        new checkpoint. The files of the checkpoint before, and any that no state.json names (a
        save killed before its commit left them), are removed once state.json names the new
        ones; a save stopped before that (Ctrl-C, SIGTERM, a full disk) removes its own."""
        os.makedirs(self.directory, exist_ok=True)
        old = self.read_state() if self.exists() else {}
        name = f"epoch{state['epoch']:05d}-step{state['step']:07d}"
        if f"{name}.weights.h5" == old.get("weights"):
            name += "-again"
        state = dict(state, weights=f"{name}.weights.h5", noise_state=_noise_state(model), trackers=_tracker_state(model))
        state.pop("average", None)
        if averages is not None:
            state["average"] = f"{name}.average.npz"
        try:
            save_weights(model, os.path.join(self.directory, state["weights"]))
            if averages is not None:
                with atomic_path(os.path.join(self.directory, state["average"])) as temporary:
                    with open(temporary, "wb") as f:
                        np.savez(f, **{f"w{i}": a for i, a in enumerate(averages)})
            write_json(self.state_path, state)  # atomic: the commit point
        finally:
            self._remove_unnamed_files()

    def _remove_unnamed_files(self):
        """Removes the weights and averages files that state.json does not name (all of them
        without one); nothing where state.json cannot be read."""
        try:
            saved = read_json(self.state_path) if self.exists() else {}
            named = {saved.get("weights"), saved.get("average")}
        except (ValueError, AttributeError):
            return
        for entry in os.listdir(self.directory):
            if entry.endswith(CHECKPOINT_FILES) and entry not in named:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.directory, entry))

    def restore(self, model):
        """Loads the weights and noise state into a compiled model; returns the state."""
        state = self.read_state()
        weights = os.path.join(self.directory, state["weights"])
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        check_readable(weights, "Checkpoint weights ")
        try:
            model.load_weights(weights)
        except Exception as err:  # h5py and Keras raise many kinds on a truncated file
            raise ValueError(f"Checkpoint weights {weights} are corrupt or truncated ({type(err).__name__}); "
                             f"delete {self.directory} to start over.") from None
        if state["noise_state"]:  # [] for a model that draws no noise
            generator = model.seed_generator
            generator.state.assign(np.asarray(state["noise_state"], dtype=generator.state.dtype))
        return state


# What `save` writes: each entry of state.json and the type it must have.
STATE_TYPES = {"epoch": int, "step": int, "history": list, "config": dict, "weights": str,
               "noise_state": list, "trackers": list}


def _check_state(state):
    """TypeError or ValueError naming the first entry of a loaded state.json that `save` could
    not have written."""
    if not isinstance(state, dict):
        raise TypeError(f"a JSON object expected, found {type(state).__name__}")
    for key, kind in STATE_TYPES.items():
        if key not in state:
            raise KeyError(key)
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise TypeError(f"{key!r} must be {kind.__name__}, found {type(state[key]).__name__}")
    if state["epoch"] < 0 or state["step"] < 0:
        raise ValueError(f"negative epoch or step: {state['epoch']}, {state['step']}")
    if not all(isinstance(row, dict) and isinstance(row.get("epoch"), int) for row in state["history"]):
        raise TypeError("'history' must hold one object per epoch, each with its 'epoch'")
    if not isinstance(state.get("average", ""), (str, type(None))):  # optional: runs that average
        raise TypeError(f"'average' must be str, found {type(state['average']).__name__}")
    schedule = state.get("schedule")  # optional, absent from older checkpoints: the cuts' starting rate and epoch
    if "schedule" in state and not (isinstance(schedule, dict) and isinstance(schedule.get("learning_rate"), float)
                                     and type(schedule.get("from_epoch")) is int and schedule["from_epoch"] >= 0):
        raise TypeError("'schedule' must hold a float 'learning_rate' and a non-negative int 'from_epoch'")
    for key in ("weights", "average"):
        if state.get(key) is not None and os.path.basename(state[key]) != state[key]:
            raise ValueError(f"{key!r} must name a file of the folder, found {state[key]!r}")


def restore_trackers(model, trackers):
    """Puts back the running sums of the metrics of an unfinished epoch."""
    for metric, values in zip(model.metrics, trackers):
        for variable, value in zip(metric.variables, values):
            variable.assign(value)


def _noise_state(model):
    """The noise generator's state; [] for a model without one (`DrawClassifier` draws no noise)."""
    generator = getattr(model, "seed_generator", None)
    return [] if generator is None else np.asarray(generator.state).tolist()


def _tracker_state(model):
    return [[float(np.asarray(v)) for v in metric.variables] for metric in model.metrics]


def config_differences(saved, current):
    """'name: saved → current' for every differing entry of two flat dicts."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


class CheckpointCallback(keras.callbacks.Callback):
    """Saves a checkpoint at every epoch's end and every `every_steps` steps, keeps the history
    (each epoch's logs and its wall time in `seconds`),
    and stops training, saving nothing more, as soon as the loss is not finite.

    Args:
        checkpoint: the `Checkpoint` to write.
        state: the run's state: `epoch` and `step` reached, `history` rows and `config`.
        steps_per_epoch: training steps in a whole epoch.
        every_steps: also save every this many steps within an epoch (None: epochs only).
        on_epoch_end: called with the history after each epoch's checkpoint.
        best_weights: if given, the weights of the epoch with the lowest `val_loss` so far are
            kept in this `.weights.h5` file, and that epoch's row in `state["best"]`.
        averager: the run's `keras_draw.averaging.WeightAverage`, if it averages its weights:
            each checkpoint then holds the averages too, and the best weights are the averages.
    """

    def __init__(self, checkpoint, state, steps_per_epoch, every_steps=None, on_epoch_end=None,
                 best_weights=None, averager=None):
        super().__init__()
        self.checkpoint = checkpoint
        self.best_weights = best_weights
        self.averager = averager
        self.state = state
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.epoch_end_hook = on_epoch_end
        self.diverged = None  # (epoch, step) of the first non-finite loss
        self.first_step = 0  # steps of this epoch done before this `fit`
        self.resumed_trackers = None
        self.epoch_start, self.seconds_before = time.monotonic(), 0.0

    def start_epoch(self, first_step):
        """Before each `fit` of one epoch: `first_step` steps of it were done before."""
        self.first_step = first_step
        self.resumed_trackers = self.state.get("trackers") if first_step else None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()
        self.seconds_before = self.state.get("epoch_seconds", 0.0) if self.first_step else 0.0
        if self.resumed_trackers is not None:  # after fit has reset the metrics
            restore_trackers(self.model, self.resumed_trackers)
            self.resumed_trackers = None

    def on_train_batch_end(self, batch, logs=None):
        step = self.first_step + batch + 1
        if not np.isfinite(float(logs["loss"])):
            self.diverged = (self.state["epoch"], step)
            self.model.stop_training = True
            return
        if self.every_steps and step % self.every_steps == 0 and step < self.steps_per_epoch:
            self.state["epoch_seconds"] = self._epoch_seconds()
            self._save(self.state["epoch"], step)

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is not None:
            return
        row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}, "seconds": self._epoch_seconds()}
        if not all(np.isfinite(v) for v in row.values()):
            self.diverged = (epoch, self.steps_per_epoch)
            self.model.stop_training = True
            return
        self.state["history"] = [r for r in self.state["history"] if r["epoch"] < epoch] + [row]
        if self.best_weights and row.get("val_loss", np.inf) < self.state.get("best", {}).get("val_loss", np.inf):
            with self.averager.averaged() if self.averager else contextlib.nullcontext():
                save_weights(self.model, self.best_weights)
            self.state["best"] = row
        self._save(epoch + 1, 0)
        if self.epoch_end_hook:
            self.epoch_end_hook(self.state["history"])

    def _epoch_seconds(self):
        """Wall time spent in this epoch, across interruptions (evaluations included)."""
        return self.seconds_before + time.monotonic() - self.epoch_start

    def _save(self, epoch, step):
        self.state.update(epoch=epoch, step=step)
        self.checkpoint.save(self.model, self.state, self.averager.values() if self.averager else None)
