"""Training images/s of `DrawClassifier` at a preset's sizes, with and without XLA over the whole step.

    python benchmarks/classifier_speed.py                      # cluttered_mnist preset, batch 100
    python benchmarks/classifier_speed.py --steps 60 --modes off,on

Each mode trains a fresh model (seed 0) on one fixed batch of uniform noise images, repeated: the
data pipeline is not measured. Prints, per mode, the seconds of the first 5 steps (compilation
included) and the images/s of the next `--steps` steps, by the wall clock and per CPU-second of
this process (all its threads): on a shared machine the second varies less.
"""

import argparse
import time

from keras_draw import console

MODES = {"on": True, "off": False}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cluttered_mnist")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per mode (default: %(default)s)")
    parser.add_argument("--modes", default="on,off", help="XLA over the whole step: on, off (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    console.start_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_draw import DrawClassifier

    rng = np.random.default_rng(0)
    model = DrawClassifier.from_preset(args.preset)
    x = rng.uniform(size=(args.batch_size, *model.image_shape)).astype("float32")
    y = rng.integers(0, model.num_classes, size=args.batch_size)
    batches = tf.data.Dataset.from_tensors((x, y)).repeat()
    for mode in args.modes.split(","):
        keras.utils.set_random_seed(0)
        model = DrawClassifier.from_preset(args.preset, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=MODES[mode])
        start = time.monotonic()
        model.fit(batches, steps_per_epoch=5, epochs=1, verbose=0)
        first = time.monotonic() - start
        start, cpu_start = time.monotonic(), time.process_time()
        model.fit(batches, steps_per_epoch=args.steps, epochs=1, verbose=0)
        images = args.steps * args.batch_size
        rate, cpu_rate = images / (time.monotonic() - start), images / (time.process_time() - cpu_start)
        print(f"XLA {mode:3s} ({args.preset}, batch {args.batch_size}): {rate:7.1f} training images/s, "
              f"{cpu_rate:7.1f} per CPU-second, over {args.steps} steps; first 5 steps {first:.1f} s, "
              "compilation included", flush=True)


if __name__ == "__main__":
    main()
