"""A trained DRAW as a SavedModel that TensorFlow Serving loads: signatures and export.

`export(model, export_dir)` writes `<export_dir>/<version>/saved_model.pb` and `variables/`,
TF Serving's layout, with these signatures (each returns a dict of named tensors; the batch
dimension is free; export/README.md documents the shapes):

    generate, serving_default   noise (batch, T, |z|)      → images
    draw                        noise                      → images, canvases, write_window, write_box
    reconstruct                 images, noise              → reconstructions, canvases, read_window,
                                                             write_window, read_box, write_box
    elbo                        images, noise              → loss, reconstruction_loss, kl_loss (nats)

and, for each, a `<name>_seeded` twin that takes one int64 `seed` per row in place of the noise:
row i's noise is `tf.random.stateless_normal((T, |z|), seed=[seed_i, 0])` (eq. 13's z̃_t ~ N(0, I)
for generation, eq. 6's ε for inference), so a client without numpy gets the same images for the
same seed, and a row's result does not depend on the rest of its batch.

The inputs are declared with unknown rank: a TensorSpec with fixed dimensions would let the
graph's own checks fold away at trace time, and TF Serving does not check a request against the
declared shape. So the graph checks every input itself, one check after another, and rejects a
bad request with InvalidArgument naming the input and the shape it expects (wrong rank or size,
NaN or infinity, pixels outside [0, 1]). Every op is a stock TensorFlow op: no py_function.

A request's batch is capped (`max_batch`, default MAX_BATCH rows): TF Serving itself sets no
limit, and the memory of one request grows with its rows (the noise, the activations, the answer
that TF Serving turns into JSON: at the mnist preset ~155 KB a row of `generate_seeded`, 200 KB of
canvases a row of `draw`), so one request of 100,000 seeds would take a server's memory. The cap
is checked first, before any noise is drawn or any pass runs.
"""

import os
import re

import tensorflow as tf

from keras_draw.filterbank import filter_centres, pixel_coordinates
from keras_draw.files import atomic_path
from keras_draw.layers.attention_window import unpack_window

MAX_BATCH = 1024  # rows per request, by default (see the module's docstring)

# The model's passes, and whether each takes images (besides the noise, or a seed per row).
PASS_INPUTS = {"generate": False, "draw": False, "reconstruct": True, "elbo": True}

# The exported signatures, besides `serving_default` (the same as `generate`).
SIGNATURES = tuple(name + suffix for name in PASS_INPUTS for suffix in ("", "_seeded"))


# === Input checks, inside the graph ===


def _shape_matches(x, expected):
    """A boolean tensor: x has len(expected) dimensions, each equal to expected's (None: any)."""
    shape = tf.shape(x, out_type=tf.int64)
    rank = len(expected)
    padded = tf.concat([shape, tf.zeros([rank], tf.int64)], axis=0)[:rank]  # safe at any rank
    dims_match = [tf.constant(True)] + [
        tf.equal(padded[k], tf.cast(size, tf.int64)) for k, size in enumerate(expected) if size is not None
    ]
    return tf.logical_and(tf.equal(tf.size(shape), rank), tf.reduce_all(tf.stack(dims_match)))


def _checked(x, checks):
    """x, once each `(condition_fn, message_fn)` has held, evaluated one after the other.

    A check's ops are built under the previous check's control dependency, so a wrong rank is
    reported before the size, the size before the values, and no later op sees a bad tensor.
    """
    previous = []
    for condition_fn, message_fn in checks:
        with tf.control_dependencies(previous):
            previous = [tf.debugging.Assert(condition_fn(), message_fn(), summarize=8)]
    with tf.control_dependencies(previous):
        return tf.identity(x)


def check_input(x, name, expected, description, pixels=False, max_batch=None):
    """x after checks of its shape (`expected`, None for any size) and values, with static shape.

    `description` spells the expected shape for the message, e.g. "(batch, T, latent_dim) =
    (batch, 64, 100)". With `max_batch`, the first dimension is at most that. Floats must be
    finite; with `pixels`, in [0, 1] too.
    """
    checks = [(
        lambda: _shape_matches(x, expected),
        lambda: [f"{name} must have shape {description}. Received shape:", tf.shape(x)],
    )]
    if max_batch is not None:
        checks.append((
            lambda: tf.shape(x, out_type=tf.int64)[0] <= max_batch,
            lambda: [f"{name} has more rows than the {max_batch} this model serves per request (the max_batch of "
                     "its export): send several smaller requests. Received rows:", tf.shape(x)[0]],
        ))
    if x.dtype.is_floating:
        checks.append((
            lambda: tf.reduce_all(tf.math.is_finite(x)),
            lambda: [f"{name} must be finite (no NaN or infinity)."],
        ))
    if pixels:
        checks.append((
            lambda: tf.reduce_all(tf.logical_and(x >= 0.0, x <= 1.0)),
            lambda: [f"{name} must lie in [0, 1]. Received values from", tf.reduce_min(x), "to", tf.reduce_max(x)],
        ))
    x = _checked(x, checks)
    static = [size if isinstance(size, int) else None for size in expected]
    return tf.ensure_shape(x, static)


