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

`python -m keras_draw.evaluate --model RUN/model.keras` (or `--preset mnist --weights
binarized_mnist`, the shipped weights) runs `evaluate` and writes its result as JSON (default
RUN/evaluation_<dataset>_<split>.json), with a progress bar on a terminal.
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
from keras_draw.files import WriteError, check_replaceable, write_json
from keras_draw.layers.validation import check_fits_in_memory
from keras_draw.model_file import (add_model_flags, check_model_flags, flags_of, load_model, model_from_flags,
                                   preset_model_name, shipped_dataset)
from keras_draw.run_files import RunFiles

PROGRAM = "evaluate"
SPLITS = ("train", "validation", "test")

BINARY_NOTE = "Bernoulli likelihood of binary images: a bound on the true -log p(x)."
NON_BINARY_NOTE = (
    "The images are not binary: under the paper's Bernoulli D these figures are a cross-entropy, "
    "not a true likelihood, and compare only with models that read intensities the same way."
)


# What the progress bar shows, as the result names it: (key, column of `per_image_bounds`).
PROGRESS_FIGURES = (("negative_elbo", "loss"), ("negative_log_likelihood", "negative_log_likelihood"))


def log_importance_weights(model, x, epsilon):
    """log w = log p(x, z) − log q(z | x) of one inference pass with noise ε; shape (batch,)."""
    outputs = model.infer(x, epsilon, compiled=True)
    return losses.log_weight(x, outputs["canvas"], outputs["z"], outputs["mu"], outputs["log_sigma"])


def per_image_bounds(model, batches, importance_samples=100, seed=0, importance_batch_size=1000, progress=None):
    """The negative ELBO terms and the importance-weighted −log p(x) of every image, in nats.

    Args:
        model: a `Draw`.
        batches: an iterable of image batches (batch, B, A, C) in [0, 1].
        importance_samples: K, posterior samples per image; 0 skips the estimate.
        seed: seeds all the noise of the evaluation.
        importance_batch_size: (image, sample) pairs per inference pass; bounds the memory, so
            K = 1000 fits with any batch size.
        progress: a `keras.utils.Progbar` counting batches (advanced within a batch as its
            importance samples are drawn), or None.

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
    for step, x in enumerate(batches):
        x = tf.convert_to_tensor(x, tf.float32)
        binary = binary and bool(tf.reduce_all((x == 0.0) | (x == 1.0)))
        for name, value in elbo_terms(x).items():
            columns[name].append(value.numpy())
        if importance_samples:
            samples_per_pass = max(1, min(importance_samples, importance_batch_size // int(x.shape[0])))
            log_weights = []  # chunks of (batch, samples), K samples in all
            for start in range(0, importance_samples, samples_per_pass):
                samples = min(samples_per_pass, importance_samples - start)
                log_weights.append(chunk_log_weights(x, tf.constant(samples)).numpy())
                if progress is not None and start + samples < importance_samples:
                    progress.update(step + (start + samples) / importance_samples)
            log_weights = np.concatenate(log_weights, axis=1).astype(np.float64)  # (batch, K)
            log_mean_weight = tf.reduce_logsumexp(log_weights, axis=1) - math.log(importance_samples)
            columns["negative_log_likelihood"].append(-log_mean_weight.numpy())  # −log (1/K) Σ_k w_k
        if progress is not None:  # the running means over the images so far
            progress.update(step + 1, values=[(key, float(np.mean(np.concatenate(columns[column]))))
                                              for key, column in PROGRESS_FIGURES if column in columns])
    if not columns["loss"]:
        raise ValueError("No images to evaluate: the dataset is empty.")
    if progress is not None:
        progress.update(len(columns["loss"]), finalize=True)
    result = {name: np.concatenate(values).astype(np.float64) for name, values in columns.items()}
    result["binary"] = binary
    return result


def evaluate(model, dataset, split="test", importance_samples=100, batch_size=100, data_dir=None, manual_dir=None,
             max_images=None, seed=0, importance_batch_size=1000, verbose="auto"):
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
        verbose: 0 silent, 1 a Keras progress bar over the batches, 2 one line at the end;
            "auto": a bar on a terminal or in a notebook, else one line.

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
    batches, num_batches = _batches(dataset, split, batch_size, data_dir, manual_dir, seed, max_images)
    batches = _checked_batches(model, batches, max_images)
    verbose = console.progress_verbosity(verbose)
    progress = None
    if verbose:
        progress = keras.utils.Progbar(num_batches, verbose=verbose, unit_name="batch",
                                       stateful_metrics=[key for key, _ in PROGRESS_FIGURES])
    bounds = per_image_bounds(model, batches, importance_samples, seed, importance_batch_size, progress)
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
    bytes, in float32: its noise ε, and the μ, log σ and z of every step (6 T·|z|); the tiled
    image, x̂, the canvas, its sigmoid, the write's update and the likelihood's terms, each kept
    by the compiled step (8 per pixel); the LSTMs' inputs, gates and states of the unrolled steps
    (40 per unit). The counts per pixel and unit are the peak measured by
    `python benchmarks/memory.py` (docs/evaluation.md), which the count of three images and six
    states per unit fell short of by 2-3x."""
    t, z = model.num_steps, model.latent_dim
    return 4 * (6 * t * z + 8 * math.prod(model.image_shape) + 40 * (model.encoder_units + model.decoder_units))


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
        raise ValueError(f"Cannot write a file there. Received: --output={os.fspath(path)!r}")
    check_replaceable(path)  # a FIFO or a device named by mistake


