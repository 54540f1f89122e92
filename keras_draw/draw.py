"""DRAW: a recurrent variational auto-encoder that draws through attention (Gregor et al. 2015).

For t = 1..T, with c_0, h^enc_0 and h^dec_0 learned:
    x̂_t = x − σ(c_{t−1})                              (eq. 3)
    r_t = read(x, x̂_t, h^dec_{t−1})                    (eq. 4)
    h^enc_t = RNN^enc(h^enc_{t−1}, [r_t, h^dec_{t−1}])  (eq. 5)
    z_t ~ Q(Z_t | h^enc_t)                             (eq. 6)
    h^dec_t = RNN^dec(h^dec_{t−1}, z_t)                (eq. 7)
    c_t = c_{t−1} + write(h^dec_t)                     (eq. 8)
The loss is the negative ELBO L^x + L^z in nats per image (eqs. 9-12); generation runs the decoder
alone from z̃_t ~ N(0, I) and returns the mean image σ(c̃_T) (eqs. 13-16).

The T steps run as one symbolic loop (`keras_draw.loop.scan`), so tracing does not grow with T;
on a CPU, `compile` unrolls training's and evaluation's loop instead, two steps per XLA call.
All the noise ε of a pass, shape (batch, T, latent_dim), is drawn up front, fresh for every step
and image (docs/paper.md pitfall 4), and the passes are deterministic functions of it.
"""

import keras
from keras import ops

from keras_draw import inputs, loop, losses, presets
from keras_draw.layers import AttentiveRead, AttentiveWrite, GaussianLatent, Read, Write
from keras_draw.layers.validation import (check_clip_norm, check_grid_size, check_positive,
                                          check_weights_fit_in_memory)
from keras_draw.training_step import TrainingStep


# `Draw.initialize_canvas` keeps the canvas's starting probabilities in [bound, 1 − bound].
CANVAS_MEAN_BOUND = 1e-3


