"""Memory per item of the sizes a user gives, measured against the estimates that bound them.

    python benchmarks/memory.py                        # the mnist preset: T = 64, 28x28x1
    python benchmarks/memory.py --preset tiny

train.py refuses a `--batch-size`, and visualize a `--num-images`, whose items would take more than
half the machine's memory (keras_draw/layers/validation.py `check_fits_in_memory`), from an
estimate of the bytes per item: `keras_draw.training.training_bytes` (one image of a training
batch on a CPU) and `keras_draw.visualize.drawing_bytes` (one image of the animations). Each is
measured here as the slope of the peak resident set (resource.getrusage ru_maxrss) between two
sizes, one fresh process per size: two training steps of `fit` at `--batches`, and
`write_pictures` without reconstructions at `--images`. Prints, per kind, both peaks, the measured
MiB per item and the estimate's.
"""

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MEASURE = """
import resource, sys, tempfile
sys.path.insert(0, {root!r})
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
else:
    from keras_draw.visualize import write_pictures
    write_pictures(model, tempfile.mkdtemp(), num_images=size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_mib(kind, preset, size):
    """The peak resident set of one fresh process doing `kind` at `size`, in MiB."""
    code = MEASURE.format(root=ROOT)
    result = subprocess.run([sys.executable, "-c", code, kind, preset, str(size)], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist")
    parser.add_argument("--batches", type=int, nargs=2, default=(50, 450), help="two batch sizes of fit")
    parser.add_argument("--images", type=int, nargs=2, default=(16, 144), help="two image counts of write_pictures")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from keras_draw import console

    console.start_tensorflow()
    from keras_draw import Draw
    from keras_draw.training import training_bytes
    from keras_draw.visualize import drawing_bytes

    model = Draw.from_preset(args.preset)
    for kind, sizes, estimate in (("fit", args.batches, training_bytes(model)),
                                  ("write_pictures", args.images, drawing_bytes(model))):
        low, high = (peak_mib(kind, args.preset, size) for size in sizes)
        slope = (high - low) / (sizes[1] - sizes[0])
        print(f"{kind} ({args.preset}): peak {low:.0f} MiB at {sizes[0]}, {high:.0f} MiB at {sizes[1]}: "
              f"{slope:.2f} MiB per item measured, {estimate / 2**20:.2f} MiB estimated")


if __name__ == "__main__":
    main()