def _batches(dataset, split, batch_size, data_dir, manual_dir, seed, max_images=None):
    """The batches of images to evaluate, and how many there are (for the progress bar; None
    where unknown)."""
    if isinstance(dataset, str):
        loaded = datasets.load(dataset, batch_size, data_dir=data_dir, manual_dir=manual_dir, seed=seed)
        batches = loaded[SPLITS.index(split)]
        count = int(batches.cardinality())
        return batches, min(count, -(-max_images // batch_size)) if max_images else count
    if isinstance(dataset, tf.data.Dataset):
        count = int(dataset.cardinality())
        known = count >= 0 and max_images is None  # the batches' size is the dataset's own
        return (batch[0] if isinstance(batch, (tuple, list)) else batch for batch in dataset), count if known else None
    images = np.asarray(dataset, dtype=np.float32)[:max_images]
    batches = (images[start : start + batch_size] for start in range(0, len(images), batch_size))
    return batches, -(-len(images) // batch_size)


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
    parser = console.ArgumentParser(
        prog="python -m keras_draw.evaluate",
        description="Negative ELBO and importance-weighted -log p(x) of a trained DRAW model.",
    )
    add_model_flags(parser)
    parser.add_argument("--dataset", default=None, choices=datasets.SUPPORTED,
                        help="default: the run's (config.json beside --model), or the dataset of shipped --weights")
    parser.add_argument("--split", default="test", choices=SPLITS, help="default: %(default)s")
    parser.add_argument("--importance-samples", type=int, default=100,
                        help="K; 0 skips the estimate (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=100, help="default: %(default)s")
    parser.add_argument("--importance-batch-size", type=int, default=1000,
                        help="(image, sample) pairs per inference pass (default: %(default)s)")
    parser.add_argument("--max-images", type=int, default=None, help="default: the whole split")
    parser.add_argument("--seed", type=int, default=0, help="seeds the posterior samples (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data directory (default: the run's, "
                                                         "else ~/tensorflow_datasets)")
    parser.add_argument("--manual-dir", default=None, help="folder holding the dataset's original files")
    parser.add_argument("--output", default=None,
                        help="the JSON file to write (default: MODEL_DIR/evaluation_DATASET_SPLIT.json; with --preset, "
                             "evaluation_PRESET-WEIGHTS_DATASET_SPLIT.json here)")
    parser.add_argument("--verbose", default="auto", choices=console.VERBOSE_CHOICES,
                        help="1 a progress bar, 2 one line at the end, 0 none (default: auto, a bar on a terminal, else 2)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    kept = "nothing was written"  # what a Ctrl-C or SIGTERM leaves, in words
    try:
        check_options(args.split, args.importance_samples, args.batch_size, args.max_images, args.importance_batch_size)
        check_model_flags(args.model, args.preset, args.weights)
        if args.model is not None:
            run = RunFiles.of_model(args.model)
            dataset, data_dir, manual_dir = run.data_options(args.dataset, args.data_dir, args.manual_dir)
            where, name = run.output_dir, "evaluation"
        else:
            dataset = args.dataset or shipped_dataset(args.preset, args.weights)
            data_dir, manual_dir = args.data_dir, args.manual_dir
            where, name = ".", f"evaluation_{preset_model_name(args.preset, args.weights)}"
        if dataset is None:
            raise ValueError("No --dataset given, and neither a config.json beside the model nor shipped --weights "
                             "naming one.")
        output = args.output or os.path.join(where, f"{name}_{dataset}_{args.split}.json")
        check_output_file(output)
        model = model_from_flags(args.model, args.preset, args.weights, compile=False)
        result = evaluate(model, dataset, args.split, args.importance_samples, args.batch_size, data_dir, manual_dir,
                          args.max_images, args.seed, args.importance_batch_size, verbose=args.verbose)
        kept = (f"{output} is whole (the new result, or what it held before)" if os.path.exists(output)
                else f"{output} holds the whole new result, or was not written")
        write_json(output, result)
    except console.STOPS as stop:  # write_json writes whole or not at all
        return console.stopped(PROGRAM, stop, kept)
    except (ValueError, datasets.DatasetUnavailableError) as err:
        return console.fail(PROGRAM, err)
    except WriteError as err:  # a full disk: a failure of the run, not of its input
        return console.fail(PROGRAM, err, status=1)
    print(summary(result))
    print(f"Written to {output}.")
    print(f"Next: python -m keras_draw.visualize {flags_of(args.model, args.preset, args.weights)}, for its "
          "pictures (docs/evaluation.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
