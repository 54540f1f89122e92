"""The signatures of a SavedModel that TensorFlow Serving runs, and the checks of their inputs.

Each model class has a table of passes (`SERVED`), each exported as a signature. A `Draw` has
`generate` (also `serving_default`), `draw`, `reconstruct` and `elbo`: each takes the noise ε
(batch, T, |z|), after the images for the last two, and returns a dict of named tensors
(export/README.md documents their shapes). A pass that takes noise also has a `<name>_seeded` twin
taking one int64 `seed` per row instead: row i's noise is
`tf.random.stateless_normal((T, |z|), seed=[seed_i, 0])` (eq. 13's z̃_t ~ N(0, I) for generation,
eq. 6's ε for inference), so a client without numpy gets the same images for the same seed, and a
row's result does not depend on the rest of its batch. A `DrawClassifier` has `classify` (also
`serving_default`): images in, `probabilities` p(y | x) (batch, classes) and `classes`, the most
probable class (batch,) int64; and `glimpses`, the same with the T read windows and their boxes
(the paper's Figure 3).

Inputs declare their shapes with an open batch dimension (`noise` (-1, T, |z|)), which
`saved_model_cli show` and TF Serving's metadata endpoint report. TF Serving does not hold a
request to them: a tensor of any shape reaches the graph. So the graph checks every input itself,
one check after another, and refuses a bad request with InvalidArgument naming the input and what
it must be (wrong rank or size, NaN or infinity, pixels outside [0, 1], more rows than
`max_batch`). The checks read each input with its static shape forgotten, since TensorFlow folds
away a check that the declared shape makes look redundant (a wrong rank then got through).
Every op is a stock TensorFlow op: no py_function.

A request's rows are capped (`max_batch`, default MAX_BATCH): TF Serving itself sets no limit,
and a request's memory grows with its rows (at the mnist preset, `draw`'s canvases alone are
64 × 28 × 28 float32 values, 200 KB a row). The cap is checked before any noise is drawn or any
pass runs.
"""

from typing import Callable, NamedTuple

import keras
import tensorflow as tf

from keras_draw.draw import Draw
from keras_draw.draw_classifier import DrawClassifier  # imports no serving: no cycle
from keras_draw.images import window_box

MAX_BATCH = 1024  # rows per request, by default (see the module's docstring)


# === The inputs ===


class Input(NamedTuple):
    """A signature input: its dtype, the shape of one row, and that shape as messages spell it."""

    dtype: tf.DType
    row_shape: Callable  # model -> tuple
    description: Callable  # model -> str
    pixels: bool = False  # values in [0, 1]


INPUTS = {
    "images": Input(tf.float32, lambda model: model.image_shape,
                    lambda model: "(batch, height, width, channels) = (batch, {}, {}, {})".format(*model.image_shape),
                    pixels=True),
    "noise": Input(tf.float32, lambda model: (model.num_steps, model.latent_dim),
                   lambda model: f"(batch, T, latent_dim) = (batch, {model.num_steps}, {model.latent_dim})"),
    "seed": Input(tf.int64, lambda model: (), lambda model: "(batch,), one integer per row"),
}


# === The passes of each model class ===


class Pass(NamedTuple):
    """A signature: `run(model, *inputs)` returns a dict holding (those the model has of) `outputs`.

    `inputs` are names in INPUTS; a pass that takes "noise" is also exported as `<name>_seeded`.
    """

    inputs: tuple
    run: Callable
    outputs: tuple


def _reconstruct(model, x, epsilon):
    inferred = model.infer(x, epsilon, return_sequence=True)  # eqs. 3-8
    return {"reconstructions": tf.sigmoid(inferred["canvas"]), **inferred}  # σ(c_T)


SEQUENCE = ("canvases", "write_window", "write_box")  # windows and boxes with attention only
DRAW_PASSES = {  # the first is also `serving_default`
    "generate": Pass(("noise",), lambda model, epsilon: model.decode(epsilon), ("images",)),  # eqs. 13-16
    "draw": Pass(("noise",), lambda model, epsilon: model.decode(epsilon, return_sequence=True), ("images", *SEQUENCE)),
    "reconstruct": Pass(("images", "noise"), _reconstruct, ("reconstructions", *SEQUENCE, "read_window", "read_box")),
    "elbo": Pass(("images", "noise"), lambda model, x, epsilon: model.negative_elbo(x, epsilon),  # eqs. 9-12, nats
                 ("loss", "reconstruction_loss", "kl_loss")),
}



def _classify(model, x):
    """p(y | x) (batch, classes), its most probable class (batch,) int64, and the T read windows."""
    steps = model.glimpse_sequence(x, names=("window",))  # eqs. 19-27, the LSTM, W h_T
    probabilities = keras.activations.softmax(steps["logits"])
    classes = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
    return {"probabilities": probabilities, "classes": classes, "read_window": steps["window"]}


CLASSIFIER_PASSES = {  # the first is also `serving_default`
    "classify": Pass(("images",), _classify, ("probabilities", "classes")),
    "glimpses": Pass(("images",), _classify, ("probabilities", "classes", "read_window", "read_box")),  # Figure 3
}

# The signatures of each model class (and its subclasses). Another model class adds its own table,
# e.g. SERVED[Scorer] = {"score": Pass(("images",), lambda model, x: {"scores": model(x)}, ("scores",))}.
SERVED = {Draw: DRAW_PASSES, DrawClassifier: CLASSIFIER_PASSES}


def passes(model):
    """{pass name: Pass} of `model`'s class, from SERVED."""
    for cls in type(model).__mro__:
        if cls in SERVED:
            return SERVED[cls]
    served = ", ".join(cls.__name__ for cls in SERVED)
    raise TypeError(f"No serving signatures for a {type(model).__name__}: keras_draw.serving.SERVED has {served}.")


