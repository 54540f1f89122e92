"""How the demo preset was chosen: a candidate DRAW trained for a wall-clock budget on the bundled
MNIST, then its test negative ELBO on the first 2000 test images.

    python benchmarks/demo_recipe.py --num-steps 8 --read-n 12 --write-n 8 --batch-size 200 \\
        --learning-rate 3e-3 --budget 120 [--no-canvas-init]

Prints one JSON line: the candidate, its training steps and images/s, the seconds to its first
step (TensorFlow's start, the data and the compilation), and the test figure with its KL term
(a KL near 0 means the decoder ignores z: posterior collapse). Run candidates one after the
other on an otherwise idle machine; only figures from one machine and hour compare.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-steps", type=int, default=8)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--read-n", type=int, default=12)
    parser.add_argument("--write-n", type=int, default=8)
    parser.add_argument("--no-attention", action="store_true")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--final-learning-rate", type=float, default=None,
                        help="cosine decay from --learning-rate to this over the budget (default: constant)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of training")
    parser.add_argument("--training-steps", type=int, default=None,
                        help="train this many steps instead of a time budget (train.py's demo: 1000, 4 epochs)")
    parser.add_argument("--no-canvas-init", action="store_true", help="c_0 = 0 instead of logit(mean image)")
    parser.add_argument("--unroll", choices=("auto", "on", "off"), default="auto",
                        help="Draw.compile unroll: auto (unrolled where the step body alone is compiled), on, off")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.monotonic()
    from keras_draw import console

    console.start_tensorflow()
    import keras

    from keras_draw import datasets
    from keras_draw.draw import Draw
    from keras_draw.train_options import SWITCH_CHOICES

    keras.utils.set_random_seed(args.seed)
    data = datasets.load("mnist", args.batch_size, seed=args.seed)
    test = data.test.unbatch().batch(500).take(4)  # the first 2000 test images
    model = Draw(num_steps=args.num_steps, encoder_units=args.units, decoder_units=args.units,
                 latent_dim=args.latent_dim, read_n=args.read_n, write_n=args.write_n,
                 attention=not args.no_attention, seed=args.seed)
    if not args.no_canvas_init:
        model.initialize_canvas(data.mean_image())
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), unroll=SWITCH_CHOICES[args.unroll])
    budget = budget_callback(args.budget, args.learning_rate, args.final_learning_rate, args.training_steps)
    epoch = 0
    while not budget.spent():
        model.fit(data.epoch(epoch), epochs=1, verbose=0, callbacks=[budget])
        epoch += 1
    result = model.evaluate(test, return_dict=True, verbose=0)
    print(json.dumps({
        **vars(args),
        "training_steps": budget.steps,
        "images_per_second": round(budget.steps * args.batch_size / budget.elapsed(), 1),
        "seconds_to_first_step": round(budget.first_step - start, 1),
        "test_negative_elbo_first_2000": round(float(result["loss"]), 2),
        "test_kl_first_2000": round(float(result["kl_loss"]), 2),
    }), flush=True)


def budget_callback(seconds, learning_rate, final_learning_rate=None, training_steps=None):
    """A Keras callback that stops training once `seconds` have passed since the first step (or
    after `training_steps` steps); with `final_learning_rate`, it sets the rate before each step
    on a cosine from `learning_rate` to that, over the fraction of the budget spent."""
    import math

    import keras

    class Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps, self.first_step = 0, None

        def on_train_batch_begin(self, batch, logs=None):
            if final_learning_rate is not None and self.first_step is not None:
                spent = min(self.fraction(), 1.0)
                rate = final_learning_rate + (learning_rate - final_learning_rate) * (1 + math.cos(math.pi * spent)) / 2
                self.model.optimizer.learning_rate.assign(rate)

        def on_train_batch_end(self, batch, logs=None):
            self.first_step = self.first_step or time.monotonic()
            self.steps += 1
            if self.spent():
                self.model.stop_training = True

        def elapsed(self):
            return time.monotonic() - self.first_step

        def fraction(self):
            return self.steps / training_steps if training_steps else self.elapsed() / seconds

        def spent(self):
            return self.first_step is not None and self.fraction() >= 1.0

    return Budget()


if __name__ == "__main__":
    main()
