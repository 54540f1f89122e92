"""train.py and keras_draw.training end to end, on the bundled MNIST and the tiny preset."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import load_train_script
from keras_draw import Draw, datasets, files, malloc
from keras_draw.checkpoint import Checkpoint
from keras_draw.training import TrainOptions, build_model, train

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("model.keras", "config.json", "metrics.csv", "test_metrics.json", "samples.png", "reconstructions.png",
             "drawing.gif", "drawing_steps.png", "reconstruction_drawing.gif", "reconstruction_steps.png")
TINY = ["--preset", "tiny", "--epochs", "1", "--steps-per-epoch", "2"]


@pytest.mark.slow
def test_train_writes_every_output_file_and_starts_its_canvas_at_the_training_mean(tmp_path, mnist_data_dir,
                                                                                 monkeypatch):
    means = []
    initialize = Draw.initialize_canvas
    monkeypatch.setattr(Draw, "initialize_canvas", lambda self, mean: (means.append(np.asarray(mean)), initialize(self, mean)))
    output_dir = tmp_path / "run"
    model, history = train(preset="tiny", epochs=2, steps_per_epoch=2, data_dir=mnist_data_dir, log_test=True,
                           output_dir=str(output_dir), export_dir=str(tmp_path / "serving"), verbose=0)
    assert (tmp_path / "serving" / "1" / "saved_model.pb").is_file()
    assert history.epoch == [0, 1] and len(history.history["val_loss"]) == 2
    for name in RUN_FILES:
        assert (output_dir / name).is_file(), name
    assert any((output_dir / "logs" / "train").glob("events.out.tfevents.*"))
    assert any((output_dir / "logs" / "samples").glob("events.out.tfevents.*"))
    with open(output_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"loss", "reconstruction_loss", "kl_loss", "val_loss", "test_loss", "test_kl_loss"} <= set(rows[0])
    for row in rows:  # the test split's loss, not another copy of the validation's
        assert float(row["test_loss"]) != float(row["val_loss"])
        np.testing.assert_allclose(float(row["test_loss"]), float(row["val_loss"]), rtol=0.05)
    assert (output_dir / "best.weights.h5").is_file()
    test_metrics = json.loads((output_dir / "test_metrics.json").read_text())
    assert np.isfinite(test_metrics["loss"]) and test_metrics["loss"] > 0
    config = json.loads((output_dir / "config.json").read_text())
    assert config["model"]["num_steps"] == 3 and config["options"]["preset"] == "tiny"
    assert config["malloc"] == malloc.active()  # the allocator the timings in metrics.csv ran under
    loaded = keras.saving.load_model(output_dir / "model.keras")
    np.testing.assert_array_equal(loaded.generate(2, seed=1), model.generate(2, seed=1))
    assert not [p for p in output_dir.iterdir() if p.name.startswith(".partial-")]
    # A fresh run's c_0 is the training mean; a resumed run keeps its checkpoint's (test_resume.py).
    images = datasets.load("mnist", data_dir=mnist_data_dir).images
    expected = np.mean(np.concatenate([batch.numpy() for batch in images.batch(10_000)]), axis=0)
    assert len(means) == 1
    np.testing.assert_allclose(means[0], expected, atol=1e-4)  # float32 sums in another order


@pytest.mark.slow
def test_command_line_run_exits_zero(tmp_path, mnist_data_dir):
    output_dir = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *TINY, "--epochs", "2", "--jit-compile", "off", "--data-dir",
         mnist_data_dir, "--output-dir", str(output_dir), "--verbose", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # fit runs one epoch at a time; the progress counts epochs out of the run's.
    assert "Epoch 1/2" in result.stdout and "Epoch 2/2" in result.stdout, result.stdout[-2000:]
    for name in RUN_FILES:
        assert (output_dir / name).is_file(), name
    # A clean console: none of TensorFlow's C++ start-up lines, nothing that reads as a failure.
    for noise in ("absl::InitializeLog", "cudart_stub", "cuInit", "cpu_feature_guard", "E0000", "I0000"):
        assert noise not in result.stderr + result.stdout, noise
    assert "error" not in result.stderr.lower(), result.stderr
    summary = result.stdout.splitlines()[-3:]
    assert summary[0].startswith("Test negative ELBO: ") and " nats per image" in summary[0]
    test_loss = json.loads((output_dir / "test_metrics.json").read_text())["loss"]
    assert f"{test_loss:.1f} nats" in summary[0]
    assert summary[1].startswith(f"Written to {output_dir}/: samples.png")
    assert summary[2].startswith("Next: python -m keras_draw.evaluate")  # tiny is not the demo


def test_a_run_into_a_folder_another_run_holds_exits_2_and_writes_nothing(tmp_path, mnist_data_dir, capsys):
    output_dir = tmp_path / "busy"
    output_dir.mkdir()
    (output_dir / "metrics.csv").write_text("the other run's")
    with files.exclusive_folder(str(output_dir)):  # as the other run, in its own process, holds it
        status = load_train_script().main([*TINY, "--jit-compile", "off", "--data-dir", mnist_data_dir,
                                           "--output-dir", str(output_dir)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and "in use by another training run" in error and len(error.splitlines()) == 1
    assert sorted(p.name for p in output_dir.iterdir()) == [".lock", "metrics.csv"]
    assert (output_dir / "metrics.csv").read_text() == "the other run's"


def test_a_run_reads_nothing_of_a_folder_another_run_holds(copy_run, tmp_path, monkeypatch, capsys):
    """Neither its checkpoint nor its data set (whose tfds build may take half a minute): the other
    run may finish meanwhile, and a run that had read the old checkpoint would overwrite the newer."""
    from keras_draw import training

    def read_too_early(*args, **kwargs):
        raise AssertionError("read before the folder's lock was taken")

    monkeypatch.setattr(Checkpoint, "read_state", read_too_early)
    monkeypatch.setattr(Checkpoint, "exists", read_too_early)
    monkeypatch.setattr(training.datasets, "load", read_too_early)
    new_data_dir = tmp_path / "tfds"
    new_data_dir.mkdir()
    before = {p: p.read_bytes() for p in copy_run.rglob("*") if p.is_file()}
    with files.exclusive_folder(str(copy_run)):
        status = load_train_script().main([*TINY, "--epochs", "3", "--steps-per-epoch", "1", "--jit-compile", "off",
                                           "--data-dir", str(new_data_dir), "--output-dir", str(copy_run)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and "in use by another training run" in error and len(error.splitlines()) == 1
    assert {p: p.read_bytes() for p in copy_run.rglob("*") if p.is_file()} == before
    assert not list(new_data_dir.iterdir())


def test_a_new_folder_is_locked_before_the_data_set_loads_and_removed_if_the_run_stops(tmp_path, monkeypatch,
                                                                                        capsys):
    """Two runs into one new folder: the first to create it owns it."""
    from keras_draw import training

    output_dir = tmp_path / "runs" / "new"
    seen = []

    def load(*args, **kwargs):
        seen.append(sorted(p.name for p in output_dir.iterdir()))
        with pytest.raises(files.FolderInUseError):
            with files.exclusive_folder(str(output_dir)):
                pass
        raise datasets.DatasetUnavailableError("no data here")

    monkeypatch.setattr(training.datasets, "load", load)
    status = load_train_script().main([*TINY, "--jit-compile", "off", "--output-dir", str(output_dir)])
    assert status == 2 and capsys.readouterr().err.strip() == "train.py: error: no data here"
    assert seen == [[".lock"]]
    assert not (tmp_path / "runs").exists()  # made by the run, removed with it: nothing written


def test_the_folder_lock_dies_with_the_process_that_held_it(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom keras_draw.files import exclusive_folder\n"
         "with exclusive_folder(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(300)\n", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(files.FolderInUseError, match="in use by another training run"):
            with files.exclusive_folder(str(tmp_path)):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs in the holder
        holder.wait()
    with files.exclusive_folder(str(tmp_path)):  # free again, with the stale .lock file still there
        assert (tmp_path / ".lock").is_file()


BAD_VALUES = [
    (["--dataset", "imagenet"], "Unknown dataset: 'imagenet'"),
    (["--preset", "huge"], "Unknown preset: 'huge'"),
    (["--epochs", "0"], "epochs=0"),
    (["--batch-size", "-5"], "batch_size=-5"),
    (["--num-steps", "0"], "num_steps=0"),
    (["--read-n", "1"], "read_n=1"),
    (["--write-n", "1"], "write_n=1"),
    (["--write-n", "40"], "write_n=40"),
    (["--latent-dim", "0"], "latent_dim=0"),
    (["--units", "0"], "units=0"),
    (["--learning-rate", "0"], "learning_rate=0"),
    (["--steps-per-epoch", "0"], "steps_per_epoch=0"),
    (["--data-dir", "/nonexistent/tfds"], "data_dir='/nonexistent/tfds'"),
    (["--manual-dir", "/nonexistent/files"], "manual_dir='/nonexistent/files'"),
    (["--strategy", "horovod"], "Unknown strategy: 'horovod'"),
    (["--checkpoint-every", "0"], "checkpoint_every=0"),
    (["--jit-compile", "maybe"], "jit_compile='maybe'"),
    (["--lr-patience", "0"], "lr_patience=0"),
    (["--precision", "mixed_float16"], "precision='mixed_float16'"),
    (["--lr-factor", "1.5"], "lr_factor=1.5"),
    (["--weight-average", "1"], "weight_average=1.0"),
    (["--weight-average", "nan"], "weight_average=nan"),
    (["--early-stopping", "-1"], "early_stopping=-1"),
    (["--clip-norm", "inf"], "clip_norm=inf"),
    (["--clip-norm", "nan"], "clip_norm=nan"),
    (["--no-attention", "--write-n", "-7"], "write_n=-7"),
    (["--no-attention", "--read-n", "3"], "which `no_attention` turns off"),
    (["--learning-rate", "1e12"], "learning_rate=1000000000000.0"),
    (["--num-steps", str(10**12)], f"num_steps={10**12}"),
    (["--units", str(10**6)], "at most 8192"),
    (["--export-dir", ""], "export_dir=''"),
]


@pytest.mark.parametrize("flags, message", BAD_VALUES)
def test_bad_values_exit_2_before_writing(flags, message, tmp_path, capsys):
    output_dir = tmp_path / "never"
    status = load_train_script().main([*TINY, *flags, "--output-dir", str(output_dir)])
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert message in error and len(error.splitlines()) == 1
    assert not output_dir.exists()


def test_a_batch_larger_than_the_training_split_exits_2_before_writing(tmp_path, mnist_data_dir, capsys):
    output_dir = tmp_path / "never"
    status = load_train_script().main([*TINY, "--batch-size", "60000", "--data-dir", mnist_data_dir,
                                       "--output-dir", str(output_dir)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert "at most the 50000 images of mnist's training split. Received: batch_size=60000" in error
    assert not output_dir.exists()


def test_a_batch_beyond_memory_exits_2_before_writing(tmp_path, monkeypatch, capsys):
    from keras_draw import training
    from keras_draw.layers import validation

    model = build_model(TrainOptions(preset="tiny"))  # T = 3, N_read = 2, 28x28x1, 16 units, |z| = 4
    assert training.training_bytes(model) == int(1.7 * 4 * 3 * (4 * 784 + 2 * 4 + 6 * 32 + 3 * 4))
    monkeypatch.setattr(validation, "machine_memory", lambda: 2 * 100 * training.training_bytes(model))
    monkeypatch.setattr(training.datasets, "load", lambda *a, **k: pytest.fail("data read before the check"))
    output_dir = tmp_path / "never"
    status = load_train_script().main([*TINY, "--batch-size", "101", "--output-dir", str(output_dir)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert "`batch_size` must be at most 100 on this machine: an image of a training batch takes" in error
    assert not output_dir.exists()


def test_a_write_refused_for_another_reason_than_space_does_not_ask_for_space(tmp_path, mnist_data_dir, monkeypatch,
                                                                               capsys):
    from keras_draw import training

    def in_the_way(path, value):
        raise files._write_error(path, IsADirectoryError(21, "Is a directory"))

    monkeypatch.setattr(training, "write_json", in_the_way)
    status = load_train_script().main([*TINY, "--jit-compile", "off", "--data-dir", mnist_data_dir, "--output-dir",
                                       str(tmp_path / "run")])
    error = capsys.readouterr().err.strip()
    assert status == 1 and len(error.splitlines()) == 1
    assert error == (f"train.py: error: could not write {tmp_path / 'run' / 'config.json'}: Is a directory; it kept no "
                     f"checkpoint in {tmp_path / 'run' / 'checkpoint'}: rerun the same command to go on from there.")


def test_precision_sets_the_models_dtype_policy():
    model = build_model(TrainOptions(preset="tiny", precision="mixed_bfloat16"))
    assert model.encoder.compute_dtype == "bfloat16" and model.reader.compute_dtype == "float32"
    assert build_model(TrainOptions(preset="tiny")).encoder.compute_dtype == "float32"


@pytest.mark.parametrize("flag", ["--output-dir", "--export-dir"])
@pytest.mark.parametrize("under", ["", "sub"])
def test_output_dir_that_is_a_file_or_lies_under_one_exits_2(flag, under, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    target = str(a_file / under) if under else str(a_file)
    flags = [*TINY, flag, target] + (["--output-dir", str(tmp_path / "never")] if flag == "--export-dir" else [])
    assert load_train_script().main(flags) == 2
    error = capsys.readouterr().err.strip()
    assert "not a directory" in error and len(error.splitlines()) == 1
    assert a_file.read_text() == "keep me" and not (tmp_path / "never").exists()


@pytest.mark.parametrize("flags", [["--epochs", "two"], ["--no-such-flag"]])
def test_malformed_flags_exit_2(flags, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        load_train_script().main([*flags, "--output-dir", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_a_small_model_learns_real_digits(mnist_data_dir):
    # A few hundred real MNIST digits: the test negative ELBO falls by a clear margin.
    keras.utils.set_random_seed(0)
    train_ds, _, test_ds = datasets.load("mnist", batch_size=50, data_dir=mnist_data_dir, seed=0)
    train_ds, test_ds = train_ds.take(8), test_ds.take(4)  # 400 and 200 images
    model = Draw.from_preset("tiny", num_steps=4, encoder_units=64, decoder_units=64, latent_dim=8, seed=0)
    model.compile(jit_compile=False, optimizer=keras.optimizers.Adam(3e-3))
    before = model.evaluate(test_ds, return_dict=True, verbose=0)["loss"]
    model.fit(train_ds, epochs=8, verbose=0)
    after = model.evaluate(test_ds, return_dict=True, verbose=0)["loss"]
    print(f"test negative ELBO: {before:.1f} -> {after:.1f} nats")
    assert before > 500  # ~784 ln 2 = 543 nats for an untrained canvas
    assert after < before - 200


def test_the_demo_preset_has_its_own_recipe_and_flags_override_it():
    demo, tiny = TrainOptions(preset="demo"), TrainOptions(preset="tiny")
    assert (demo.epochs, demo.batch_size, demo.learning_rate, demo.unroll) == (4, 200, 3e-3, "auto")
    assert (tiny.epochs, tiny.batch_size, tiny.learning_rate, tiny.unroll) == (3, 100, 1e-3, "auto")
    assert TrainOptions(preset="tiny", unroll=False).unroll is False
    assert TrainOptions(preset="demo", batch_size=50).batch_size == 50


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("the old rows")
    with pytest.raises(files.WriteError, match=rf"could not write {target}: No space left on device"):
        with files.atomic_path(target) as temporary:
            with open(temporary, "w") as f:
                f.write("half")
            raise OSError(28, "No space left on device")  # as a full disk's write raises it
    assert target.read_text() == "the old rows"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]
