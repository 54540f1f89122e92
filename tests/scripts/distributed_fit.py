"""Fits a tiny DRAW under a tf.distribute strategy and prints its per-step losses and weights.

Run by tests/test_distribute.py in fresh processes, because logical devices and collective
communication must be set up before TensorFlow initialises:

    python distributed_fit.py one|mirrored|multi_worker CLIP_NORM OUT.npz

`one`: the default strategy on one CPU; `mirrored`: MirroredStrategy over two logical CPUs;
`multi_worker`: MultiWorkerMirroredStrategy over the workers in TF_CONFIG.
"""

import sys

import numpy as np
import tensorflow as tf

mode, clip_norm, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
elif mode == "multi_worker":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
else:
    strategy = tf.distribute.get_strategy()

import keras  # noqa: E402

from keras_draw import Draw  # noqa: E402

keras.utils.set_random_seed(1)
with strategy.scope():
    model = Draw.from_preset("tiny", seed=3, clip_norm=clip_norm or None)
    model.compile(jit_compile=False, optimizer=keras.optimizers.SGD(0.05))
images = (np.random.default_rng(0).random((80, 28, 28, 1)) > 0.5).astype(np.float32)
dataset = tf.data.Dataset.from_tensor_slices(images).batch(20)  # global batch 20
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
losses = []
record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: losses.append(float(logs["loss"])))
model.fit(dataset.with_options(options), epochs=2, verbose=0, callbacks=[record])
np.savez(out, losses=np.array(losses), *[np.asarray(w) for w in model.get_weights()])
