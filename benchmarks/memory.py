"""Memory per item of the sizes a user gives, measured against the estimates that bound them.

    python benchmarks/memory.py                        # the mnist preset: T = 64, 28x28x1
    python benchmarks/memory.py --preset tiny

train.py refuses a `--batch-size`, visualize a `--num-images`, and evaluate an
`--importance-batch-size`, whose items would take more than half the machine's memory
(keras_draw/layers/validation.py `check_fits_in_memory`), from an estimate of the bytes per item:
`keras_draw.training.training_bytes` (one image of a training batch on a CPU),
`keras_draw.visualize.drawing_bytes` (one image of the animations) and
`keras_draw.evaluate.pass_bytes` (one (image, sample) pair of an importance-weighted pass). Each is
measured here as the slope of the peak resident set (resource.getrusage ru_maxrss) between two
sizes, one fresh process per size: two training steps of `fit` at `--batches`, `write_pictures`
without reconstructions at `--images`, and `evaluate` of 10 images with one pass of `--pairs`
(image, sample) pairs. Prints, per kind, both peaks, the measured MiB per item and the estimate's.
"""

import argparse
import subprocess
import sys

MEASURE = """
import resource, sys, tempfile
from keras_draw import console
console.start_tensorflow()
import numpy as np
from keras_draw import Draw
kind, preset, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = Draw.from_preset(preset, seed=0)
if kind == "fit":
    model.compile(optimizer="adam")
    x = (np.random.default_rng(0).random((2 * size, *model.image_shape)) > 0.5).astype(np.float32)
    model.fit(x, batch_size=size, epochs=1, verbose=0)
elif kind == "evaluate":  # one importance-weighted pass of `size` (image, sample) pairs
    from keras_draw.evaluate import evaluate
    x = (np.random.default_rng(0).random((10, *model.image_shape)) > 0.5).astype(np.float32)
    evaluate(model, x, importance_samples=size // 10, batch_size=10, importance_batch_size=size, verbose=0)
else:
    from keras_draw.visualize import write_pictures
    write_pictures(model, tempfile.mkdtemp(), num_images=size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_mib(kind, preset, size):
    """The peak resident set of one fresh process doing `kind` at `size`, in MiB."""
    result = subprocess.run([sys.executable, "-c", MEASURE, kind, preset, str(size)], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist")
    parser.add_argument("--batches", type=int, nargs=2, default=(50, 450), help="two batch sizes of fit")
    parser.add_argument("--images", type=int, nargs=2, default=(16, 144), help="two image counts of write_pictures")
    parser.add_argument("--pairs", type=int, nargs=2, default=(2000, 6000),
                        help="two (image, sample) pair counts of one importance-weighted pass of evaluate")
    parser.add_argument("--kinds", nargs="+", default=("fit", "write_pictures", "evaluate"),
                        choices=("fit", "write_pictures", "evaluate"), help="what to measure (default: all)")
    args = parser.parse_args(argv)
    from keras_draw import console

    console.start_tensorflow()
    from keras_draw import Draw
    from keras_draw.training import training_bytes
    from keras_draw.evaluate import pass_bytes
    from keras_draw.visualize import drawing_bytes

    model = Draw.from_preset(args.preset)
    for kind, sizes, estimate in (("fit", args.batches, training_bytes(model)),
                                  ("write_pictures", args.images, drawing_bytes(model)),
                                  ("evaluate", args.pairs, pass_bytes(model))):
        if kind not in args.kinds:
            continue
        low, high = (peak_mib(kind, args.preset, size) for size in sizes)
        slope = (high - low) / (sizes[1] - sizes[0])
        print(f"{kind} ({args.preset}): peak {low:.0f} MiB at {sizes[0]}, {high:.0f} MiB at {sizes[1]}: "
              f"{slope:.2f} MiB per item measured, {estimate / 2**20:.2f} MiB estimated")


if __name__ == "__main__":
    main()