# === The noise ===


def noise_from_seeds(seed, num_steps, latent_dim):
    """ε for every row, (batch, T, |z|): row i is stateless_normal((T, |z|), seed=[seed_i, 0])."""
    row = lambda s: tf.random.stateless_normal((num_steps, latent_dim), seed=tf.stack([s, tf.zeros_like(s)]))
    return tf.map_fn(row, seed, fn_output_signature=tf.TensorSpec((num_steps, latent_dim), tf.float32))


# === The attention boxes ===


def window_box(window, n):
    """The box spanned by the N×N filter centres (eqs. 19-20) of windows (..., 5).

    Returns (..., 4): x_min, y_min, x_max, y_max in 0-based pixel coordinates (pixel (row r,
    column c) of an image is centred on (x=c, y=r)), so a rectangle with these corners, drawn
    over the image, outlines the first and last filter centres of the grid.
    """
    flat = tf.reshape(window, (-1, 5))  # (batch·T, 5)
    g_x, g_y, delta, _, _ = unpack_window(flat)
    mu_x = pixel_coordinates(filter_centres(g_x, delta, n))  # (batch·T, N), eq. 19
    mu_y = pixel_coordinates(filter_centres(g_y, delta, n))  # (batch·T, N), eq. 20
    box = tf.stack([mu_x[:, 0], mu_y[:, 0], mu_x[:, -1], mu_y[:, -1]], axis=-1)  # δ > 0: sorted
    return tf.reshape(box, tf.concat([tf.shape(window)[:-1], [4]], axis=0))


# === The signatures ===


class DrawServing(tf.Module):
    """The signatures of a `Draw` as `tf.function`s, with the model's variables tracked."""

    def __init__(self, model, max_batch=MAX_BATCH):
        super().__init__(name="draw_serving")
        self.model_variables = list(model.variables)  # saved into variables/
        # The model is held in closures, not attributes: only its variables go into the export.
        self._functions = self._no_dependency(_signature_functions(model, max_batch))

    def signatures(self):
        """{signature name: concrete function}, `serving_default` (= `generate`) included."""
        concrete = {name: fn.get_concrete_function() for name, fn in self._functions.items()}
        return {"serving_default": concrete["generate"], **concrete}


def _model_passes(model):
    """The four passes of the model as tf.functions of checked inputs, each traced once.

    Every signature checks its inputs, then calls one of these (a function call in the graph),
    so a signature and its `_seeded` twin share one trace of the model.
    """
    noise = tf.TensorSpec((None, model.num_steps, model.latent_dim), tf.float32)
    images = tf.TensorSpec((None, *model.image_shape), tf.float32)

    @tf.function(input_signature=[noise])
    def generate(epsilon):
        return {"images": model.decode(epsilon)["images"]}  # eqs. 13-16

    @tf.function(input_signature=[noise])
    def draw(epsilon):
        return _with_boxes(model.decode(epsilon, return_sequence=True), model)  # eqs. 13-16

    @tf.function(input_signature=[images, noise])
    def reconstruct(x, epsilon):
        outputs = model.infer(x, epsilon, return_sequence=True)  # eqs. 3-8
        kept = {k: v for k, v in outputs.items() if k in ("canvases", "read_window", "write_window")}
        return _with_boxes({"reconstructions": tf.sigmoid(outputs["canvas"]), **kept}, model)  # σ(c_T)

    @tf.function(input_signature=[images, noise])
    def elbo(x, epsilon):
        return dict(model.negative_elbo(x, epsilon))  # eqs. 9-12, nats per image

    return {"generate": generate, "draw": draw, "reconstruct": reconstruct, "elbo": elbo}


