"""train.py and keras_draw.training end to end, on the bundled MNIST and the tiny preset."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import load_train_script
from keras_draw import Draw, datasets, files, malloc, presets
from keras_draw.checkpoint import Checkpoint
from keras_draw.training import TrainOptions, build_model, summary, train

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
                           output_dir=str(output_dir), model_base_path=str(tmp_path / "serving"), verbose=0)
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
    (["--checkpoint-every", "0"], "checkpoint_every=0"),
    (["--lr-patience", "0"], "lr_patience=0"),
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
    (["--model-base-path", ""], "model_base_path=''"),
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


@pytest.mark.parametrize("flag", ["--output-dir", "--model-base-path"])
@pytest.mark.parametrize("under", ["", "sub"])
def test_output_dir_that_is_a_file_or_lies_under_one_exits_2(flag, under, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    target = str(a_file / under) if under else str(a_file)
    flags = [*TINY, flag, target] + (["--output-dir", str(tmp_path / "never")] if flag == "--model-base-path" else [])
    assert load_train_script().main(flags) == 2
    error = capsys.readouterr().err.strip()
    assert "not a directory" in error and len(error.splitlines()) == 1
    assert a_file.read_text() == "keep me" and not (tmp_path / "never").exists()


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--export-dir", "serving"], "unrecognized arguments: --export-dir serving"),  # now --model-base-path
    (["--dataset", "imagenet"], "argument --dataset: invalid choice: 'imagenet' (choose from mnist, binarized_mnist"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (["--strategy", "horovod"], "argument --strategy: invalid choice: 'horovod'"),
    (["--jit-compile", "maybe"], "argument --jit-compile: invalid choice: 'maybe' (choose from auto, on, off)"),
    (["--precision", "float16"], "argument --precision: invalid choice: 'float16' (choose from float32, mixed_bfloat16, "
                                 "mixed_float16)"),
    (["--verbose", "3"], "argument --verbose: invalid choice: '3'"),
])
def test_malformed_flags_and_values_outside_the_choices_exit_2_in_one_line(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_train_script().main([*flags, "--output-dir", str(tmp_path / "never")])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert error.startswith("train.py: error: ") and message.replace("'", "") in error.replace("'", ""), error
    assert len(error.splitlines()) == 1, error
    assert not (tmp_path / "never").exists()


def test_the_api_refuses_an_unknown_dataset_preset_or_precision_as_train_py_did():
    for options, message in (({"dataset": "imagenet"}, "Unknown dataset: 'imagenet'"),
                             ({"preset": "huge"}, "Unknown preset: 'huge'"),
                             ({"precision": "float16"}, "precision='float16'")):
        with pytest.raises(ValueError, match=re.escape(message)):
            TrainOptions(**options).check()


@pytest.mark.parametrize("dataset, preset, output_dir", [
    ("mnist", "demo", "runs/mnist"),
    ("binarized_mnist", "mnist", "runs/binarized_mnist"),
    ("svhn", "svhn", "runs/svhn"),
    ("cifar10", "cifar10", "runs/cifar10"),
    ("two_digit_mnist", "two_digit_mnist", "runs/two_digit_mnist"),
    ("cluttered_mnist", "cluttered_mnist", "runs/cluttered_mnist"),
])
def test_each_dataset_trains_its_own_preset_into_runs_dataset(dataset, preset, output_dir):
    options = TrainOptions(dataset=dataset)
    assert options.preset == preset and options.resolved_output_dir() == output_dir
    assert build_model(options).num_steps == presets.get(preset)["num_steps"]


def test_another_preset_on_a_dataset_trains_into_its_own_folder():
    assert TrainOptions(dataset="svhn", preset="tiny").resolved_output_dir() == "runs/svhn-tiny"
    assert TrainOptions(dataset="binarized_mnist", preset="mnist_no_attention").resolved_output_dir() == \
        "runs/binarized_mnist-mnist_no_attention"
    assert TrainOptions(dataset="svhn", preset="tiny", output_dir="elsewhere").resolved_output_dir() == "elsewhere"
    assert TrainOptions(dataset="mnist", preset="demo").resolved_output_dir() == "runs/mnist"


def test_svhn_on_the_command_line_gets_the_papers_svhn_network():
    args = load_train_script().parse_args(["--dataset", "svhn"], TrainOptions())
    options = TrainOptions(**{k: v for k, v in vars(args).items() if k != "verbose"})
    config = options.model_config()
    assert (options.preset, options.epochs, options.batch_size, options.learning_rate) == ("svhn", 3, 100, 1e-3)
    assert {k: config[k] for k in ("num_steps", "encoder_units", "read_n", "write_n", "channels")} == \
        {"num_steps": 32, "encoder_units": 800, "read_n": 12, "write_n": 12, "channels": 3}
    args = load_train_script().parse_args(["--dataset", "svhn", "--preset", "tiny"], TrainOptions())
    assert TrainOptions(**{k: v for k, v in vars(args).items() if k != "verbose"}).preset == "tiny"
    assert load_train_script().parse_args([], TrainOptions()).preset is None  # the dataset's: the demo on mnist


def test_help_shows_real_defaults_the_choices_and_each_datasets_preset(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_train_script().parse_args(["--help"], TrainOptions())
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for shown in ("--epochs EPOCHS default: 3 (demo: 4)", "--batch-size BATCH_SIZE default: 100 (demo: 200)",
                  "default: 0.001 (demo: 0.003)", "--seed SEED default: 0", "(default: 10.0)",
                  "--dataset {mnist,binarized_mnist,svhn,cifar10,cluttered_mnist,two_digit_mnist}", "--strategy {default,mirrored,multi_worker,tpu}",
                  "--precision {float32,mixed_bfloat16,mixed_float16}", "--jit-compile {auto,on,off}",
                  "--verbose {auto,0,1,2}",
                  "--preset {mnist,mnist_no_attention,two_digit_mnist,svhn,cifar10,demo,tiny,cluttered_mnist,tiny_classifier}",
                  "mnist 28x28x1 demo", "binarized_mnist 28x28x1 mnist", "svhn 32x32x3 svhn", "cifar10 32x32x3 cifar10",
                  "cluttered_mnist 100x100x1 cluttered_mnist", "two_digit_mnist 60x60x1 two_digit_mnist",
                  "svhn 32 800 100 12 12", "cluttered_mnist 8 256 10 12", "--model-base-path"):
        assert shown in text, shown
    assert "RECIPES" not in text and "--export-dir" not in text


def test_the_next_step_fits_the_dataset_trained():
    lines = {dataset: summary(TrainOptions(dataset=dataset), {"loss": 100.0})
             for dataset in ("mnist", "binarized_mnist", "svhn")}
    assert "python train.py --dataset binarized_mnist" in lines["mnist"][2]
    assert lines["binarized_mnist"][2].startswith(
        "Next: python -m keras_draw.evaluate --model runs/binarized_mnist/model.keras --importance-samples 1000")
    assert "python -m keras_draw.visualize --model runs/svhn/model.keras" in lines["svhn"][2]
    assert "evaluate" not in lines["svhn"][2] and "importance" not in lines["svhn"][2]
    assert "Table 2 gives 80.97" in lines["binarized_mnist"][0] and "not a likelihood" in lines["svhn"][0]


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


def test_the_options_of_a_config_json_written_before_a_flag_was_renamed_still_read():
    saved = json.loads((ROOT / "results" / "binarized_mnist-mnist" / "config.json").read_text())["options"]
    assert "export_dir" in saved  # the published campaign's, as train.py wrote it then
    options = TrainOptions.from_saved({**saved, "export_dir": "serving/draw"})
    assert options.model_base_path == "serving/draw" and options.preset == "mnist"
    assert options.dataset == "binarized_mnist" and options.resolved_output_dir() == saved["output_dir"]
