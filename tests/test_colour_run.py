"""The colour path end to end: `python train.py --dataset svhn`, with tiny sizes, on
tensorflow-datasets' mock data (random 32×32×3 images in place of svhn_cropped's), trains the
svhn preset's network, writes colour pictures, leaves a model that the other commands take, and
exports (`--model-base-path`) a SavedModel that TF Serving's own loader runs (the C API's
`TF_LoadSessionFromSavedModel`, keras_draw/serving/session.py), computing what the model computes."""

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import load_train_script
from keras_draw.serving.session import ServingSession

tfds = pytest.importorskip("tensorflow_datasets")

MOCK_IMAGES = 48  # per split
TINY_SIZES = ["--num-steps", "2", "--units", "8", "--latent-dim", "4", "--read-n", "2", "--write-n", "3",
              "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--jit-compile", "off"]


@pytest.fixture(scope="module")
def svhn_run(tmp_path_factory):
    """A finished `python train.py --dataset svhn` run on mock data, with what it printed:
    (run folder, tfds data dir, manual dir, stdout); the run exports into run/serving. The mock
    replaces the download and the reading of svhn_cropped; tfds needs its original files only to
    exist (`--manual-dir`)."""
    root = tmp_path_factory.mktemp("svhn")
    data_dir, manual_dir, run = root / "tfds", root / "manual", root / "run"
    data_dir.mkdir(), manual_dir.mkdir()
    for name in ("train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"):
        (manual_dir / name).write_bytes(b"")
    stdout = io.StringIO()
    with tfds.testing.mock_data(num_examples=MOCK_IMAGES), contextlib.redirect_stdout(stdout):
        status = load_train_script().main(["--dataset", "svhn", *TINY_SIZES, "--data-dir", str(data_dir),
                                           "--manual-dir", str(manual_dir), "--output-dir", str(run), "--verbose", "0",
                                           "--model-base-path", str(run / "serving")])
    assert status == 0, stdout.getvalue()[-2000:]
    return run, data_dir, manual_dir, stdout.getvalue()


def is_colour(image):
    """Whether a picture has pixels whose channels differ, other than the drawn windows and
    progress bar: a colour canvas, not a grey one."""
    from keras_draw.animation import PROGRESS_COLOUR, READ_COLOUR, WRITE_COLOUR

    rgb = np.asarray(image.convert("RGB"), dtype=np.int16).reshape(-1, 3)
    overlays = np.array([READ_COLOUR, WRITE_COLOUR, PROGRESS_COLOUR], dtype=np.int16)
    coloured = (rgb[:, 0] != rgb[:, 1]) | (rgb[:, 1] != rgb[:, 2])
    overlay = (rgb[:, None, :] == overlays[None]).all(axis=-1).any(axis=-1)
    return bool(np.any(coloured & ~overlay))


@pytest.mark.slow
def test_train_py_dataset_svhn_trains_the_svhn_preset_in_colour(svhn_run):
    run, _, _, stdout = svhn_run
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["dataset"] == "svhn" and config["options"]["preset"] == "svhn"
    model = config["model"]
    assert (model["image_height"], model["image_width"], model["channels"]) == (32, 32, 3)
    assert (model["num_steps"], model["encoder_units"], model["read_n"]) == (2, 8, 2)  # the overrides
    assert "Next: open" in stdout and "python -m keras_draw.visualize --model" in stdout


@pytest.mark.slow
def test_the_run_writes_colour_pictures_and_drawings(svhn_run):
    run = svhn_run[0]
    for name in ("samples.png", "reconstructions.png", "drawing_steps.png", "reconstruction_steps.png"):
        with Image.open(run / name) as picture:
            assert picture.mode == "RGB" and is_colour(picture), name
    for name in ("drawing.gif", "reconstruction_drawing.gif"):
        with Image.open(run / name) as animation:
            assert animation.n_frames == 2, name  # a frame per step, T = 2
            animation.seek(animation.n_frames - 1)
            assert is_colour(animation), name
    with open(run / "metrics.csv") as f:
        assert f.readline().strip().split(",")[:1] == ["epoch"]


@pytest.mark.slow
def test_the_runs_model_evaluates_with_the_evaluate_command(svhn_run, capsys):
    from keras_draw import evaluate

    run = svhn_run[0]
    capsys.readouterr()
    with tfds.testing.mock_data(num_examples=MOCK_IMAGES):
        status = evaluate.main(["--model", str(run / "model.keras"), "--max-images", "16", "--importance-samples", "2",
                                "--verbose", "0"])  # dataset and folders from the run's config.json
    assert status == 0, capsys.readouterr().err
    result = json.loads((run / "evaluation_svhn_test.json").read_text())
    assert result["dataset"] == "svhn" and result["num_images"] == 16 and result["image_shape"] == [32, 32, 3]
    assert np.isfinite(result["negative_elbo"]) and result["note"] == evaluate.NON_BINARY_NOTE
    # A cross-entropy of intensities: per pixel and channel, at most ln 2 for an untrained canvas at 0.5.
    assert 0 < result["negative_elbo"] < 32 * 32 * 3 * np.log(2) * 1.2


@pytest.mark.slow
def test_the_runs_export_runs_in_tf_servings_loader_in_colour(svhn_run):
    import keras

    run, _, _, stdout = svhn_run
    assert f"Exported the SavedModel to {run / 'serving' / '1'}" in stdout
    model = keras.saving.load_model(run / "model.keras")
    rng = np.random.default_rng(3)
    x = rng.random((2, 32, 32, 3)).astype(np.float32)  # colour intensities, as svhn's
    epsilon = rng.standard_normal((2, 2, 4)).astype(np.float32)  # (batch, T, |z|)
    with ServingSession(run / "serving" / "1") as session:
        generated = session.predict("generate", {"noise": epsilon})["images"]
        elbo = session.predict("elbo", {"images": x, "noise": epsilon})
        drawn = session.predict("draw_seeded", {"seed": np.array([5, 6], np.int64)})
    assert generated.shape == (2, 32, 32, 3) and not np.allclose(generated[..., 0], generated[..., 1])
    np.testing.assert_allclose(generated, model.decode(epsilon)["images"], rtol=1e-5, atol=1e-5)  # eqs. 13-16
    expected = model.negative_elbo(x, epsilon)  # eqs. 9-12, per image
    for name in ("loss", "reconstruction_loss", "kl_loss"):
        np.testing.assert_allclose(elbo[name], expected[name], rtol=1e-5, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(elbo["loss"], elbo["reconstruction_loss"] + elbo["kl_loss"], rtol=1e-6)
    assert drawn["canvases"].shape == (2, 2, 32, 32, 3) and drawn["write_box"].shape == (2, 2, 4)
    np.testing.assert_allclose(drawn["images"], drawn["canvases"][:, -1], rtol=1e-6)  # σ(c_T), the last canvas
