"""keras_draw.loop.scan: the while loop and the unrolled loop, with and without XLA, give the
same states, outputs and gradients, checked on a recurrence with a closed form."""

import numpy as np
import pytest
import tensorflow as tf

from keras_draw import loop

A = 0.9  # s_t = A·s_{t−1} + x_t, y_t = s_t²


def linear_step(calls):
    def step(state, x_t):
        calls.append(1)  # once per trace of a step, not per run
        (s,) = state
        s = A * s + x_t
        return (s,), {"y": s * s}

    return step


def reference(s_0, xs):
    """numpy: the states s_1..T and outputs y_t, and ∂(Σ_t y_t)/∂s_0 and ∂/∂x_t."""
    s, states = s_0, []
    for x_t in xs:
        s = A * s + x_t
        states.append(s)
    states = np.stack(states)
    # ∂y_u/∂x_t = 2 s_u A^(u−t) for u ≥ t; ∂y_u/∂s_0 = 2 s_u A^u
    num_steps = len(xs)
    powers = np.array([[A ** (u - t) if u >= t else 0.0 for u in range(num_steps)] for t in range(num_steps)])
    d_xs = np.einsum("tu,ub->tb", powers, 2 * states)
    d_s_0 = np.einsum("u,ub->b", A ** np.arange(1, num_steps + 1), 2 * states)
    return states, states**2, d_s_0, d_xs


@pytest.mark.parametrize("num_steps", [1, 4, 5])
@pytest.mark.parametrize("jit_compile, unroll", [(False, False), (True, False), (False, True), (True, True)])
def test_every_loop_gives_the_closed_form_states_outputs_and_gradients(num_steps, jit_compile, unroll):
    rng = np.random.default_rng(num_steps)
    s_0 = tf.constant(rng.normal(size=3), tf.float32)
    xs = tf.constant(rng.normal(size=(num_steps, 3)), tf.float32)
    states, outputs, d_s_0, d_xs = reference(s_0.numpy().astype(np.float64), xs.numpy().astype(np.float64))

    @tf.function
    def run(s_0, xs):
        with tf.GradientTape() as tape:
            tape.watch([s_0, xs])
            (s_T,), ys = loop.scan(linear_step([]), (s_0,), xs, ["y"], jit_compile=jit_compile, unroll=unroll)
            total = tf.reduce_sum(ys["y"])
        return s_T, ys["y"], tape.gradient(total, [s_0, xs])

    s_T, ys, (g_s_0, g_xs) = run(s_0, xs)
    np.testing.assert_allclose(s_T, states[-1], rtol=1e-5)
    assert ys.shape == (num_steps, 3)
    np.testing.assert_allclose(ys, outputs, rtol=1e-5)
    np.testing.assert_allclose(g_s_0, d_s_0, rtol=1e-5)
    np.testing.assert_allclose(g_xs, d_xs, rtol=1e-5)


@pytest.mark.parametrize("num_steps, traced", [(4, 2), (5, 3), (1, 1)])
def test_the_unrolled_compiled_loop_runs_steps_per_call_steps_in_each_compiled_call(num_steps, traced):
    """T = 5 with two steps per call: one function of two steps, called twice, and one of a
    single step for the last; each is traced once, so the step body is traced 2 + 1 times."""
    assert loop.STEPS_PER_CALL == 2
    calls = []
    xs = tf.ones((num_steps, 2))
    tf.function(lambda xs: loop.scan(linear_step(calls), (tf.zeros(2),), xs, ["y"], jit_compile=True, unroll=True))(xs)
    assert len(calls) == traced
    calls.clear()
    tf.function(lambda xs: loop.scan(linear_step(calls), (tf.zeros(2),), xs, ["y"], unroll=True))(xs)
    assert len(calls) == num_steps  # without XLA, every step is traced into the graph


def test_an_unrolled_loop_needs_a_static_number_of_steps():
    step = linear_step([])
    run = tf.function(lambda xs: loop.scan(step, (tf.zeros(2),), xs, ["y"], unroll=True),
                      input_signature=[tf.TensorSpec((None, 2))])
    with pytest.raises(ValueError, match="static number of steps"):
        run.get_concrete_function()
