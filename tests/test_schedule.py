"""Learning-rate cuts and early stopping on the validation loss (keras_draw.schedule)."""

import dataclasses
import json

import keras
import pytest

from conftest import TINY_RUN
from keras_draw import Draw
from keras_draw.schedule import LearningRateSchedule, epochs_since_best, learning_rate_cuts
from keras_draw.train_options import TrainOptions
from keras_draw.training import restart_schedule, train


def test_a_cut_after_each_run_of_patience_epochs_without_a_new_lowest_loss():
    val_losses = [5, 4, 4.5, 4.2, 4.1, 3.9, 4, 4]  # no new low at epochs 3-4 (cut), 7-8 (cut)
    assert [learning_rate_cuts(val_losses[:n], patience=2) for n in range(1, 9)] == [0, 0, 0, 1, 1, 1, 1, 2]
    assert learning_rate_cuts(val_losses, patience=1) == 5
    assert learning_rate_cuts([], patience=1) == 0


def test_epochs_since_best():
    assert epochs_since_best([]) == 0
    assert epochs_since_best([3.0, 2.0, 2.5, 2.0]) == 2  # a tie is not an improvement
    assert epochs_since_best([3.0, 1.0]) == 0


def test_schedule_sets_and_logs_the_rate_from_the_history():
    model = Draw.from_preset("tiny", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    history = [{"val_loss": v} for v in (5.0, 6.0, 7.0, 8.0, 9.0)]  # 4 epochs without a new low
    schedule = LearningRateSchedule(1e-3, lambda: history, patience=2, factor=0.1)
    schedule.set_model(model)
    schedule.on_epoch_begin(5)
    logs = {}
    schedule.on_epoch_end(5, logs)
    assert logs["learning_rate"] == pytest.approx(1e-5)
    constant = LearningRateSchedule(1e-3, lambda: history)
    constant.set_model(model)
    constant.on_epoch_begin(5)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)


@pytest.mark.slow
def test_early_stopping_ends_a_run_whose_validation_loss_stopped_improving(copy_run, mnist_data_dir, capsys):
    # Also: a checkpoint written before an option existed resumes, the option taking its default.
    state_path = copy_run / "checkpoint" / "state.json"  # a finished run of 2 epochs
    state = json.loads(state_path.read_text())
    state["history"][0]["val_loss"] = 0.0  # epoch 1 the best, epoch 2 no better
    del state["config"]["clip_norm"]  # as if written before the option existed
    state_path.write_text(json.dumps(state))
    options = {**TINY_RUN, "epochs": 5}
    _, history = train(**options, early_stopping=1, lr_patience=1, data_dir=mnist_data_dir, output_dir=str(copy_run),
                       verbose=0)
    assert history.epoch == [0, 1]
    assert "Early stopping: no lower validation loss in the last 1 epochs (lowest 0.00 at epoch 1)" in capsys.readouterr().out


def test_a_new_learning_rate_restarts_the_schedule_at_the_resumed_epoch(capsys):
    # Epochs 0-4, counted from epoch 1 on: 3 and 4 bring no new lowest loss, one cut at patience 2.
    history = [{"epoch": e, "val_loss": v} for e, v in enumerate([5.0, 3.0, 2.0, 2.5, 2.1])]
    state = {"epoch": 5, "step": 0, "history": history, "schedule": {"learning_rate": 1e-3, "from_epoch": 1}}
    options = TrainOptions(preset="tiny", learning_rate=1e-3, lr_patience=2, lr_factor=0.5)
    assert restart_schedule(state, options) is state and capsys.readouterr().out == ""
    restarted = restart_schedule(state, dataclasses.replace(options, learning_rate=1e-4))
    assert restarted["schedule"] == {"learning_rate": 1e-4, "from_epoch": 5}
    assert state["schedule"] == {"learning_rate": 1e-3, "from_epoch": 1}  # the given state unchanged
    assert "Learning rate 0.0005 -> 0.0001 from epoch 6 on" in capsys.readouterr().out


@pytest.mark.slow
def test_resuming_at_a_new_learning_rate_counts_the_cuts_from_there(copy_run, mnist_data_dir, capsys):
    # Also: a checkpoint written before state.json kept the schedule takes the run's own rate.
    state_path = copy_run / "checkpoint" / "state.json"  # a finished run of 2 epochs at 1e-3
    state = json.loads(state_path.read_text())
    state["history"][0]["val_loss"], state["history"][1]["val_loss"] = 1.0, 2.0  # epoch 2 no better
    del state["schedule"]
    state_path.write_text(json.dumps(state))
    run = {**TINY_RUN, "lr_patience": 1, "lr_factor": 0.5, "data_dir": mnist_data_dir, "output_dir": str(copy_run),
           "verbose": 0}
    _, history = train(**{**run, "epochs": 3})
    assert history.history["learning_rate"][2] == pytest.approx(5e-4)  # one cut, after epoch 2
    assert "Learning rate" not in capsys.readouterr().out
    _, history = train(**{**run, "epochs": 4, "learning_rate": 1e-2})  # epoch 3 no better either: a second cut,
    assert history.history["learning_rate"][3] == pytest.approx(1e-2)  # not counted from the restart on
    assert "Learning rate 0.00025 -> 0.01 from epoch 4 on" in capsys.readouterr().out  # 2.5e-4 without the restart
    assert json.loads(state_path.read_text())["schedule"] == {"learning_rate": 1e-2, "from_epoch": 3}
    _, history = train(**{**run, "epochs": 4, "learning_rate": 1e-3})  # back: a restart again, nothing to train
    assert json.loads(state_path.read_text())["schedule"]["learning_rate"] == 1e-2  # nothing trained, nothing saved
