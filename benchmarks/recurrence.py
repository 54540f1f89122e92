"""DRAW's recurrence alone, as a ceiling for `train_throughput.py` (issue 5).

The two LSTMs (gates included), the latent heads with their sampling, the window heads and the
write patch, in one `tf.while_loop` over T, with gradients by `tf.GradientTape`: the matmuls of
DRAW's training step without the filterbanks, the canvas, the loss or the optimizer. Written in
plain TensorFlow ops, with no Keras layer. A DRAW training step does strictly more work, so the
ratio of the two images/s says how much of the step's time our code adds to these products.
"""

def recurrence_flops_per_image(config):
    """Matmul FLOPs of one training step of the recurrence alone, per image (×3 for backward)."""
    e, d, z, t = (config[k] for k in ("encoder_units", "decoder_units", "latent_dim", "num_steps"))
    read_dim, heads = read_dim_and_heads(config)
    step = 2 * (read_dim + d + e) * 4 * e + 2 * (z + d) * 4 * d + 2 * e * 2 * z + 2 * d * heads
    return 3 * t * step


def read_dim_and_heads(config):
    """The encoder's read input size and the decoder's head outputs (windows + write patch)."""
    c = config["channels"]
    if config.get("attention", True):
        return 2 * config["read_n"] ** 2 * c, 2 * 5 + config["write_n"] ** 2 * c
    pixels = config["image_height"] * config["image_width"] * c
    return 2 * pixels, pixels


def recurrence_train_step(tf, config, batch_size):
    """A function running one training step of the recurrence alone and returning its gradients
    as numpy arrays (traced and run once here)."""
    e, d, z, t = (config[k] for k in ("encoder_units", "decoder_units", "latent_dim", "num_steps"))
    read_dim, heads = read_dim_and_heads(config)
    normal = tf.random.stateless_normal
    kernels = [
        tf.Variable(normal((read_dim + d + e, 4 * e), seed=(0, 1), stddev=0.05)),  # encoder [r, h^dec, h^enc]
        tf.Variable(normal((z + d, 4 * d), seed=(0, 2), stddev=0.05)),  # decoder [z, h^dec]
        tf.Variable(normal((e, 2 * z), seed=(0, 3), stddev=0.05)),  # μ and log σ
        tf.Variable(normal((d, heads), seed=(0, 4), stddev=0.05)),  # windows and write patch
    ]
    r = normal((batch_size, read_dim), seed=(0, 5))
    epsilon = normal((t, batch_size, z), seed=(0, 6))

    def lstm(inputs, h, cell, kernel):
        i, f, g, o = tf.split(tf.matmul(tf.concat([inputs, h], -1), kernel), 4, axis=-1)
        cell = tf.sigmoid(f) * cell + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(cell), cell

    def body(step, h_enc, cell_enc, h_dec, cell_dec, total):
        h_enc, cell_enc = lstm(tf.concat([r, h_dec], -1), h_enc, cell_enc, kernels[0])
        mu, log_sigma = tf.split(tf.matmul(h_enc, kernels[2]), 2, axis=-1)
        latent = mu + tf.exp(log_sigma) * epsilon[step]
        h_dec, cell_dec = lstm(latent, h_dec, cell_dec, kernels[1])
        total += tf.reduce_sum(tf.matmul(h_dec, kernels[3]) ** 2) + tf.reduce_sum(mu**2)
        return step + 1, h_enc, cell_enc, h_dec, cell_dec, total

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            zeros = [tf.zeros((batch_size, n)) for n in (e, e, d, d)]
            final = tf.while_loop(lambda step, *_: step < t, body, (0, *zeros, 0.0), maximum_iterations=t)
            loss = final[-1]
        return tape.gradient(loss, kernels)

    def run():
        return [gradient.numpy() for gradient in train_step()]

    run()
    return run
