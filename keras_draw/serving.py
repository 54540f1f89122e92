"""A trained DRAW as a SavedModel that TensorFlow Serving loads: signatures and export.

`export(model, export_dir)` writes `<export_dir>/<version>/saved_model.pb` and `variables/`,
TF Serving's layout, with a signature for each pass of the model in `PASSES` (`generate`, also
`serving_default`; `draw`; `reconstruct`; `elbo`): it takes the noise (batch, T, |z|), after the
images for the last two, and returns a dict of named tensors (export/README.md documents their
shapes). Each has a `<name>_seeded` twin that takes one int64 `seed` per row in place of the noise:
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

from keras_draw.files import atomic_path
from keras_draw.images import window_box

MAX_BATCH = 1024  # rows per request, by default (see the module's docstring)


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


# === The signatures ===


def _reconstruct(model, x, epsilon):
    inferred = model.infer(x, epsilon, return_sequence=True)  # eqs. 3-8
    return {"reconstructions": tf.sigmoid(inferred["canvas"]), **inferred}  # σ(c_T)


# The model's passes: name -> (its inputs besides the noise, the pass, its outputs: the windows and
# boxes with attention only). Each is exported as `name`, of the noise, and `name_seeded`, of seeds.
SEQUENCE = ("canvases", "write_window", "write_box")
PASSES = {
    "generate": ((), lambda model, epsilon: model.decode(epsilon), ("images",)),  # eqs. 13-16
    "draw": ((), lambda model, epsilon: model.decode(epsilon, return_sequence=True), ("images", *SEQUENCE)),
    "reconstruct": (("images",), _reconstruct, ("reconstructions", *SEQUENCE, "read_window", "read_box")),
    "elbo": (("images",), lambda model, x, epsilon: model.negative_elbo(x, epsilon),  # eqs. 9-12, nats per image
             ("loss", "reconstruction_loss", "kl_loss")),
}
INPUT_DTYPES = {"images": tf.float32, "noise": tf.float32, "seed": tf.int64}

# The exported signatures, besides `serving_default` (the same as `generate`).
SIGNATURES = tuple(name + suffix for name in PASSES for suffix in ("", "_seeded"))


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


def _signature_functions(model, max_batch):
    """{name: tf.function} of the signatures, each checking its inputs, then calling its pass.

    A pass is a tf.function of checked inputs traced once (a function call in the graph), so a
    signature and its `_seeded` twin share one trace of the model.
    """
    functions = {}
    for name, (inputs, run, outputs) in PASSES.items():
        run_pass = _pass_function(model, inputs, run, outputs)
        for suffix, source in (("", "noise"), ("_seeded", "seed")):
            functions[name + suffix] = _signature_function(model, (*inputs, source), run_pass, max_batch)
    return functions


def _signature_function(model, names, run_pass, max_batch):
    """`run_pass` as a tf.function of the inputs `names`, checked first (`_checked_inputs`)."""

    def signature(*tensors):
        return run_pass(*_checked_inputs(model, dict(zip(names, tensors)), max_batch))

    specs = [tf.TensorSpec(None, INPUT_DTYPES[name], name=name) for name in names]  # unknown rank: see the top
    return tf.function(signature, input_signature=specs)


def _pass_function(model, inputs, run, outputs):
    """`run` as a tf.function of (images, if among its `inputs`, and) the noise, returning those of
    `outputs` the model has; `read_box` / `write_box` (batch, T, 4) come from the windows."""
    specs = [tf.TensorSpec((None, *model.image_shape), tf.float32) for _ in inputs]
    specs.append(tf.TensorSpec((None, model.num_steps, model.latent_dim), tf.float32))

    def run_pass(*tensors):
        results = dict(run(model, *tensors))
        for kind, n in (("read", model.read_n), ("write", model.write_n)):
            if f"{kind}_window" in results:
                results[f"{kind}_box"] = tf.stack(window_box(results[f"{kind}_window"], n), axis=-1)
        return {key: results[key] for key in outputs if key in results}

    return tf.function(run_pass, input_signature=specs)


def _checked_inputs(model, tensors, max_batch):
    """The pass's arguments from a signature's inputs {name: tensor}: the images, if any, checked;
    the noise checked, or drawn from the seeds. The first input has at most `max_batch` rows, the
    noise or seeds the images' rows."""
    t, z = model.num_steps, model.latent_dim
    x = tensors.get("images")
    batch, same, cap = None, "", max_batch
    if x is not None:
        description = "(batch, height, width, channels) = (batch, {}, {}, {})".format(*model.image_shape)
        x = check_input(x, "images", [None, *model.image_shape], description, pixels=True, max_batch=max_batch)
        batch, same, cap = tf.shape(x)[0], ", with the batch size of images", None
    if "seed" in tensors:
        seed = check_input(tensors["seed"], "seed", [batch], f"(batch,), one integer per row{same}", max_batch=cap)
        epsilon = noise_from_seeds(seed, t, z)
    else:
        description = f"(batch, T, latent_dim) = (batch, {t}, {z}){same}"
        epsilon = check_input(tensors["noise"], "noise", [batch, t, z], description, max_batch=cap)
    return (epsilon,) if x is None else (x, epsilon)


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
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= 2**31 - 1:
        raise ValueError(f"max_batch must be an integer from 1 to 2**31 - 1. Received: max_batch={max_batch!r}")
    created = not os.path.isdir(export_dir)
    os.makedirs(export_dir, exist_ok=True)
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
