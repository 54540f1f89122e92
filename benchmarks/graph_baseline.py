"""A plain TensorFlow graph DRAW: the implementation a user would pick instead of keras_draw.

In the way of the oldest TensorFlow DRAW (ericjang/draw): the T steps unrolled in Python inside
one graph (a `tf.function`), one matmul per LSTM step on the concatenation [input, h], the
filterbank read and write of eqs. 19-29, the canvas, the loss of eqs. 9-12 (sigmoid cross-entropy
and the closed-form KL), gradients by `tf.GradientTape`, clipping at global norm 10 and Adam,
written in TensorFlow ops with no Keras layer. It trains nothing of ours: `train_throughput.py
--compare-graph` times its steps alternating with keras_draw's, at the same sizes, so their
ratio is what a user of `python train.py` gains over it.
"""

import math


def graph_draw_train_step(tf, config, batch_size, learning_rate=1e-3, clip_norm=10.0, seed=0):
    """One training step of the plain graph DRAW on fixed binary images, traced and run once here.

    Returns a function that runs one more step and returns its loss (nats per image).
    """
    height, width, channels = config["image_height"], config["image_width"], config["channels"]
    e, d, z, t = (config[k] for k in ("encoder_units", "decoder_units", "latent_dim", "num_steps"))
    read_n, write_n = config["read_n"], config["write_n"]
    normal = tf.random.stateless_normal
    pixels = height * width * channels

    def weights(name, rows, columns, index):
        scale = math.sqrt(2.0 / (rows + columns))  # Glorot's normal
        return {f"{name}_w": tf.Variable(normal((rows, columns), seed=(seed, index), stddev=scale)),
                f"{name}_b": tf.Variable(tf.zeros((columns,)))}

    read_dim = 2 * read_n * read_n * channels
    params = {
        **weights("encoder", read_dim + d + e, 4 * e, 1),  # [r_t, h^dec_{t-1}, h^enc_{t-1}]
        **weights("decoder", z + d, 4 * d, 2),  # [z_t, h^dec_{t-1}]
        **weights("latent", e, 2 * z, 3),  # μ_t and log σ_t
        **weights("read_window", d, 5, 4),
        **weights("write_window", d, 5, 5),
        **weights("write_patch", d, write_n * write_n * channels, 6),
    }
    variables = list(params.values())
    slots = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in variables]
    iterations = tf.Variable(0.0)
    x = tf.cast(tf.random.stateless_uniform((batch_size, height, width, channels), seed=(seed, 7)) < 0.2, tf.float32)

    def dense(name, inputs):
        return tf.matmul(inputs, params[f"{name}_w"]) + params[f"{name}_b"]

    def lstm(name, inputs, h, cell):
        i, f, g, o = tf.split(dense(name, tf.concat([inputs, h], -1)), 4, axis=-1)
        cell = tf.sigmoid(f + 1.0) * cell + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(cell), cell

    def window(name, h_dec, n):
        g_x, g_y, log_sigma2, log_delta, log_gamma = tf.split(dense(name, h_dec), 5, axis=-1)  # eq. 21
        g_x = (width + 1) / 2 * (g_x + 1)  # eq. 22
        g_y = (height + 1) / 2 * (g_y + 1)  # eq. 23
        delta = (max(height, width) - 1) / (n - 1) * tf.exp(log_delta)  # eq. 24
        f_x, f_y = filterbank(tf, g_x, g_y, delta, tf.exp(log_sigma2), n, height, width)
        return f_x, f_y, tf.exp(log_gamma)

    def write(h_dec):  # eq. 28
        w = tf.reshape(dense("write_patch", h_dec), (batch_size, write_n, write_n, channels))
        return write_patch(tf, w, *window("write_window", h_dec, write_n))

    def loss_fn(epsilon):
        canvas = tf.zeros_like(x)
        h_enc, cell_enc = tf.zeros((batch_size, e)), tf.zeros((batch_size, e))
        h_dec, cell_dec = tf.zeros((batch_size, d)), tf.zeros((batch_size, d))
        kl = 0.0
        for step in range(t):  # unrolled in the graph, as the TF-1 implementations did
            x_hat = x - tf.sigmoid(canvas)  # eq. 3
            f_x, f_y, gamma = window("read_window", h_dec, read_n)
            r = tf.concat([tf.reshape(read_patch(tf, image, f_x, f_y, gamma), (batch_size, -1))
                           for image in (x, x_hat)], -1)  # eq. 4
            h_enc, cell_enc = lstm("encoder", tf.concat([r, h_dec], -1), h_enc, cell_enc)  # eq. 5
            mu, log_sigma = tf.split(dense("latent", h_enc), 2, axis=-1)
            latent = mu + tf.exp(log_sigma) * epsilon[step]  # eq. 6
            h_dec, cell_dec = lstm("decoder", latent, h_dec, cell_dec)  # eq. 7
            canvas = canvas + write(h_dec)  # eq. 8
            kl += kl_divergence(tf, mu, log_sigma)  # eqs. 10-11
        distortion = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=canvas), [1, 2, 3])
        return tf.reduce_mean(distortion + kl)  # eqs. 9-12, nats per image

    @tf.function
    def train_step(step_seed):
        epsilon = normal((t, batch_size, z), seed=tf.stack([step_seed, 1]))
        with tf.GradientTape() as tape:
            loss = loss_fn(epsilon)
        gradients, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), clip_norm)
        iterations.assign_add(1.0)
        correction = tf.sqrt(1 - 0.999**iterations) / (1 - 0.9**iterations)
        for variable, gradient, (m, v) in zip(variables, gradients, slots):  # Adam
            m.assign(0.9 * m + 0.1 * gradient)
            v.assign(0.999 * v + 0.001 * tf.square(gradient))
            variable.assign_sub(learning_rate * correction * m / (tf.sqrt(v) + 1e-7))
        return loss

    count = [0]

    def run():
        count[0] += 1
        return float(train_step(tf.constant(count[0], tf.int32)))

    assert pixels > 0 and math.isfinite(run())
    return run


