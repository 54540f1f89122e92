"""Pictures of the drawing process (keras_draw.animation, keras_draw.visualize) and the
TensorBoard sample grid (keras_draw.callbacks)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_draw import Draw
from keras_draw.filterbank import filter_centres
from keras_draw.animation import (
    PADDING,
    READ_COLOUR,
    SCALE,
    WRITE_COLOUR,
    box_pixels,
    drawing_frames,
    save_gif,
    selected_steps,
    steps_strip,
    window_box,
)
from keras_draw.callbacks import SampleGrid
from keras_draw.images import image_grid
from keras_draw.visualize import main, write_pictures

ROOT = Path(__file__).resolve().parents[1]


def small(**overrides):
    keras.utils.set_random_seed(3)  # the initial weights: Draw's seed is its noise's only
    return Draw.from_preset("tiny", seed=3, **overrides)


def gif_frames(path):
    """The frames of a GIF as RGB arrays."""
    with Image.open(path) as gif:
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB")))
    return frames


def grid_size(count, tile_height, tile_width, columns):
    rows = math.ceil(count / columns)
    return rows * (tile_height + PADDING) + PADDING, columns * (tile_width + PADDING) + PADDING


# --- The window's box ---


def test_box_joins_the_outermost_filter_centres_worked_by_hand():
    # N = 5, δ = 2 around g = (14.5, 10): centres 10.5 … 18.5 across, 6 … 14 down (1-based),
    # so pixel indices 9.5 … 17.5 and 5 … 13.
    window = (14.5, 10.0, 2.0, 1.0, 1.0)
    assert window_box(window, 5) == (9.5, 5.0, 17.5, 13.0)
    # Upscaled 4×: pixel p's centre lies at (p + 0.5)·4 − 0.5.
    assert window_box(window, 5, scale=4) == (39.5, 21.5, 71.5, 53.5)
    # N = 2, δ = 3 around (5, 5): centres 3.5 and 6.5, pixels 2.5 and 5.5.
    assert window_box((5.0, 5.0, 3.0, 1.0, 1.0), 2) == (2.5, 2.5, 5.5, 5.5)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_box_matches_the_filterbank_of_the_same_window(n):
    g_x, g_y, delta = (np.array([v], np.float32) for v in (7.3, 19.1, 2.7))
    centres_x = np.asarray(filter_centres(g_x, delta, n))[0]
    centres_y = np.asarray(filter_centres(g_y, delta, n))[0]
    expected = (centres_x[0] - 1, centres_y[0] - 1, centres_x[-1] - 1, centres_y[-1] - 1)
    np.testing.assert_allclose(window_box((7.3, 19.1, 2.7), n), expected, rtol=1e-6)


def test_box_far_outside_the_picture_is_clipped_out_of_sight():
    assert box_pixels((-1e6, 3.2, 1e6, 9.6), width=112, height=112) == (-1, 3, 112, 10)
    assert box_pixels((-50.0, -40.0, -20.0, -2.0), width=112, height=112) == (-1, -1, -1, -1)


# --- Frames and the GIF ---


def test_gif_boxes_lie_where_the_window_says(tmp_path):
    # One black image, two steps; corners chosen so that (p + 0.5)·4 − 0.5 is a whole number.
    canvases = np.zeros((1, 2, 28, 28, 1), np.float32)
    write_window = np.array([[[14.125, 9.125, 4.0, 1.0, 1.0], [20.125, 20.125, 1.0, 1.0, 1.0]]])
    read_window = np.array([[[5.125, 6.125, 2.0, 1.0, 1.0], [14.0, 14.0, 1.0, 1.0, 1.0]]])
    frames = drawing_frames(canvases, [(read_window, 2, READ_COLOUR), (write_window, 3, WRITE_COLOUR)])
    save_gif(tmp_path / "box.gif", frames)
    first = gif_frames(tmp_path / "box.gif")[0]
    # Write window, N = 3: centres g ± δ = 10.125 … 18.125 across, 5.125 … 13.125 down; pixel
    # indices one less; upscaled (p + 0.5)·4 − 0.5: 38 … 70 across, 18 … 50 down.
    left, top, right, bottom = (PADDING + v for v in (38, 18, 70, 50))
    for x, y in [(left, top), (right, top), (left, bottom), (right, bottom), (54, top), (left, 30)]:
        assert tuple(first[y, x]) == WRITE_COLOUR, (x, y)
    assert tuple(first[top + 1, left + 1]) == (0, 0, 0) and tuple(first[top - 1, left - 1]) == (0, 0, 0)
    # Read window, N = 2: centres g ± δ/2 = 4.125 … 6.125 across, 5.125 … 7.125 down.
    read_corners = [(PADDING + 4 * (c - 1 + 0.5) - 0.5) for c in (4.125, 5.125, 6.125, 7.125)]
    assert read_corners == [PADDING + 14, PADDING + 18, PADDING + 22, PADDING + 26]
    assert tuple(first[PADDING + 18, PADDING + 14]) == READ_COLOUR
    assert tuple(first[PADDING + 26, PADDING + 22]) == READ_COLOUR


def test_generation_gif_has_one_frame_per_step_and_boxes_from_the_model(tmp_path):
    model = small(num_steps=5)
    paths = write_pictures(model, tmp_path, seed=4, num_images=4)
    assert set(paths) == {"samples", "drawing", "drawing_steps"}
    frames = gif_frames(paths["drawing"])
    assert len(frames) == model.num_steps  # T frames
    height, width = grid_size(4, 28 * SCALE, 28 * SCALE, columns=2)
    assert frames[0].shape == (height + SCALE + PADDING, width, 3)  # the grid and the step bar
    # The box of image 0 at the last step, from the window the model reports (N = write_n).
    window = np.asarray(model.generate_sequence(4, seed=4)["write_window"])[0, -1]
    g_x, g_y, delta = (float(v) for v in window[:3])
    half_span = (model.write_n - 1) / 2 * delta
    corners = [(c - 1 + 0.5) * SCALE - 0.5 for c in (g_x - half_span, g_y - half_span, g_x + half_span, g_y + half_span)]
    left, top, right, bottom = (math.floor(c + 0.5) for c in corners)
    inside = lambda v: 0 <= v < 28 * SCALE
    checked = 0
    for x, y in [(left, top), (right, top), (left, bottom), (right, bottom)]:
        if inside(x) and inside(y):
            assert tuple(frames[-1][PADDING + y, PADDING + x]) == WRITE_COLOUR
            checked += 1
    assert checked > 0


def test_reconstruction_pictures_draw_read_and_write_windows(tmp_path):
    model = small(num_steps=4)
    images = (np.random.default_rng(0).random((6, 28, 28, 1)) > 0.5).astype(np.float32)
    paths = write_pictures(model, tmp_path, images=images, num_images=3, strip_images=2, strip_steps=3)
    frames = gif_frames(paths["reconstruction_drawing"])
    assert len(frames) == 4
    colours = {tuple(c) for frame in frames for c in frame.reshape(-1, 3)}
    assert READ_COLOUR in colours and WRITE_COLOUR in colours
    with Image.open(paths["reconstruction_steps"]) as strip:  # 2 images × 3 steps
        assert strip.size[::-1] == grid_size(6, 28 * SCALE, 28 * SCALE, columns=3)
    with Image.open(paths["reconstructions"]) as grid:  # 6 originals over 6 reconstructions, ×2
        assert grid.size == (2 * (6 * 29 + 1), 2 * (2 * 29 + 1))


def test_pictures_without_attention_and_in_colour(tmp_path):
    model = small(num_steps=3, attention=False, image_height=10, image_width=12, channels=3)
    paths = write_pictures(model, tmp_path, images=np.random.default_rng(1).random((2, 10, 12, 3)), num_images=2)
    frames = gif_frames(paths["reconstruction_drawing"])
    assert len(frames) == 3 and frames[0].shape[1] == grid_size(2, 10 * SCALE, 12 * SCALE, columns=2)[1]
    colours = {tuple(c) for c in frames[-1].reshape(-1, 3)}
    assert READ_COLOUR not in colours and WRITE_COLOUR not in colours  # no windows, no boxes


def test_strip_shows_the_first_and_the_last_step():
    assert selected_steps(64, 8) == [0, 9, 18, 27, 36, 45, 54, 63]
    assert selected_steps(3, 8) == [0, 1, 2]
    canvases = np.zeros((2, 5, 4, 4, 1), np.float32)
    canvases[:, -1] = 1.0  # white only at the last step
    strip = steps_strip(canvases, steps=2, scale=1)
    assert strip.shape == (*grid_size(4, 4, 4, columns=2), 3)
    tile = lambda row, column: strip[PADDING + row * 6 : PADDING + row * 6 + 4, PADDING + column * 6 : PADDING + column * 6 + 4]
    assert tile(0, 0).max() == 0 and tile(1, 1).min() == 255


def test_command_line_writes_the_pictures_of_a_saved_model(tmp_path, capsys):
    model = small()
    model.save(tmp_path / "model.keras")
    assert main(["--model", str(tmp_path / "model.keras"), "--output-dir", str(tmp_path / "pictures"), "--num-images", "2"]) == 0
    written = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert written == ["drawing.gif", "drawing_steps.png", "samples.png"]
    assert "generated pictures only" in capsys.readouterr().out


def test_command_line_reconstructs_the_runs_dataset_from_the_runs_data_dir(tmp_path, mnist_data_dir):
    small().save(tmp_path / "model.keras")
    (tmp_path / "config.json").write_text(json.dumps({"options": {"dataset": "mnist", "data_dir": mnist_data_dir}}))
    assert main(["--model", str(tmp_path / "model.keras"), "--num-images", "2"]) == 0
    assert (tmp_path / "reconstruction_drawing.gif").is_file() and (tmp_path / "reconstructions.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [(["--model", "missing.keras"], "Model file not found"), (["--model", "m.keras", "--num-images", "0"], "--num-images=0"),
     ([], "Give a model: --model RUN/model.keras, or --preset NAME with --weights"),
     (["--preset", "mnist"], "Received: --preset='mnist', --weights=None"),
     (["--weights", "binarized_mnist"], "Received: --preset=None, --weights='binarized_mnist'"),
     (["--model", "m.keras", "--preset", "mnist", "--weights", "binarized_mnist"], "Give --model, or --preset with --weights, not both"),
     (["--preset", "mnist", "--weights", "svhn"], "No shipped weights for preset 'mnist' trained on 'svhn'"),
     (["--preset", "mnist", "--weights", "no/such.weights.h5"], "Weights file not found")],
)
def test_command_line_errors_are_one_line_with_exit_status_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where a --preset model's pictures would go
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and error.startswith("visualize: error:")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--model", "m.keras", "--out", "pictures"], "unrecognized arguments: --out pictures"),  # now --output-dir
    (["--preset", "huge", "--weights", "w.weights.h5"], "argument --preset: invalid choice: 'huge'"),
    (["--model", "m.keras", "--dataset", "imagenet"], "argument --dataset: invalid choice: 'imagenet'"),
])
def test_flags_it_does_not_know_exit_2_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in error and error.count("\n") == 1, error


def test_a_preset_with_its_shipped_weights_draws_what_the_shipped_model_draws(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--preset", "mnist", "--weights", "binarized_mnist", "--no-reconstructions", "--num-images", "2"]) == 0
    folder = tmp_path / "mnist-binarized_mnist"  # the default: PRESET-WEIGHTS, here
    assert sorted(p.name for p in folder.iterdir()) == ["drawing.gif", "drawing_steps.png", "samples.png"]
    assert f"Written to mnist-binarized_mnist: samples.png" in capsys.readouterr().out
    write_pictures(Draw.from_preset("mnist", weights="binarized_mnist"), tmp_path / "direct", num_images=2)
    for name in ("samples.png", "drawing.gif"):
        assert (folder / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name


def test_a_preset_with_a_weights_file_of_another_network_is_refused_in_one_line(tmp_path, capsys):
    small().save_weights(tmp_path / "tiny.weights.h5")
    assert main(["--preset", "mnist", "--weights", str(tmp_path / "tiny.weights.h5"), "--output-dir",
                 str(tmp_path / "never")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("visualize: error: Cannot load --weights") and error.count("\n") == 1, error
    assert not (tmp_path / "never").exists()


def test_a_count_of_images_beyond_memory_is_refused_before_anything_is_written(tmp_path, capsys):
    small().save(tmp_path / "model.keras")
    (tmp_path / "samples.png").write_bytes(b"the run's own samples")
    assert main(["--model", str(tmp_path / "model.keras"), "--num-images", str(10**8), "--no-reconstructions"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("visualize: error: --num-images must be at most ") and error.count("\n") == 1, error
    assert f"on this machine: an image's drawing takes about " in error and f"Received: --num-images={10**8}" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras", "samples.png"]
    assert (tmp_path / "samples.png").read_bytes() == b"the run's own samples"


def test_the_bound_on_images_is_half_the_machines_memory_over_an_images_drawing(tmp_path, monkeypatch):
    from keras_draw import visualize
    from keras_draw.layers import validation

    model = small()  # T = 3 steps of 28x28x1: (96 + 4) bytes per pixel and step
    assert visualize.drawing_bytes(model) == 3 * 28 * 28 * 100
    monkeypatch.setattr(validation, "machine_memory", lambda: 2 * 3 * 28 * 28 * 100 * 1000 + 1)
    visualize.check_num_images(model, 1000)  # half the memory holds exactly 1000 drawings
    with pytest.raises(ValueError, match=r"`num_images` must be at most 1,000 on this machine.*num_images=1001"):
        write_pictures(model, tmp_path / "pictures", num_images=1001)
    assert not (tmp_path / "pictures").exists()
    with pytest.raises(ValueError, match="Received: strip_steps=0"):
        write_pictures(model, tmp_path / "pictures", strip_steps=0)


def test_images_to_reconstruct_are_checked_before_any_picture_is_written(tmp_path):
    model = small()
    images = (np.random.default_rng(0).random((4, 28, 28, 1)) > 0.5).astype(np.float32)
    with pytest.raises(ValueError, match=r"values in \[0, 1\].*Received: values in \[0.0, 255.0\]"):
        write_pictures(model, tmp_path / "pictures", images=images * 255, num_images=2)
    with pytest.raises(ValueError, match=r"at least one image.*shape=\(0, 28, 28, 1\)"):
        write_pictures(model, tmp_path / "pictures", images=images[:0], num_images=2)
    with pytest.raises(ValueError, match=r"Received: shape=\(4, 28, 28\)"):
        write_pictures(model, tmp_path / "pictures", images=images[..., 0], num_images=2)
    assert not (tmp_path / "pictures").exists()


def test_a_write_that_fails_is_a_failure_of_the_run_with_exit_status_1(tmp_path, monkeypatch, capsys):
    from keras_draw import visualize
    from keras_draw.files import WriteError

    small().save(tmp_path / "model.keras")

    def full_disk(model, out_dir, *args, **kwargs):
        raise WriteError(f"could not write {out_dir}/samples.png: No space left on device")

    monkeypatch.setattr(visualize, "write_pictures", full_disk)
    assert main(["--model", str(tmp_path / "model.keras"), "--no-reconstructions"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("visualize: error: could not write") and error.count("\n") == 1


@pytest.mark.parametrize("stop, status, said", [("KeyboardInterrupt", 130, "interrupted"),
                                                ("Terminated", 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_while_drawing_prints_one_line_and_leaves_every_picture_whole(stop, status, said, tmp_path,
                                                                                       monkeypatch, capsys):
    from keras_draw import animation, console

    stop = KeyboardInterrupt if stop == "KeyboardInterrupt" else console.Terminated
    small().save(tmp_path / "model.keras")
    (tmp_path / "drawing.gif").write_bytes(b"the drawing before")

    def stopped_half_way(path, frames, *args, **kwargs):
        with animation.atomic_path(path) as temporary:
            Path(temporary).write_bytes(b"half a GIF")
            raise stop()

    monkeypatch.setattr(animation, "save_gif", stopped_half_way)
    try:
        assert main(["--model", str(tmp_path / "model.keras"), "--no-reconstructions"]) == status
    except (KeyboardInterrupt, console.Terminated):
        pytest.fail("the stop escaped main")
    assert capsys.readouterr().err == f"visualize: {said}; each picture is whole: the new one, or the one before.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drawing.gif", "model.keras", "samples.png"]
    assert (tmp_path / "drawing.gif").read_bytes() == b"the drawing before"


# --- The TensorBoard callback ---


def test_sample_grid_logs_an_image_summary_every_epoch(tmp_path):
    model = small()
    model.compile(jit_compile=False, optimizer="adam")
    images = (np.random.default_rng(0).random((8, 28, 28, 1)) > 0.5).astype(np.float32)
    model.fit(images, batch_size=4, epochs=2, verbose=0, callbacks=[SampleGrid(str(tmp_path), num_images=4, seed=1)])
    summaries = []
    for event_file in tmp_path.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            summaries += [(event.step, value) for value in event.summary.value if value.tag == "samples"]
    assert sorted(step for step, _ in summaries) == [0, 1]
    width, height, png = tf.make_ndarray(summaries[-1][1].tensor)  # tensorboard's image summary
    picture = tf.io.decode_png(png).numpy()
    expected = image_grid(model.generate(4, seed=1))
    assert picture.shape == expected.shape and (int(width), int(height)) == (expected.shape[1], expected.shape[0])
    np.testing.assert_array_equal(picture, expected)


def test_sample_grid_rejects_a_bad_image_count():
    with pytest.raises(ValueError, match="Received: num_images=0"):
        SampleGrid("logs", num_images=0)


def test_sample_grid_refuses_at_construction_a_count_no_draw_could_generate(monkeypatch):
    from keras_draw.layers import validation

    smallest = 4 * (2 * 1 * 1 + 2 * 1 + 6 * 1)  # T = |z| = 1 pixel = 1 unit: noise twice, canvas and σ, 6 per unit
    monkeypatch.setattr(validation, "machine_memory", lambda: 2 * smallest * 1000)
    assert SampleGrid("logs", num_images=np.int64(1000)).num_images == 1000
    with pytest.raises(ValueError, match=r"`num_images` must be at most 1,000 on this machine: a generated image "
                                         r"\(of the smallest Draw\) takes about 40 bytes.*Received: num_images=1001"):
        SampleGrid("logs", num_images=1001)


def test_sample_grid_refuses_a_grid_beyond_memory_before_the_first_step(tmp_path, monkeypatch):
    from keras_draw.inputs import generation_bytes
    from keras_draw.layers import validation

    model = small()
    model.compile(jit_compile=False, optimizer="adam")
    before = model.get_weights()
    monkeypatch.setattr(validation, "machine_memory", lambda: 2 * generation_bytes(3, 4, 784, 16) * 1000)
    grid = SampleGrid(str(tmp_path), num_images=1001)  # fits for the smallest Draw, not for this one
    with pytest.raises(ValueError, match=r"`num_images` must be at most 1,000 on this machine"):
        model.fit(np.zeros((4, 28, 28, 1), np.float32), batch_size=4, verbose=0, callbacks=[grid])
    for weight, initial in zip(model.get_weights(), before):  # not a step was taken
        np.testing.assert_array_equal(weight, initial)


@pytest.mark.slow
def test_the_command_draws_a_saved_run_in_a_fresh_process_from_the_runs_data(tiny_run, tmp_path):
    # A fresh interpreter has not registered Draw with Keras until the command loads the model;
    # the test images come from the run's own data_dir (config.json): nothing is prepared again.
    result = subprocess.run([sys.executable, "-m", "keras_draw.visualize", "--model", str(tiny_run / "model.keras"),
                             "--output-dir", str(tmp_path), "--num-images", "2"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Preparing dataset" not in result.stdout and result.stderr == "", result.stderr[-2000:]
    assert {p.name for p in tmp_path.iterdir()} == {"samples.png", "drawing.gif", "drawing_steps.png",
                                                   "reconstructions.png", "reconstruction_drawing.gif",
                                                   "reconstruction_steps.png"}


def test_the_commands_name_what_is_wrong_with_a_model_file(tmp_path, capsys):
    from keras_draw import evaluate

    (tmp_path / "random.keras").write_bytes(np.random.default_rng(0).bytes(5000))
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(tmp_path / "dense.keras")
    (tmp_path / "folder.keras").mkdir()
    os.mkfifo(tmp_path / "fifo.keras")  # opening it would wait for a writer
    (tmp_path / "loop.keras").symlink_to(tmp_path / "loop.keras")
    for name, message in [("random.keras", "is not a .keras file: not a zip archive"),
                          ("fifo.keras", "The model is not a regular file (a device, a pipe or a socket)"),
                          ("loop.keras", "loop.keras cannot be read (Too many levels of symbolic links)"),
                          ("dense.keras", "holds a Keras Sequential (module keras), not a keras_draw Draw"),
                          ("folder.keras", "The model is a folder, not a .keras file")]:
        for program, command in (("visualize", main), ("evaluate", evaluate.main)):
            assert command(["--model", str(tmp_path / name), "--dataset", "mnist"]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"{program}: error: ") and message in err and err.count("\n") == 1, err


def test_the_commands_refuse_a_classifier_saying_why_and_write_nothing(tmp_path, monkeypatch, capsys):
    from keras_draw import DrawClassifier, evaluate
    from keras_draw.model_file import model_from_flags

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "cluttered_mnist"
    run.mkdir(parents=True)
    DrawClassifier.from_preset("tiny_classifier", seed=0).save(run / "model.keras")
    DrawClassifier.from_preset("tiny_classifier", seed=0).save_weights(tmp_path / "c.weights.h5")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    why = "a classifier has no ELBO to evaluate and draws nothing: train.py writes its test error (test_metrics.json)"
    for program, command in (("visualize", main), ("evaluate", evaluate.main)):
        assert command(["--model", str(run / "model.keras"), "--dataset", "cluttered_mnist"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{program}: error: ") and "model.keras' holds a DrawClassifier, and " + why in err, err
        assert err.count("\n") == 1
        for preset in ("tiny_classifier", "cluttered_mnist"):
            with pytest.raises(SystemExit) as exit_info:  # argparse: the --preset choices are the generator's
                command(["--preset", preset, "--weights", "c.weights.h5"])
            err = capsys.readouterr().err
            assert exit_info.value.code == 2 and f"argument --preset: '{preset}' is a DrawClassifier preset, and " + why in err
            assert err.count("\n") == 1
    with pytest.raises(ValueError, match="'tiny_classifier' is a DrawClassifier preset, and a classifier has no ELBO"):
        model_from_flags(preset="tiny_classifier", weights="c.weights.h5")  # the functions the commands run
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_an_output_dir_that_is_a_file_exits_2_and_leaves_it_alone(tmp_path, capsys):
    a_file = tmp_path / "pictures"
    a_file.write_text("keep me")
    assert main(["--preset", "mnist", "--weights", "binarized_mnist", "--output-dir", str(a_file)]) == 2
    error = capsys.readouterr().err
    assert f"Received: --output-dir={str(a_file)!r}" in error and error.count("\n") == 1
    assert a_file.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["pictures"]


def test_write_pictures_writes_nothing_where_a_picture_is_a_fifo(tmp_path):
    import stat

    (tmp_path / "pictures").mkdir()
    os.mkfifo(tmp_path / "pictures" / "drawing.gif")
    with pytest.raises(ValueError, match="drawing.gif is a FIFO, not a file to write; it is left as it is"):
        write_pictures(small(), tmp_path / "pictures", num_images=2)
    assert os.listdir(tmp_path / "pictures") == ["drawing.gif"]  # samples.png, written first, was not either
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pictures" / "drawing.gif").st_mode)