def _signature_functions(model, max_batch):
    """{name: tf.function} of the eight signatures: each pass from `noise` and from `seed`, of at
    most `max_batch` rows (checked on the first input of each)."""
    t, z = model.num_steps, model.latent_dim
    passes = _model_passes(model)
    spec = lambda name, dtype: tf.TensorSpec(None, dtype, name=name)  # unknown rank: see the top

    def checked_images(images):
        description = "(batch, height, width, channels) = (batch, {}, {}, {})".format(*model.image_shape)
        return check_input(images, "images", [None, *model.image_shape], description, pixels=True,
                           max_batch=max_batch)

    def batch_of(x):
        return (None, "") if x is None else (tf.shape(x)[0], ", with the batch size of images")

    def checked_noise(noise, x=None):
        batch, same = batch_of(x)
        description = f"(batch, T, latent_dim) = (batch, {t}, {z}){same}"
        return check_input(noise, "noise", [batch, t, z], description, max_batch=max_batch if x is None else None)

    def noise_of_seed(seed, x=None):
        batch, same = batch_of(x)
        seed = check_input(seed, "seed", [batch], f"(batch,), one integer per row{same}",
                           max_batch=max_batch if x is None else None)
        return noise_from_seeds(seed, t, z)

    def from_noise(run):
        return lambda noise: run(checked_noise(noise))

    def from_seed(run):
        return lambda seed: run(noise_of_seed(seed))

    def from_images_and_noise(run):
        def signature(images, noise):
            x = checked_images(images)
            return run(x, checked_noise(noise, x))
        return signature

    def from_images_and_seed(run):
        def signature(images, seed):
            x = checked_images(images)
            return run(x, noise_of_seed(seed, x))
        return signature

    noise, seed, images = spec("noise", tf.float32), spec("seed", tf.int64), spec("images", tf.float32)
    inputs = {  # does a pass take images? -> (suffix, the signature's inputs) of its two signatures
        False: [("", from_noise, [noise]), ("_seeded", from_seed, [seed])],
        True: [("", from_images_and_noise, [images, noise]), ("_seeded", from_images_and_seed, [images, seed])],
    }
    return {name + suffix: tf.function(wrap(passes[name]), input_signature=specs)
            for name, takes_images in PASS_INPUTS.items() for suffix, wrap, specs in inputs[takes_images]}


def _with_boxes(outputs, model):
    """Adds `read_box` / `write_box` (batch, T, 4) beside each window (see `window_box`)."""
    outputs = dict(outputs)
    for kind, n in (("read", model.read_n), ("write", model.write_n)):
        if f"{kind}_window" in outputs:
            outputs[f"{kind}_box"] = window_box(outputs[f"{kind}_window"], n)
    return outputs


# === Export ===


class ExportWriteError(OSError):
    """Writing a version failed (a full disk, a quota, permissions); nothing was left half-written."""


def next_version(export_dir):
    """One more than the highest integer version folder in `export_dir` (1 when none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(name) for name in os.listdir(export_dir) if re.fullmatch(r"\d+", name)]
    return max(versions, default=0) + 1


def export(model, export_dir, version=None, max_batch=MAX_BATCH):
    """Writes `model` as version `version` (default: the next) of a TF Serving model folder.

    Every signature refuses a request of more than `max_batch` rows (InvalidArgument).

    The SavedModel is written into a hidden folder inside `export_dir` (".partial-*", which TF
    Serving ignores: it only loads folders named by an integer) and renamed into place whole,
    so a crash never leaves a half-written version. An existing version is never overwritten.

    Returns:
        The path of the version folder, `<export_dir>/<version>`.

    Raises:
        ExportWriteError: the write failed (e.g. no space left on device); the partial copy is
            removed, and so is `export_dir` if this call created it and it is empty.
    """
    if version is None:
        version = next_version(export_dir)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer. Received: version={version!r}")
    path = os.path.join(os.fspath(export_dir), str(version))
    if os.path.exists(path):
        raise FileExistsError(f"Version {version} already exists; versions are never overwritten: {path}")
    created = not os.path.isdir(export_dir)
    os.makedirs(export_dir, exist_ok=True)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= 2**31 - 1:
        raise ValueError(f"max_batch must be a positive integer. Received: max_batch={max_batch!r}")
    module = DrawServing(model, max_batch)
    try:
        with atomic_path(path) as temporary:
            tf.saved_model.save(module, temporary, signatures=module.signatures())
            if os.path.exists(path):  # another export took the version meanwhile
                raise FileExistsError(f"Version {version} already exists; versions are never overwritten: {path}")
    except FileExistsError:
        raise
    except (OSError, tf.errors.OpError) as err:  # TensorFlow's file writes raise OpErrors (ENOSPC: ResourceExhausted)
        if created and not os.listdir(export_dir):
            os.rmdir(export_dir)
        raise _write_error(err, path) from err
    return path


def _write_error(err, path):
    """An ExportWriteError saying why writing `path` failed, and that nothing was left behind."""
    if isinstance(err, OSError):
        reason = os.strerror(err.errno) if err.errno else str(err)
    else:
        reason = next((line for line in err.message.splitlines() if line.strip()), type(err).__name__)
    error = ExportWriteError(f"Cannot write {path}: {reason.strip()}. Nothing was left half-written: the partial "
                             "copy was removed, and TF Serving sees no new version.")
    error.errno = getattr(err, "errno", None)
    return error
