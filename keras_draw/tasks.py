"""What training does differently for DRAW, which generates images, and for `DrawClassifier`.

A preset names its model class (`presets.model_class_name`); `of(options)` gives the task of that
class, and `keras_draw.training` runs the same loop, checkpoints and files for both through it:
the task builds and compiles the model, checks the options that only one kind takes, starts a
fresh run, adds its callbacks, draws its pictures and words the summary.
"""

import keras

from keras_draw import data_sources, glimpse_pictures, presets, visualize
from keras_draw.train_options import SWITCH_CHOICES

# The paper's test error on cluttered MNIST with 8 glimpses (Table 1).
PAPER_TEST_ERROR = {"cluttered_mnist": 3.36}


class Generation:
    """DRAW (`keras_draw.Draw`): the negative ELBO, samples and drawings."""

    def build_model(self, options):
        """A compiled `Draw` for the options (Adam, the options' learning rate)."""
        from keras_draw.draw import Draw

        model = Draw(**options.model_config(), dtype=options.precision)
        model.compile(optimizer=keras.optimizers.Adam(options.learning_rate),
                      jit_compile=SWITCH_CHOICES[options.jit_compile], unroll=options.unroll)
        return model

    def check(self, options):
        pass

    def start(self, model, data, options):
        """A fresh run: the canvas starts at the data's mean (`Draw.initialize_canvas`), and the
        windows cover the image if the options say so (`Draw.initialize_windows`)."""
        model.initialize_canvas(data.mean_image())
        if options.cover_windows:
            model.initialize_windows()

    def callbacks(self, files):
        return files.callbacks()

    def write_pictures(self, model, out_dir, images, seed):
        visualize.write_pictures(model, out_dir, images=images, seed=seed)

    def summary(self, options, test_metrics):
        """The figure and what it means; the files."""
        meaning = {
            "mnist": "dynamically binarized MNIST; a blurry model sits near 200, readable digits below about 110",
            "binarized_mnist": "the paper's binarized MNIST, whose Table 2 gives 80.97 for this network",
            "two_digit_mnist": "two dynamically binarized MNIST digits on 60x60, for which the paper gives no figure",
        }.get(options.dataset, f"{options.dataset}, a cross-entropy of the intensities (not a likelihood)")
        out = options.resolved_output_dir()
        lines = [
            f"Test negative ELBO: {test_metrics['loss']:.1f} nats per image (lower is better; {meaning}).",
            f"Written to {out}/: samples.png (generated images), drawing.gif (the drawing, step by step), "
            "reconstructions.png, model.keras, metrics.csv (see docs/training.md).",
        ]
        lines.append(self.next_step(options))
        return lines

    def next_step(self, options):
        """The "Next:" line of `summary`, for the dataset the run trained on."""
        out = options.resolved_output_dir()
        if options.preset == "demo":
            return ("Next: look at the pictures in that folder, or train the paper's network on the paper's data: "
                    "python train.py --dataset binarized_mnist (docs/training.md).")
        if data_sources.image_shape(options.dataset)[2] > 1:  # intensities: no likelihood to bound
            return (f"Next: open {out}/drawing.gif, or python -m keras_draw.visualize --model {out}/model.keras "
                    "--num-images 64 --seed 1 for other samples (docs/evaluation.md).")
        return (f"Next: python -m keras_draw.evaluate --model {out}/model.keras --importance-samples 1000 "
                "(a tighter bound on -log p(x); docs/evaluation.md).")


class Classification:
    """`keras_draw.DrawClassifier`: the cross-entropy and accuracy, and the glimpses (Figure 3)."""

    # Flags of DRAW's generator that the classifier does not have.
    NOT_OPTIONS = ("write_n", "latent_dim", "no_attention", "model_base_path")

    def model_config(self, options):
        """The `DrawClassifier` arguments: the preset, the dataset's image shape, the overrides."""
        height, width, channels = data_sources.image_shape(options.dataset)
        overrides = {"num_steps": options.num_steps, "read_n": options.read_n, "units": options.units}
        config = presets.get(options.preset)
        config.update({k: v for k, v in overrides.items() if v is not None})
        config.update(image_height=height, image_width=width, channels=channels, seed=options.seed)
        return config

    def build_model(self, options):
        """A compiled `DrawClassifier`: Adam at the options' rate, clipped to `clip_norm` (0: not)."""
        from keras_draw.draw_classifier import DrawClassifier

        model = DrawClassifier(**self.model_config(options))
        optimizer = keras.optimizers.Adam(options.learning_rate, global_clipnorm=options.clip_norm or None)
        model.compile(optimizer=optimizer, jit_compile=options.jit_compile != "off")
        return model

    def check(self, options):
        """ValueError for an option the classifier cannot take."""
        if not data_sources.has_labels(options.dataset):
            raise ValueError(f"The {options.preset!r} preset is a classifier: it trains on a labelled dataset "
                             f"(cluttered_mnist). Received: dataset={options.dataset!r}")
        for name in self.NOT_OPTIONS:
            if getattr(options, name):
                raise ValueError(f"`{name}` is not an option of the classifier ({options.preset!r} preset). "
                                 f"Received: {name}={getattr(options, name)!r}")
        if options.precision != "float32" or options.unroll not in ("auto", True):
            raise ValueError("The classifier trains in float32, its T steps unrolled. "
                             f"Received: precision={options.precision!r}, unroll={options.unroll!r}")

    def start(self, model, data, options):
        pass

    def callbacks(self, files):
        return [files.tensorboard()]

    def write_pictures(self, model, out_dir, images, seed):
        glimpse_pictures.write_glimpse_pictures(model, out_dir, images)

    def summary(self, options, test_metrics):
        error = 100.0 * (1.0 - test_metrics["accuracy"])
        paper = PAPER_TEST_ERROR.get(options.dataset)
        versus = f"; the paper's Table 1: {paper} % for 8 glimpses" if paper else ""
        out = options.resolved_output_dir()
        return [
            f"Test error: {error:.2f} % (cross-entropy {test_metrics['loss']:.4f}{versus}).",
            f"Written to {out}/: glimpses.png and glimpses.gif (the glimpses on test images, the paper's "
            "Figure 3), model.keras, metrics.csv (see docs/training.md).",
            f"Next: keras.saving.load_model('{out}/model.keras').predict(images) gives the class probabilities "
            "of images (n, 100, 100, 1) in [0, 1].",
        ]


def of(options):
    """The task of the options' preset."""
    return Classification() if presets.model_class_name(options.preset) == "DrawClassifier" else Generation()
