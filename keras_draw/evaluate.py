"""Evaluating DRAW: the negative ELBO and an importance-weighted estimate of −log p(x).

For an image x and latents z = z_1..T drawn from the posterior Q of one inference pass,
    log w(x, z) = log p(x, z)/q(z | x)
                = log D(x | c_T(z)) + Σ_t [log N(z_t; 0, I) − log N(z_t; μ_t, σ_t)].
μ_t and σ_t depend on z_1..t−1 through the decoder state, so every z needs its own pass.
    negative ELBO  L = −E_q[log w] = L^x + L^z                      (eqs. 9-12, the paper's Table 2)
    −log p(x) ≤ −log (1/K) Σ_k w(x, z^k),  z^k ~ Q,                  (Burda et al. 2016)
a bound that tightens as K grows and equals the ELBO in expectation for K = 1. Both are in nats
per image, averaged over a split with a standard error (std over images / √n). Bits per
dimension divide by H·W·C·ln 2. Under the paper's Bernoulli D, only binary images have a true
likelihood; for greyscale or colour intensities the figures are a cross-entropy, comparable only
with models that read pixels the same way.

`python -m keras_draw.evaluate --model RUN/model.keras --dataset binarized_mnist` runs
`evaluate` and writes its result as JSON (default RUN/evaluation_<dataset>_<split>.json).
"""

import argparse
import math
import numbers
import os
import sys

from keras_draw import console

if __name__ == "__main__":  # a command: one line on Ctrl-C; TensorFlow starts without its C++ start-up lines
    console.catch_stops("evaluate")
    console.start_tensorflow()

import keras
import numpy as np
import tensorflow as tf

from keras_draw import datasets, losses
from keras_draw.files import WriteError, write_json
from keras_draw.layers.validation import check_fits_in_memory
from keras_draw.model_file import check_model_file, load_model
from keras_draw.run_files import RunFiles

PROGRAM = "evaluate"
SPLITS = ("train", "validation", "test")

BINARY_NOTE = "Bernoulli likelihood of binary images: a bound on the true -log p(x)."
NON_BINARY_NOTE = (
    "The images are not binary: under the paper's Bernoulli D these figures are a cross-entropy, "
    "not a true likelihood, and compare only with models that read intensities the same way."
)


def log_importance_weights(model, x, epsilon):
    """log w = log p(x, z) − log q(z | x) of one inference pass with noise ε; shape (batch,)."""
    outputs = model.infer(x, epsilon, compiled=True)
    return losses.log_weight(x, outputs["canvas"], outputs["z"], outputs["mu"], outputs["log_sigma"])


