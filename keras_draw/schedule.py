"""The training recipe's learning-rate cuts and early stopping, both on the validation loss.

Both are functions of the run's per-epoch history, not of state kept in a callback, so a run
resumed from its checkpoint continues the schedule exactly where it was.
"""

import math

import keras


def learning_rate_cuts(val_losses, patience):
    """How many times the learning rate has been cut after epochs with these validation losses:
    once each time `patience` epochs in a row bring no new lowest loss (then the count of epochs
    without improvement starts again)."""
    best, waited, cuts = math.inf, 0, 0
    for val_loss in val_losses:
        if val_loss < best:
            best, waited = val_loss, 0
            continue
        waited += 1
        if waited >= patience:
            cuts, waited = cuts + 1, 0
    return cuts


def epochs_since_best(val_losses):
    """Epochs since the lowest validation loss (0 when the last epoch is the best, or none ran)."""
    if not val_losses:
        return 0
    return len(val_losses) - 1 - min(range(len(val_losses)), key=val_losses.__getitem__)


def validation_losses(history):
    return [row["val_loss"] for row in history if "val_loss" in row]


def scheduled_rate(base, history, patience, factor):
    """The learning rate after the epochs of `history`: base · factor^cuts (base when patience is None)."""
    if patience is None:
        return base
    return base * factor ** learning_rate_cuts(validation_losses(history), patience)


class LearningRateSchedule(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before each epoch to base · factor^cuts, where the cuts
    come from `learning_rate_cuts` over the history so far (None patience: base throughout),
    and logs it as `learning_rate` at the epoch's end.

    Args:
        base: the learning rate before any cut.
        history: a function returning the run's per-epoch rows so far.
        patience: epochs without a new lowest validation loss before a cut; None: no cuts.
        factor: the cut, in (0, 1).
    """

    def __init__(self, base, history, patience=None, factor=0.5):
        super().__init__()
        self.base = base
        self.history = history
        self.patience = patience
        self.factor = factor

    def rate(self):
        return scheduled_rate(self.base, self.history(), self.patience, self.factor)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate())

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())