def filterbank(tf, g_x, g_y, delta, sigma2, n, height, width):
    """F_X (batch, N, A) and F_Y (batch, N, B) of windows (batch, 1) each (eqs. 19-20, 25-26)."""
    offsets = tf.range(1, n + 1, dtype=tf.float32) - n / 2 - 0.5
    sigma2 = sigma2[:, :, None]

    def bank(g, size):
        mu = (g + offsets * delta)[:, :, None]  # eqs. 19-20, (batch, N, 1)
        f = tf.exp(-tf.square(tf.range(1, size + 1, dtype=tf.float32)[None, None, :] - mu) / (2 * sigma2))
        return f / (tf.reduce_sum(f, axis=-1, keepdims=True) + 1e-8)

    return bank(g_x, width), bank(g_y, height)


def read_patch(tf, image, f_x, f_y, gamma):
    """γ F_Y x F_Xᵀ per channel (eq. 27): (batch, B, A, C) → (batch, N, N, C); gamma (batch, 1)."""
    return tf.einsum("bny,byxc,bmx->bnmc", f_y, image, f_x) * gamma[:, :, None, None]


def write_patch(tf, w, f_x, f_y, gamma):
    """(1/γ) F_Yᵀ w F_X per channel (eq. 29): (batch, N, N, C) → (batch, B, A, C); gamma (batch, 1)."""
    return tf.einsum("bny,bnmc,bmx->byxc", f_y, w, f_x) / gamma[:, :, None, None]


def kl_divergence(tf, mu, log_sigma):
    """KL(N(μ, σ²) ‖ N(0, I)) summed over the units of one step (eq. 11 without the sum over t)."""
    return 0.5 * tf.reduce_sum(tf.square(mu) + tf.exp(2 * log_sigma) - 2 * log_sigma - 1, -1)