def per_image_bounds(model, batches, importance_samples=100, seed=0, importance_batch_size=1000):
    """The negative ELBO terms and the importance-weighted −log p(x) of every image, in nats.

    Args:
        model: a `Draw`.
        batches: an iterable of image batches (batch, B, A, C) in [0, 1].
        importance_samples: K, posterior samples per image; 0 skips the estimate.
        seed: seeds all the noise of the evaluation.
        importance_batch_size: (image, sample) pairs per inference pass; bounds the memory, so
            K = 1000 fits with any batch size.

    Returns:
        A dict of (n,) float64 arrays: `loss`, `reconstruction_loss`, `kl_loss` (one posterior
        sample per image, as in training) and, for K > 0, `negative_log_likelihood`; and
        `binary`, whether every image held only 0 and 1.
    """
    generator = keras.random.SeedGenerator(seed)
    shape = (model.num_steps, model.latent_dim)

    @tf.function(reduce_retracing=True)
    def elbo_terms(x):
        return model.negative_elbo(x, keras.random.normal((tf.shape(x)[0], *shape), seed=generator), compiled=True)

    @tf.function(reduce_retracing=True)
    def chunk_log_weights(x, samples):
        x_tiled = tf.repeat(x, samples, axis=0)  # (batch·samples, B, A, C), image-major
        epsilon = keras.random.normal((tf.shape(x_tiled)[0], *shape), seed=generator)
        return tf.reshape(log_importance_weights(model, x_tiled, epsilon), (-1, samples))

    columns = {"loss": [], "reconstruction_loss": [], "kl_loss": []}
    if importance_samples:
        columns["negative_log_likelihood"] = []
    binary = True
    for x in batches:
        x = tf.convert_to_tensor(x, tf.float32)
        binary = binary and bool(tf.reduce_all((x == 0.0) | (x == 1.0)))
        for name, value in elbo_terms(x).items():
            columns[name].append(value.numpy())
        if importance_samples:
            samples_per_pass = max(1, min(importance_samples, importance_batch_size // int(x.shape[0])))
            log_weights = [  # chunks of (batch, samples), K samples in all
                chunk_log_weights(x, tf.constant(min(samples_per_pass, importance_samples - start))).numpy()
                for start in range(0, importance_samples, samples_per_pass)
            ]
            log_weights = np.concatenate(log_weights, axis=1).astype(np.float64)  # (batch, K)
            log_mean_weight = tf.reduce_logsumexp(log_weights, axis=1) - math.log(importance_samples)
            columns["negative_log_likelihood"].append(-log_mean_weight.numpy())  # −log (1/K) Σ_k w_k
    if not columns["loss"]:
        raise ValueError("No images to evaluate: the dataset is empty.")
    result = {name: np.concatenate(values).astype(np.float64) for name, values in columns.items()}
    result["binary"] = binary
    return result


def evaluate(model, dataset, split="test", importance_samples=100, batch_size=100, data_dir=None, manual_dir=None,
             max_images=None, seed=0, importance_batch_size=1000):
    """Evaluates a DRAW model on a split; returns a JSON-ready dict of figures in nats per image.

    Args:
        model: a `Draw`, or the path of a saved `.keras` model.
        dataset: a name in `keras_draw.datasets.SUPPORTED` (its `split` is loaded), a
            `tf.data.Dataset` of image batches (or of tuples whose first item is the images),
            or an array of images (count, B, A, C) in [0, 1].
        split: "train", "validation" or "test", for a dataset name.
        importance_samples: K of the importance-weighted estimate; 0 skips it.
        batch_size: images per batch, for a name or an array.
        data_dir, manual_dir: as in `keras_draw.datasets.load`.
        max_images: evaluate only the first images of the split.
        seed: seeds the posterior samples.
        importance_batch_size: (image, sample) pairs per inference pass.

    Returns:
        `negative_elbo` with `reconstruction_loss` and `kl_loss`, `negative_log_likelihood`
        (the K-sample bound), each with a `*_standard_error`; `bound_gap`, the ELBO minus the
        K-sample bound, ≥ 0 up to noise; bits per dimension of both bounds; and a `note` on
        whether the figures are a true likelihood.
    """
    check_options(split, importance_samples, batch_size, max_images, importance_batch_size)
    importance_samples, batch_size, importance_batch_size = map(int, (importance_samples, batch_size, importance_batch_size))
    max_images = None if max_images is None else int(max_images)
    model = load_model(model)
    for flag, count in (("batch_size", batch_size), ("importance_batch_size", importance_batch_size)):
        check_fits_in_memory(flag, count, pass_bytes(model), "an image (or image and sample) of a pass", flag=True)
    name = dataset if isinstance(dataset, str) else None
    batches = _batches(dataset, split, batch_size, data_dir, manual_dir, seed)
    batches = _checked_batches(model, batches, max_images)
    bounds = per_image_bounds(model, batches, importance_samples, seed, importance_batch_size)
    dimensions = math.prod(model.image_shape)
    result = {
        "dataset": name,
        "split": split if name else None,
        "num_images": int(bounds["loss"].size),
        "image_shape": list(model.image_shape),
        "importance_samples": int(importance_samples),
        "seed": None if seed is None else int(seed),
        "units": "nats per image",
        "note": BINARY_NOTE if bounds["binary"] else NON_BINARY_NOTE,
    }
    for key, column in (("negative_elbo", "loss"), ("reconstruction_loss", "reconstruction_loss"),
                        ("kl_loss", "kl_loss"), ("negative_log_likelihood", "negative_log_likelihood")):
        if column in bounds:
            result[key], result[f"{key}_standard_error"] = mean_and_standard_error(bounds[column])
    result["negative_elbo_bits_per_dim"] = bits_per_dim(result["negative_elbo"], dimensions)
    if importance_samples:
        gap = bounds["loss"] - bounds["negative_log_likelihood"]  # paired, image by image
        result["bound_gap"], result["bound_gap_standard_error"] = mean_and_standard_error(gap)
        result["negative_log_likelihood_bits_per_dim"] = bits_per_dim(result["negative_log_likelihood"], dimensions)
    return result


def mean_and_standard_error(values):
    """The mean of `values` and its standard error std/√n (None for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), None
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def bits_per_dim(nats, dimensions):
    """Nats per image → bits per dimension: nats / (H·W·C · ln 2)."""
    return nats / (dimensions * math.log(2.0))


# The most of each option that can be meant: a batch beyond any split, K beyond what any machine evaluates.
MAXIMA = {"importance_samples": 10**6, "batch_size": 2**16, "importance_batch_size": 2**20}


def pass_bytes(model):
    """About the memory that one image (or (image, sample) pair) of an inference pass takes, in
    bytes: in float32, its noise ε (drawn, moved time-major, checked), the μ, log σ and z of every
    step, the image, the canvas and its sigmoid, and the LSTMs' states and gates."""
    t, z = model.num_steps, model.latent_dim
    return 4 * (6 * t * z + 3 * math.prod(model.image_shape) + 6 * (model.encoder_units + model.decoder_units))


def check_options(split="test", importance_samples=0, batch_size=100, max_images=None, importance_batch_size=1000):
    """Raises ValueError, quoting the value, for an option that cannot work or cannot be meant."""
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {', '.join(SPLITS)}. Received: split={split!r}")
    if isinstance(importance_samples, bool) or not isinstance(importance_samples, numbers.Integral) or importance_samples < 0:
        # K = 0 is meaningful: no importance-weighted estimate
        raise ValueError("--importance-samples must be a non-negative integer. "
                         f"Received: --importance-samples={importance_samples!r}")
    console.check_positive_flags(batch_size=batch_size, importance_batch_size=importance_batch_size,
                                 max_images=max_images)
    for name, value in (("importance_samples", importance_samples), ("batch_size", batch_size),
                        ("importance_batch_size", importance_batch_size)):
        if value > MAXIMA[name]:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be at most {MAXIMA[name]:,}. Received: {flag}={value!r}")


def check_output_file(path):
    """Raises ValueError, quoting the path, unless a file can be written there."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise ValueError(f"Cannot write a file there. Received: out={os.fspath(path)!r}")


def _batches(dataset, split, batch_size, data_dir, manual_dir, seed):
    if isinstance(dataset, str):
        loaded = datasets.load(dataset, batch_size, data_dir=data_dir, manual_dir=manual_dir, seed=seed)
        return loaded[SPLITS.index(split)]
    if isinstance(dataset, tf.data.Dataset):
        return (batch[0] if isinstance(batch, (tuple, list)) else batch for batch in dataset)
    images = np.asarray(dataset, dtype=np.float32)
    return (images[start : start + batch_size] for start in range(0, len(images), batch_size))


def _checked_batches(model, batches, max_images):
    """Yields the batches, the last one cut at `max_images`, after checking their shape."""
    count = 0
    for x in batches:
        if tuple(x.shape[1:]) != model.image_shape:
            raise ValueError(
                f"The images do not fit the model, which takes {model.image_shape}. "
                f"Received: shape={tuple(x.shape)}"
            )
        if max_images is not None:
            x = x[: max_images - count]
        count += int(x.shape[0])
        yield x
        if max_images is not None and count >= max_images:
            return


def summary(result):
    """The result as a few lines of text."""
    def figure(key):
        error = result.get(f"{key}_standard_error")
        return f"{result[key]:.2f}" + ("" if error is None else f" ± {error:.2f}")

    where = f"{result['dataset']} {result['split']}" if result["dataset"] else "the given images"
    lines = [
        f"{where}: {result['num_images']} images, nats per image (± one standard error)",
        f"  negative ELBO  {figure('negative_elbo')}  = reconstruction {figure('reconstruction_loss')}"
        f" + KL {figure('kl_loss')}  ({result['negative_elbo_bits_per_dim']:.4f} bits/dim)",
    ]
    if "negative_log_likelihood" in result:
        lines.append(
            f"  -log p(x) <=   {figure('negative_log_likelihood')}  (K = {result['importance_samples']}; "
            f"{result['negative_log_likelihood_bits_per_dim']:.4f} bits/dim; "
            f"ELBO gap {figure('bound_gap')})"
        )
    lines.append(f"  {result['note']}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m keras_draw.evaluate",
        description="Negative ELBO and importance-weighted -log p(x) of a trained DRAW model.",
    )
    parser.add_argument("--model", required=True, help="a saved model, e.g. RUN/model.keras")
    parser.add_argument("--dataset", default=None,
                        help=f"{', '.join(datasets.SUPPORTED)} (default: the run's, from config.json beside the model)")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--importance-samples", type=int, default=100,
                        help="K; 0 skips the estimate (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--importance-batch-size", type=int, default=1000,
                        help="(image, sample) pairs per inference pass (default: %(default)s)")
    parser.add_argument("--max-images", type=int, default=None, help="default: the whole split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data directory")
    parser.add_argument("--manual-dir", default=None, help="folder holding the dataset's original files")
    parser.add_argument("--out", default=None,
                        help="JSON file (default: MODEL_DIR/evaluation_DATASET_SPLIT.json)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    writing = False
    try:
        check_options(args.split, args.importance_samples, args.batch_size, args.max_images, args.importance_batch_size)
        check_model_file(args.model)
        run = RunFiles.of_model(args.model)
        args.dataset, args.data_dir, args.manual_dir = run.data_options(args.dataset, args.data_dir, args.manual_dir)
        if args.dataset is None:
            raise ValueError("No --dataset given, and no config.json naming one beside the model.")
        out = args.out or os.path.join(run.output_dir, f"evaluation_{args.dataset}_{args.split}.json")
        check_output_file(out)
        result = evaluate(**{name: value for name, value in vars(args).items() if name != "out"})  # a flag an argument
        writing = True
        write_json(out, result)
    except console.STOPS as stop:  # write_json writes whole or not at all
        return console.stopped(PROGRAM, stop, f"{out} is whole (the new result, or what it held before)" if writing
                               else "nothing was written")
    except (ValueError, datasets.DatasetUnavailableError) as err:
        return console.fail(PROGRAM, err)
    except WriteError as err:  # a full disk: a failure of the run, not of its input
        return console.fail(PROGRAM, err, status=1)
    print(summary(result))
    print(f"Written to {out}.")
    print(f"Next: python -m keras_draw.visualize --model {args.model}, for its pictures (docs/evaluation.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
