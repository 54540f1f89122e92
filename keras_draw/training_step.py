"""How `fit` and `evaluate` run a DRAW: the training step's policy, apart from the model's equations.

`TrainingStep` is mixed into `keras_draw.Draw`. It decides how XLA compiles training and whether
the T steps are unrolled (`compile`), draws each replica's share of the noise, sums the replicas'
gradients before clipping them as one device would, and reports the loss terms as metrics.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_draw import inputs


class TrainingStep:
    """`train_step`, `test_step` and `compile` for a model with `_negative_elbo(x, epsilon,
    jit_step, unroll)`, `sample_noise(batch_size)`, `image_shape`, `clip_norm` and `metrics`.

    Attributes, set by `compile`:
        jit_compile_option, unroll_option: what `compile` was given ("auto", True, False).
        loop_jit_compile: whether the loop's step body alone is compiled with XLA.
        loop_unroll: whether `fit` and `evaluate` unroll the T steps.
    """

    jit_compile_option = "auto"
    unroll_option = "auto"
    loop_jit_compile = False
    loop_unroll = False

    def compile(self, optimizer="adam", jit_compile="auto", unroll="auto", **kwargs):
        """`keras.Model.compile`, where `jit_compile` chooses how XLA compiles training:

        "auto" (default): the whole train step on a GPU; on a CPU the loop's step body alone,
        which fuses its many small ops (on a CPU, faster than no XLA and than whole-step XLA; see
        docs/speed.md). True: the whole step. False: no XLA, and the fastest start.

        `unroll` chooses between the T steps of `fit` and `evaluate` unrolled (True) and a
        `tf.while_loop` (False). "auto" (default) unrolls them where the step body alone is
        compiled: each compiled call then runs two steps (`keras_draw.loop`) and skips the while
        loop's gradient accumulators, faster than the while loop for a few seconds more before
        the first step (docs/speed.md).
        Without step-body XLA, unrolled tracing grows with T (minutes at T = 64).
        """
        if unroll not in (True, False, "auto"):
            raise ValueError(f"`unroll` must be True, False or 'auto'. Received: unroll={unroll!r}")
        self.jit_compile_option = jit_compile
        self.unroll_option = unroll
        whole_step, self.loop_jit_compile, self.loop_unroll = _resolve(jit_compile, unroll)
        super().compile(optimizer=optimizer, jit_compile=whole_step, **kwargs)

    def fit(self, x=None, *args, validation_data=None, **kwargs):
        """`keras.Model.fit`, its images checked outside the step where XLA compiles it whole."""
        validation_data = self._checked_outside_xla(validation_data)
        return super().fit(self._checked_outside_xla(x), *args, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate`, its images checked outside the step where XLA compiles it whole."""
        return super().evaluate(self._checked_outside_xla(x), *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`, its images checked outside the step where XLA compiles it whole."""
        return super().predict(self._checked_outside_xla(x), *args, **kwargs)

    def _checked_outside_xla(self, data):
        """`data`, with its images in [0, 1] checked outside the compiled step where XLA compiles
        the whole step (the default on a GPU), which drops the step's own assertion: an array at
        once, a tf.data pipeline as it yields (a map, which costs the step nothing). Other inputs
        (generators, `PyDataset`s) pass unchecked; without whole-step XLA, the step checks them.
        An array's shape is checked in every case: Keras fails on an empty one with an
        UnboundLocalError of its own."""
        images = data[0] if isinstance(data, (tuple, list)) else data
        is_array = hasattr(images, "shape") and hasattr(images, "dtype") and not isinstance(images, tf.data.Dataset)
        if is_array:
            inputs.check_shape(self.image_shape, images)
        if not self.jit_compile or data is None:
            return data
        if isinstance(data, tf.data.Dataset):
            def check(*batch):
                x = inputs.check_images(self.image_shape, batch[0])
                return x if len(batch) == 1 else (x, *batch[1:])
            return data.map(check)
        if is_array:  # an array or a tensor
            inputs.check_images(self.image_shape, images)
        return data

    def loop_settings(self):
        """(step-body XLA, unrolled) of `fit` and `evaluate`: as `compile` chose them, or, before
        any `compile`, as its defaults would on this machine."""
        if self.compiled:
            return self.loop_jit_compile, self.loop_unroll
        return _resolve("auto", "auto")[1:]

    def get_compile_config(self):
        """Keras's compile config, with this `compile`'s own arguments, so that a reloaded
        model compiles as this one did; {} for a model never compiled, which loads uncompiled."""
        config = super().get_compile_config()
        if config:
            config.update(jit_compile=self.jit_compile_option, unroll=self.unroll_option)
        return config

    def compile_from_config(self, config):
        """Compiles a loaded model as it was saved (Keras skips models with a custom compile)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def training_noise(self, batch_size):
        """`sample_noise` for a batch; under R replicas, this replica's rows of the noise of
        the global batch, so that R devices draw exactly what one device would."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        context = tf.distribute.get_replica_context()
        if replicas == 1 or context is None:
            return self.sample_noise(batch_size)
        epsilon = self.sample_noise(batch_size * replicas)  # the same on every replica
        start = context.replica_id_in_sync_group * batch_size
        return epsilon[start : start + batch_size]

    def train_step(self, data):
        x = inputs.check_images(self.image_shape, data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # The loss scale s: under mixed_float16, `compile` made the optimizer a LossScaleOptimizer,
        # whose `scale_loss` multiplies by s, so that float16 gradients do not underflow; else 1.
        scale = self.optimizer.scale_loss(1.0)
        with tf.GradientTape() as tape:
            terms = self._step_terms(x)
            loss = ops.mean(terms["loss"]) / replicas  # the replicas' gradients are summed
            scaled_loss = self.optimizer.scale_loss(loss)  # s · loss
        gradients = [g / scale for g in tape.gradient(scaled_loss, self.trainable_weights)]  # unscaled
        if replicas > 1:  # clip the global gradient, as one device would: sum the replicas' first
            gradients = tf.distribute.get_replica_context().all_reduce("sum", gradients)
        if self.clip_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, self.clip_norm)
        if replicas > 1:  # the optimizer sums the replicas' gradients again: R copies of g / R
            gradients = [g / replicas for g in gradients]
        # Scaled again for the optimizer, which divides by s (exactly: s is a power of 2), skips
        # the step and halves s when a gradient is not finite, and doubles s after a run of good steps.
        self.optimizer.apply([g * scale for g in gradients], self.trainable_weights)
        return self._update_metrics(terms)

    def test_step(self, data):
        return self._update_metrics(self._step_terms(inputs.check_images(self.image_shape, data)))

    def _step_terms(self, x):
        epsilon = self.training_noise(ops.shape(x)[0])
        return self._negative_elbo(x, epsilon, jit_step=self.loop_jit_compile, unroll=self.loop_unroll)

    def _update_metrics(self, terms):
        """Each loss term into its tracker (`metrics`, in the order loss, reconstruction, KL)."""
        for tracker in self.metrics:
            tracker.update_state(terms[tracker.name])
        logs = {m.name: m.result() for m in self.metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces multi-worker logs by a mean over axis 0, which a scalar lacks.
            logs = {name: value[None] for name, value in logs.items()}
        return logs


def _resolve(jit_compile, unroll):
    """`compile`'s (whole-step XLA, step-body XLA, unrolled) for its two options, on this machine."""
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    loop_jit_compile = jit_compile == "auto" and not on_gpu
    loop_unroll = loop_jit_compile if unroll == "auto" else bool(unroll)
    whole_step = on_gpu if jit_compile == "auto" else bool(jit_compile)
    return whole_step, loop_jit_compile, loop_unroll