@keras.saving.register_keras_serializable(package="keras_draw")
class Draw(TrainingStep, keras.Model):
    """The DRAW network, trained with `fit` on batches of images in [0, 1] (no labels).

    Args:
        image_height, image_width, channels: B, A and the number of colour channels.
        num_steps: T, the number of glimpses.
        encoder_units, decoder_units: sizes of the encoder and decoder LSTMs.
        latent_dim: |z|, the size of each step's latent.
        read_n, write_n: N of the read and write grids (ignored without attention).
        attention: attentive read and write (eqs. 19-29), or the whole image (eqs. 17-18).
        clip_norm: clip the gradients to this global norm in `train_step`; None or 0 disables.
        seed: seed of the initial weights, and of the noise of training and of `generate`
            without a seed: the same seed builds the same model. None: drawn afresh.
    """

    def __init__(
        self,
        image_height=28,
        image_width=28,
        channels=1,
        num_steps=64,
        encoder_units=256,
        decoder_units=256,
        latent_dim=100,
        read_n=2,
        write_n=5,
        attention=True,
        clip_norm=10.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(image_height=image_height, image_width=image_width, channels=channels, num_steps=num_steps,
                       encoder_units=encoder_units, decoder_units=decoder_units, latent_dim=latent_dim)
        check_clip_norm(clip_norm)
        if attention:
            check_grid_size("read_n", read_n, image_height, image_width)
            check_grid_size("write_n", write_n, image_height, image_width)
        sizes = dict(image_height=image_height, image_width=image_width, channels=channels,
                     encoder_units=encoder_units, decoder_units=decoder_units, latent_dim=latent_dim)
        check_weights_fit_in_memory(weight_count(**sizes, read_n=read_n, write_n=write_n, attention=attention), sizes)
        # === Layers ===
        # Under a mixed dtype policy the LSTMs compute in its compute dtype (bfloat16 or float16);
        # reading, writing, the latent's sampling, the canvas and the loss stay in float32. Under
        # mixed_float16, `compile` wraps the optimizer in a `keras.optimizers.LossScaleOptimizer`
        # (`TrainingStep.train_step` scales the loss with it).
        shape = (image_height, image_width, channels)
        with inputs.seeded_initializers(seed):  # the same seed, the same initial weights
            if attention:
                self.reader = AttentiveRead(*shape, read_n, name="read", dtype="float32")
                self.writer = AttentiveWrite(*shape, write_n, name="write", dtype="float32")
            else:
                self.reader = Read(name="read", dtype="float32")
                self.writer = Write(*shape, name="write", dtype="float32")
            self.encoder = keras.layers.LSTMCell(encoder_units, name="encoder", dtype=self.dtype_policy)
            self.latent = GaussianLatent(latent_dim, name="latent", dtype="float32")
            self.decoder = keras.layers.LSTMCell(decoder_units, name="decoder", dtype=self.dtype_policy)
        self.seed_generator = keras.random.SeedGenerator(seed)
        # === Config ===
        self.image_height = image_height
        self.image_width = image_width
        self.channels = channels
        self.num_steps = num_steps
        self.encoder_units = encoder_units
        self.decoder_units = decoder_units
        self.latent_dim = latent_dim
        self.read_n = read_n
        self.write_n = write_n
        self.attention = bool(attention)
        self.clip_norm = clip_norm
        self.seed = seed
        # === Metrics ===
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        self.build((None, *shape))

    @classmethod
    def from_preset(cls, name, weights=None, **overrides):
        """A DRAW with a named configuration (see `keras_draw.presets`), any argument overridden.

        `weights` loads trained weights: the name of a dataset they were trained on, for the
        weights shipped with the package (`Draw.from_preset("mnist", weights="binarized_mnist")`),
        or the path of a `.weights.h5` file.
        """
        return presets.build(cls, name, weights=weights, **overrides)

    @property
    def image_shape(self):
        return (self.image_height, self.image_width, self.channels)

    # === Building ===

    def build(self, input_shape=None):
        if self.built:  # `__init__` built it: its shapes are its arguments
            return
        if self.attention:
            read_dim = 2 * self.read_n * self.read_n * self.channels
        else:
            read_dim = 2 * self.image_height * self.image_width * self.channels
        x_shape = (None, *self.image_shape)
        self.reader.build(x_shape, x_shape, (None, self.decoder_units))
        self.encoder.build((None, read_dim + self.decoder_units))
        self.latent.build((None, self.encoder_units))
        self.decoder.build((None, self.latent_dim))
        self.writer.build((None, self.decoder_units))
        # c_0, h^enc_0 and h^dec_0 are learned biases, not zeros (docs/paper.md pitfall 6); the LSTM cell
        # states start from learned biases too.
        self.c_0 = self.add_weight(shape=self.image_shape, initializer="zeros", name="c_0")
        self.h_enc_0 = self.add_weight(shape=(self.encoder_units,), initializer="zeros", name="h_enc_0")
        self.cell_enc_0 = self.add_weight(shape=(self.encoder_units,), initializer="zeros", name="cell_enc_0")
        self.h_dec_0 = self.add_weight(shape=(self.decoder_units,), initializer="zeros", name="h_dec_0")
        self.cell_dec_0 = self.add_weight(shape=(self.decoder_units,), initializer="zeros", name="cell_dec_0")

    def initialize_canvas(self, mean_image):
        """Starts the canvas at the data's mean: c_0 = logit(mean_image), so σ(c_0) = mean_image.

        An initialisation, not a change to the model (c_0 stays a learned bias, eq. 3). From
        c_0 = 0 a small network spends its first hundreds of steps learning the mean image through
        the write patches, and may settle meanwhile on ignoring z. `keras_draw.train` calls it
        with the training split's mean before a fresh run. The mean is clipped to
        [1e-3, 1 − 1e-3], which keeps c_0 finite where a pixel is always 0 or always 1.

        Args:
            mean_image: (B, A, C), the mean of the training images, in [0, 1] (else ValueError).
        """
        p = inputs.check_mean_image(self.image_shape, mean_image)
        p = ops.clip(p, CANVAS_MEAN_BOUND, 1.0 - CANVAS_MEAN_BOUND)
        self.c_0.assign(ops.log(p) - ops.log1p(-p))  # σ(c_0) = p

    def initialize_windows(self):
        """Starts the read and write windows covering the whole image at low resolution
        (`AttentionWindow.cover_image`); without attention, nothing to do.

        An initialisation, as `initialize_canvas` is, which the paper does not specify. From a
        zero bias, the two-digit 60×60 network settled on ignoring z within 100 steps and stayed
        there (docs/paper.md); `keras_draw.train` calls this before a fresh run with
        `cover_windows` (the `two_digit_mnist` recipe's).
        """
        if self.attention:
            self.reader.window.cover_image()
            self.writer.window.cover_image()

    def _initial(self, weight, batch_size):
        # float32 under any policy: in `call` under a mixed policy, Keras reads the variable in
        # the compute dtype.
        return ops.broadcast_to(ops.cast(weight, "float32"), (batch_size, *weight.shape))

    # === The steps of the algorithm ===

    def sample_noise(self, batch_size, seed=None):
        """ε ~ N(0, I) for every step and image, (batch, T, latent_dim); an int seed repeats it."""
        shape = (batch_size, self.num_steps, self.latent_dim)
        return keras.random.normal(shape, seed=self.seed_generator if seed is None else seed)

    def _decode_step(self, c_prev, h_dec_prev, cell_dec_prev, z):
        h_dec, (_, cell_dec) = self.decoder(z, [h_dec_prev, cell_dec_prev])  # eq. 7 (or 14)
        h_dec, cell_dec = ops.cast(h_dec, "float32"), ops.cast(cell_dec, "float32")  # the loop's state
        if self.attention:
            update, write_window = self.writer(h_dec)  # eqs. 28-29
        else:
            update, write_window = self.writer(h_dec), None  # eq. 18
        c = c_prev + update  # eq. 8 (or 15)
        return c, h_dec, cell_dec, write_window

    def infer(self, x, epsilon, return_sequence=False, compiled=False):
        """The inference pass (eqs. 3-8) for images x and noise ε of shape (batch, T, |z|).

        Returns a dict: `canvas` c_T (logits, (batch, B, A, C)), `mu`, `log_sigma` and `z` of
        every step ((batch, T, |z|)); with `return_sequence`, also `canvases` σ(c_t) of every
        step ((batch, T, B, A, C)) and, with attention, `read_window` and `write_window`
        ((batch, T, 5), ordered as `keras_draw.layers.attention_window.WINDOW_PARAMETERS`).
        `compiled` runs the steps as `fit` and `evaluate` do (`loop_settings`: on a CPU, XLA
        on the step body and the steps unrolled), for passes over many images.
        """
        epsilon = inputs.check_noise(epsilon, self.num_steps, self.latent_dim)
        inputs.check_same_batch(x, epsilon)
        names = ["mu", "log_sigma", "z"]
        if return_sequence:
            names += ["canvases", "read_window", "write_window"] if self.attention else ["canvases"]
        jit_step, unroll = self.loop_settings() if compiled else (False, False)
        return self._infer(x, epsilon, names, jit_step=jit_step, unroll=unroll)

    def _infer(self, x, epsilon, names, jit_step=False, unroll=False):
        """`infer` emitting only the per-step outputs `names`; XLA on the step body if
        `jit_step`, the T steps unrolled if `unroll` (see `compile`)."""
        batch_size = ops.shape(x)[0]
        state = (
            self._initial(self.c_0, batch_size),
            self._initial(self.h_enc_0, batch_size),
            self._initial(self.cell_enc_0, batch_size),
            self._initial(self.h_dec_0, batch_size),
            self._initial(self.cell_dec_0, batch_size),
        )

        def step(state, epsilon_t):
            c_prev, h_enc_prev, cell_enc_prev, h_dec_prev, cell_dec_prev = state
            x_hat = x - ops.sigmoid(c_prev)  # eq. 3
            if self.attention:
                r, read_window = self.reader(x, x_hat, h_dec_prev)  # eq. 4 via eq. 27
            else:
                r, read_window = self.reader(x, x_hat, h_dec_prev), None  # eq. 4 via eq. 17
            encoder_input = ops.concatenate([r, h_dec_prev], axis=-1)
            h_enc, (_, cell_enc) = self.encoder(encoder_input, [h_enc_prev, cell_enc_prev])  # eq. 5
            h_enc, cell_enc = ops.cast(h_enc, "float32"), ops.cast(cell_enc, "float32")
            z, mu, log_sigma = self.latent(h_enc, epsilon_t)  # eq. 6
            c, h_dec, cell_dec, write_window = self._decode_step(c_prev, h_dec_prev, cell_dec_prev, z)  # eqs. 7-8
            outputs = {"mu": mu, "log_sigma": log_sigma, "z": z,
                       "read_window": read_window, "write_window": write_window}
            if "canvases" in names:
                outputs["canvases"] = ops.sigmoid(c)
            return (c, h_enc, cell_enc, h_dec, cell_dec), {k: outputs[k] for k in names}

        epsilon = ops.moveaxis(epsilon, 1, 0)  # (T, batch, |z|)
        final, outputs = loop.scan(step, state, epsilon, names, jit_compile=jit_step, unroll=unroll)
        outputs = {k: ops.moveaxis(v, 0, 1) for k, v in outputs.items()}  # to (batch, T, ...)
        outputs["canvas"] = final[0]
        return outputs

    def decode(self, epsilon, return_sequence=False):
        """Generation (eqs. 13-16) from noise ε of shape (batch, T, |z|), z̃_t = ε_t ~ N(0, I).

        Returns a dict: `images`, the mean σ(c̃_T) of D(X | c̃_T) (eq. 16: the mean, not a
        sample), shape (batch, B, A, C) in [0, 1]; with `return_sequence`, also `canvases` σ(c̃_t)
        of every step and, with attention, `write_window`.
        """
        epsilon = inputs.check_noise(epsilon, self.num_steps, self.latent_dim)
        batch_size = ops.shape(epsilon)[0]
        state = (
            self._initial(self.c_0, batch_size),
            self._initial(self.h_dec_0, batch_size),
            self._initial(self.cell_dec_0, batch_size),
        )

        def step(state, z):  # z̃_t ~ P(Z_t), eq. 13
            c, h_dec, cell_dec, write_window = self._decode_step(*state, z)  # eqs. 14-15
            outputs = {}
            if return_sequence:
                outputs["canvases"] = ops.sigmoid(c)
                if self.attention:
                    outputs["write_window"] = write_window
            return (c, h_dec, cell_dec), outputs

        names = []
        if return_sequence:
            names = ["canvases", "write_window"] if self.attention else ["canvases"]
        final, outputs = loop.scan(step, state, ops.moveaxis(epsilon, 1, 0), names)
        outputs = {k: ops.moveaxis(v, 0, 1) for k, v in outputs.items()}
        outputs["images"] = ops.sigmoid(final[0])  # eq. 16
        return outputs

    def negative_elbo(self, x, epsilon=None, compiled=False):
        """Per-image `loss` = `reconstruction_loss` (L^x, eq. 9) + `kl_loss` (L^z, eqs. 10-11).

        One z sample per step per image (eq. 12); ε is drawn afresh unless given. `compiled`:
        as in `infer`.
        """
        x = inputs.check_images(self.image_shape, x)
        if epsilon is None:
            epsilon = self.sample_noise(ops.shape(x)[0])
        epsilon = inputs.check_noise(epsilon, self.num_steps, self.latent_dim)
        inputs.check_same_batch(x, epsilon)
        jit_step, unroll = self.loop_settings() if compiled else (False, False)
        return self._negative_elbo(x, epsilon, jit_step=jit_step, unroll=unroll)

    def _negative_elbo(self, x, epsilon, jit_step=False, unroll=False):
        """`negative_elbo`, with `_infer`'s `jit_step` and `unroll` (see `TrainingStep.compile`)."""
        outputs = self._infer(x, epsilon, ["mu", "log_sigma"], jit_step=jit_step, unroll=unroll)
        return losses.negative_elbo(x, outputs["canvas"], outputs["mu"], outputs["log_sigma"])  # eqs. 9-12

    # === Public conveniences ===

    def call(self, x, training=False):
        """The mean reconstruction σ(c_T) of a batch of images in [0, 1], with fresh noise (what
        `predict` returns). `fit` and `evaluate` do not call it: its checks cost them nothing."""
        return self.reconstruct(x)

    def generate(self, num_images, seed=None):
        """`num_images` generated images, (num_images, B, A, C) in [0, 1] (eqs. 13-16)."""
        num_images = inputs.check_num_images(self, num_images)
        return self.decode(self.sample_noise(num_images, seed))["images"]

    def generate_sequence(self, num_images, seed=None):
        """Generation with every step's canvas and write window (see `decode`)."""
        num_images = inputs.check_num_images(self, num_images, return_sequence=True)
        return self.decode(self.sample_noise(num_images, seed), return_sequence=True)

    def reconstruct(self, x, seed=None):
        """Mean reconstructions σ(c_T) of images x (batch, B, A, C)."""
        x = inputs.check_images(self.image_shape, x)
        return ops.sigmoid(self.infer(x, self.sample_noise(ops.shape(x)[0], seed))["canvas"])

    def reconstruct_sequence(self, x, seed=None):
        """The inference pass with every step's canvas and windows (see `infer`)."""
        x = inputs.check_images(self.image_shape, x)
        return self.infer(x, self.sample_noise(ops.shape(x)[0], seed), return_sequence=True)

    # === Training (the step itself: `TrainingStep`) ===

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in _CONFIG})
        return config


