"""A symbolic loop over DRAW's T steps: one `tf.while_loop`, whatever T is.

`keras.ops.scan` requires a step's outputs to match its carry; DRAW's steps carry LSTM states
but emit posteriors, canvases and windows, so this small scan keeps them apart.
"""

import tensorflow as tf


def scan(step, state, xs, output_names, jit_compile=False):
    """Runs `state, outputs = step(state, xs[t])` for t = 0..T−1 in one symbolic loop.

    Args:
        step: a function of (state, x_t) returning (new state, dict of float32 outputs).
        state: a tuple of tensors (or of dicts of tensors), the initial state.
        xs: a tensor whose first axis is time, shape (T, ...).
        output_names: the keys of the dict that `step` returns.
        jit_compile: compile the step body alone with XLA (the loop itself stays a TF loop):
            on a CPU it fuses the step's many small ops, where XLA over the whole loop is slow.

    Returns:
        The final state and a dict of each output stacked over time, shape (T, ...).
    """
    xs = tf.convert_to_tensor(xs)
    num_steps = xs.shape[0] if xs.shape[0] is not None else tf.shape(xs)[0]  # static T for XLA
    arrays = {name: tf.TensorArray(tf.float32, size=num_steps) for name in output_names}
    if jit_compile:
        step = tf.function(step, jit_compile=True, autograph=False)

    def body(t, state, arrays):
        state, outputs = step(state, xs[t])
        arrays = {name: arrays[name].write(t, tf.cast(outputs[name], tf.float32)) for name in output_names}
        return t + 1, state, arrays

    _, state, arrays = tf.while_loop(
        lambda t, *_: t < num_steps,
        body,
        (tf.constant(0), tuple(state), arrays),
        maximum_iterations=num_steps,  # XLA needs the bound of the loop and its arrays
    )
    return state, {name: _stack(array, xs.shape[0]) for name, array in arrays.items()}


def _stack(array, num_steps):
    """The array stacked to (T, ...), with T static when the inputs had it."""
    stacked = array.stack()
    stacked.set_shape(tf.TensorShape([num_steps]).concatenate(stacked.shape[1:]))
    return stacked
