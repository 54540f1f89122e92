"""The options of a training run (`TrainOptions`): the flags of `python train.py`, the
arguments of `keras_draw.train`, checked before anything is written."""

import dataclasses
import os

from keras_draw import data_sources, presets, strategies
from keras_draw.files import check_output_dir


# Keras dtype policies: the mixed ones run the LSTMs in bfloat16 or float16 (see `Draw`).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

# The values of the auto/on/off flags (`--jit-compile`; the benchmarks' `--jit` and `--unroll`)
# and what they mean to `Draw.compile`.
SWITCH_CHOICES = {"auto": "auto", "on": True, "off": False}


@dataclasses.dataclass
class TrainOptions:
    """The options of a training run; None means "the preset's value" or "the default"."""

    dataset: str = "mnist"
    preset: str | None = None  # None: the dataset's (`presets.for_dataset`)
    epochs: int | None = None  # None here: the preset's recipe (`presets.RECIPES`), else `DEFAULTS`
    steps_per_epoch: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    num_steps: int | None = None
    read_n: int | None = None
    write_n: int | None = None
    no_attention: bool = False
    latent_dim: int | None = None
    units: int | None = None
    clip_norm: float = 10.0
    seed: int = 0
    data_dir: str | None = None
    manual_dir: str | None = None
    output_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    deterministic: bool = False
    model_base_path: str | None = None  # TF Serving's model folder, which the run exports into
    strategy: str = "default"
    jit_compile: str = "auto"
    unroll: bool | str | None = None  # True, False, or "auto" (see `Draw.compile`)
    log_test: bool = False
    lr_patience: int | None = None
    lr_factor: float = 0.5
    early_stopping: int | None = None
    weight_average: float | None = None  # the momentum of `keras_draw.averaging.WeightAverage`
    precision: str = "float32"
    cover_windows: bool | None = None  # a fresh run starts its windows covering the image (`Draw.initialize_windows`)

    # The recipe of a preset that has none of its own.
    DEFAULTS = {"epochs": 3, "batch_size": 100, "learning_rate": 1e-3, "unroll": "auto", "cover_windows": False}

    # Sizes beyond these are typos, not experiments: T=10**12 or 10**6 units cannot be built.
    # (`batch_size` is checked against the training split once it is loaded.)
    LIMITS = {"num_steps": 1000, "units": 8192, "latent_dim": 8192, "checkpoint_every": 10**7,
              "steps_per_epoch": 10**7, "epochs": 10**6}

    # Options that may change between a run and its resumption; the others must match.
    CHANGEABLE = ("epochs", "learning_rate", "data_dir", "manual_dir", "output_dir", "checkpoint_every", "resume",
                  "deterministic", "model_base_path", "strategy", "jit_compile", "unroll", "log_test",
                  "lr_patience", "lr_factor", "early_stopping", "weight_average", "precision")

    # Options a run's config.json may hold under an earlier name: old name -> new.
    RENAMED = {"export_dir": "model_base_path"}

    @classmethod
    def from_saved(cls, options):
        """The options of a run's config.json, written by this version or an earlier one."""
        return cls(**{cls.RENAMED.get(name, name): value for name, value in options.items()})

    def __post_init__(self):
        if self.preset is None:
            self.preset = presets.for_dataset(self.dataset)
        recipe = {**self.DEFAULTS, **presets.recipe(self.preset)}
        for name, value in recipe.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def check(self):
        """Raises ValueError, quoting the bad value, for any option that cannot work."""
        if self.dataset not in data_sources.SUPPORTED:
            raise ValueError(
                f"Unknown dataset: {self.dataset!r}. Supported: {', '.join(data_sources.SUPPORTED)}."
            )
        presets.get(self.preset)
        if self.jit_compile not in SWITCH_CHOICES:
            raise ValueError(f"`jit_compile` must be one of {', '.join(SWITCH_CHOICES)}. "
                             f"Received: jit_compile={self.jit_compile!r}")
        if self.unroll not in (True, False, "auto"):
            raise ValueError(f"`unroll` must be True, False or 'auto'. Received: unroll={self.unroll!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {', '.join(PRECISIONS)}. Received: precision={self.precision!r}")
        if self.strategy not in strategies.STRATEGIES:
            raise ValueError(f"Unknown strategy: {self.strategy!r}. Supported: "
                             f"{', '.join(strategies.STRATEGIES)}. Received: strategy={self.strategy!r}")
        for name in ("epochs", "batch_size", "steps_per_epoch", "num_steps", "latent_dim", "units",
                     "checkpoint_every", "lr_patience", "early_stopping"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
            if value is not None and value > self.LIMITS.get(name, value):
                raise ValueError(f"`{name}` must be at most {self.LIMITS[name]}. Received: {name}={value!r}")
        if self.no_attention and (self.read_n is not None or self.write_n is not None):
            raise ValueError("`read_n` and `write_n` are the sizes of attention grids, which `no_attention` "
                             f"turns off. Received: read_n={self.read_n}, write_n={self.write_n}")
        if not 0 < self.learning_rate < 1:  # Adam moves each weight by about the rate per step
            raise ValueError(f"`learning_rate` must be in (0, 1). Received: learning_rate={self.learning_rate}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"`lr_factor` must be in (0, 1). Received: lr_factor={self.lr_factor}")
        if self.weight_average is not None and (isinstance(self.weight_average, bool) or not 0 < self.weight_average < 1):
            raise ValueError(f"`weight_average` must be a momentum in (0, 1). Received: weight_average={self.weight_average!r}")
        if not 0 <= self.clip_norm < float("inf"):
            raise ValueError(f"`clip_norm` must be 0 (off) or a positive number. Received: clip_norm={self.clip_norm}")
        for name in ("data_dir", "manual_dir"):
            path = getattr(self, name)
            if path is not None and not os.path.isdir(path):
                raise ValueError(f"`{name}` is not an existing directory. Received: {name}={path!r}")
        check_output_dir(self.resolved_output_dir(), "output_dir")
        if self.model_base_path is not None:
            check_output_dir(self.model_base_path, "model_base_path")

    def resumable(self):
        """The options a checkpoint must share with the run that resumes it."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.CHANGEABLE}

    def resolved_output_dir(self):
        """`output_dir`, else runs/DATASET for the dataset's own preset, runs/DATASET-PRESET for another."""
        if self.output_dir is not None:
            return self.output_dir
        folder = self.dataset if self.preset == presets.for_dataset(self.dataset) else f"{self.dataset}-{self.preset}"
        return os.path.join("runs", folder)

    def model_config(self):
        """The `Draw` arguments: the preset, the dataset's image shape, then the overrides."""
        height, width, channels = data_sources.image_shape(self.dataset)
        overrides = {
            "num_steps": self.num_steps,
            "read_n": self.read_n,
            "write_n": self.write_n,
            "latent_dim": self.latent_dim,
            "encoder_units": self.units,
            "decoder_units": self.units,
        }
        config = presets.get(self.preset)
        config.update({k: v for k, v in overrides.items() if v is not None})
        config.update(image_height=height, image_width=width, channels=channels)
        if self.no_attention:
            config["attention"] = False
        config.update(clip_norm=self.clip_norm or None, seed=self.seed)
        return config