def weight_count(image_height, image_width, channels, encoder_units, decoder_units, latent_dim, read_n, write_n,
                 attention):
    """The number of weights of a `Draw` of these sizes, as `build` makes them (checked before it
    does: an image of 10^6 x 10^6 pixels would otherwise allocate c_0's 4 TB)."""
    pixels = image_height * image_width * channels
    e, d, z = encoder_units, decoder_units, latent_dim
    read_dim = 2 * read_n * read_n * channels if attention else 2 * pixels  # eq. 27 (or 17)
    windows = 2 * 5 * (d + 1) if attention else 0  # eq. 21's W for the read and the write
    write = (d + 1) * write_n * write_n * channels if attention else (d + 1) * pixels  # eq. 28 (or 18)
    encoder = 4 * e * (read_dim + d + e + 1)  # eq. 5: kernel, recurrent kernel and bias of the four gates
    decoder = 4 * d * (z + d + 1)  # eq. 7
    latent = 2 * z * (e + 1)  # eqs. 1-2
    initial = pixels + 2 * e + 2 * d  # c_0, h^enc_0, cell^enc_0, h^dec_0, cell^dec_0
    return windows + write + encoder + decoder + latent + initial


# The arguments of `Draw.__init__`, each stored under its own name.
_CONFIG = ("image_height", "image_width", "channels", "num_steps", "encoder_units", "decoder_units",
           "latent_dim", "read_n", "write_n", "attention", "clip_norm", "seed")