def signature_names(model):
    """The names of `model`'s signatures, in order; `serving_default` (the first) aside."""
    return [name for name, _, _ in signatures(model)]


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


def check_input(x, name, expected, description, pixels=False, max_batch=None):
    """x once its shape (`expected`, None for any size) and values have passed, with that static shape.

    `description` spells the expected shape for the message. With `max_batch`, the first
    dimension is at most that. Floats must be finite; with `pixels`, in [0, 1] too. Each check's
    ops are built under the previous check's control dependency, so a wrong rank is reported
    before the size, the size before the values, and no later op sees a bad tensor.
    """
    # The static shape forgotten: PlaceholderWithDefault (a stock op that passes its input through)
    # declares any shape, so that neither tracing nor Grappler can fold a check below away.
    x = tf.raw_ops.PlaceholderWithDefault(input=x, shape=tf.TensorShape(None))
    shape = tf.shape(x, out_type=tf.int64)
    checks = [(lambda: _shape_matches(x, expected), lambda: [f"{name} must have shape {description}. Received shape:", shape])]
    if max_batch is not None:
        checks.append((lambda: shape[0] <= max_batch,
                       lambda: [f"{name} has more rows than the {max_batch} this model serves per request (the "
                                "max_batch of its export): send several smaller requests. Received rows:", shape[0]]))
    if x.dtype.is_floating:
        checks.append((lambda: tf.reduce_all(tf.math.is_finite(x)),
                       lambda: [f"{name} must be finite (no NaN or infinity)."]))
    if pixels:
        checks.append((lambda: tf.reduce_all(tf.logical_and(x >= 0.0, x <= 1.0)),
                       lambda: [f"{name} must lie in [0, 1]. Received values from", tf.reduce_min(x), "to",
                                tf.reduce_max(x)]))
    previous = []
    for condition, message in checks:
        with tf.control_dependencies(previous):
            previous = [tf.debugging.Assert(condition(), message(), summarize=8)]
    with tf.control_dependencies(previous):
        x = tf.identity(x)
    return tf.ensure_shape(x, [size if isinstance(size, int) else None for size in expected])


def noise_from_seeds(seed, num_steps, latent_dim):
    """ε for every row, (batch, T, |z|): row i is stateless_normal((T, |z|), seed=[seed_i, 0])."""
    row = lambda s: tf.random.stateless_normal((num_steps, latent_dim), seed=tf.stack([s, tf.zeros_like(s)]))
    return tf.map_fn(row, seed, fn_output_signature=tf.TensorSpec((num_steps, latent_dim), tf.float32))


def _checked_inputs(model, names, tensors, max_batch):
    """{name: tensor} of a signature's inputs, each checked (`check_input`). The first has at most
    `max_batch` rows, the others as many as the first."""
    checked, batch, same = {}, None, ""
    for name, x in zip(names, tensors):
        spec = INPUTS[name]
        expected, description = [batch, *spec.row_shape(model)], spec.description(model) + same
        checked[name] = check_input(x, name, expected, description, spec.pixels, max_batch if batch is None else None)
        if batch is None:
            batch, same = tf.shape(checked[name])[0], f", with the batch size of {name}"
    return checked


# === The signatures ===


def signatures(model, max_batch=MAX_BATCH):
    """[(name, function, input specs)] of `model`'s signatures (SERVED), in `signature_names` order.

    A pass is traced once, as a tf.function of checked inputs that the signature and its
    `_seeded` twin both call (a function call in the graph).
    """
    result = []
    for name, spec in passes(model).items():
        run_pass = _pass_function(model, spec)
        result.append((name, _signature_function(model, spec.inputs, spec.inputs, run_pass, max_batch),
                       _specs(model, spec.inputs)))
        if "noise" in spec.inputs:
            seeded = tuple("seed" if source == "noise" else source for source in spec.inputs)
            result.append((name + "_seeded", _signature_function(model, spec.inputs, seeded, run_pass, max_batch),
                           _specs(model, seeded)))
    return result


def _specs(model, names):
    """The declared inputs: each name's dtype and shape, with an open batch dimension."""
    return [keras.InputSpec(shape=(None, *INPUTS[name].row_shape(model)), dtype=INPUTS[name].dtype.name, name=name)
            for name in names]


def _signature_function(model, pass_inputs, names, run_pass, max_batch):
    """The signature of inputs `names`: checks them, draws the noise from the seeds, runs the pass."""

    def signature(*tensors):
        checked = _checked_inputs(model, names, tensors, max_batch)
        if "seed" in checked:
            checked["noise"] = noise_from_seeds(checked["seed"], model.num_steps, model.latent_dim)
        return run_pass(*[checked[name] for name in pass_inputs])

    return signature


def _pass_function(model, spec):
    """`spec.run` as a tf.function returning those of `spec.outputs` the model has; `read_box` /
    `write_box` (batch, T, 4) come from the windows."""

    def run_pass(*tensors):
        results = dict(spec.run(model, *tensors))
        for kind, n in (("read", getattr(model, "read_n", None)), ("write", getattr(model, "write_n", None))):
            if f"{kind}_window" in results:
                results[f"{kind}_box"] = tf.stack(window_box(results[f"{kind}_window"], n), axis=-1)
        return {key: results[key] for key in spec.outputs if key in results}

    static = [tf.TensorSpec((None, *INPUTS[name].row_shape(model)), INPUTS[name].dtype) for name in spec.inputs]
    return tf.function(run_pass, input_signature=static, autograph=False)
