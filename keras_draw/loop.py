"""A loop over DRAW's T steps: one `tf.while_loop` whatever T is, or unrolled for training.

`keras.ops.scan` requires a step's outputs to match its carry; DRAW's steps carry LSTM states
but emit posteriors, canvases and windows, so this small scan keeps them apart.
"""

import tensorflow as tf

# DRAW steps per compiled call when the loop is unrolled: two halve the XLA executions of a
# pass, which trains faster than one; four and eight were no faster and took longer to compile
# (docs/speed.md has the measurements).
STEPS_PER_CALL = 2


def scan(step, state, xs, output_names, jit_compile=False, unroll=False):
    """Runs `state, outputs = step(state, xs[t])` for t = 0..T−1, in one symbolic loop or unrolled.

    Args:
        step: a function of (state, x_t) returning (new state, dict of float32 outputs).
        state: a tuple of tensors (or of dicts of tensors), the initial state.
        xs: a tensor whose first axis is time, shape (T, ...).
        output_names: the keys of the dict that `step` returns.
        jit_compile: compile the step body alone with XLA (the loop itself is not compiled):
            on a CPU it fuses the step's many small ops, where XLA over the whole loop is slow.
        unroll: the T steps called one after the other in the graph instead of a
            `tf.while_loop` (T must be static), which skips the loop's gradient accumulators.
            With `jit_compile` each compiled call runs `STEPS_PER_CALL` steps (the last call
            the rest), so a pass is T / 2 XLA executions forward and as many backward
            (docs/speed.md); without it, tracing grows with T.

    Returns:
        The final state and a dict of each output stacked over time, shape (T, ...).
    """
    xs = tf.convert_to_tensor(xs)
    if unroll:
        return _unrolled(step, tuple(state), xs, output_names, jit_compile)
    if jit_compile:
        step = tf.function(step, jit_compile=True, autograph=False)
    num_steps = xs.shape[0] if xs.shape[0] is not None else tf.shape(xs)[0]  # static T for XLA
    arrays = {name: tf.TensorArray(tf.float32, size=num_steps) for name in output_names}

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


def _unrolled(step, state, xs, output_names, jit_compile):
    num_steps = xs.shape[0]
    if num_steps is None:
        raise ValueError(f"An unrolled loop needs a static number of steps. Received: shape={xs.shape}")
    group = STEPS_PER_CALL if jit_compile else 1
    calls = {}  # the group's function, traced once per group size (the last group may be shorter)
    outputs = {name: [] for name in output_names}
    for start in range(0, num_steps, group):
        size = min(group, num_steps - start)
        if size not in calls:
            calls[size] = _steps(step, size, output_names, jit_compile)
        state, group_outputs = calls[size](state, xs[start : start + size])
        for name in output_names:
            outputs[name].append(group_outputs[name])
    return state, {name: tf.concat(values, axis=0) for name, values in outputs.items()}


def _steps(step, size, output_names, jit_compile):
    """`size` consecutive steps as one function of (state, xs[t : t + size]), its outputs
    stacked to (size, ...); compiled with XLA if `jit_compile`."""

    def steps(state, xs):
        outputs = {name: [] for name in output_names}
        for t in range(size):
            state, step_outputs = step(state, xs[t])
            for name in output_names:
                outputs[name].append(tf.cast(step_outputs[name], tf.float32))
        return state, {name: tf.stack(values) for name, values in outputs.items()}

    return tf.function(steps, jit_compile=True, autograph=False) if jit_compile else steps


def _stack(array, num_steps):
    """The array stacked to (T, ...), with T static when the inputs had it."""
    stacked = array.stack()
    stacked.set_shape(tf.TensorShape([num_steps]).concatenate(stacked.shape[1:]))
    return stacked
