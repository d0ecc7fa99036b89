"""Every setting of a training run, in one dataclass.

The CLI and config/study files only fill it in; a run directory stores it
resolved (``config.json``), and checkpoints name it. Config files are TOML with
the same keys as the fields below (``batch_size = 32``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..data import DataSpec
from ..data.augment import AUGMENTS
from ..data.images import CROPS
from ..errors import CelebaeError
from ..files import MAX_JSON_BYTES, read_json, regular_file
from ..models import MODELS, SIZE, model_spec
from ..quality.figures import MAX_GRID_IMAGES
from ..quality.losses import LOSSES
from .device import PRECISIONS
from .schedule import SCHEDULES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Model arguments that are settings of their own (the report's studies vary them); a model's other
# arguments go in ``model_args``. Each is passed only to a model whose builder takes it.
MODEL_FIELDS = ("nf", "nf_enc", "nf_dec", "slope", "image_size", "code_size")
# Settings a resumed run may change; the rest define the run and must match what it started with.
RESUMABLE = frozenset(
    {
        "epochs",
        "device",
        "log_every",
        "out",
        "cache_dir",
        "compile",
        "compile_mode",
        "cudnn_benchmark",
        "data_on_device",
        "grid_images",
        "checkpoint_minutes",
    }
)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
MAX_SYNTHETIC = 1_000_000  # 49 GB of 128-px faces in the cache: five times CelebA
MAX_SEED = 2**63 - 1  # what torch.manual_seed and NumPy's generators take


def _sizes_help() -> str:
    return "; ".join(f"{name}: {', '.join(map(str, spec.image_sizes))}" for name, spec in MODELS.items())


def _models_help() -> str:
    return "; ".join(f"{name}: {spec.description}" for name, spec in MODELS.items())


def _defaults_help(argument: str) -> str:
    return ", ".join(
        f"{spec.defaults[argument]} for {name}" for name, spec in MODELS.items() if spec.defaults.get(argument)
    )


def _f(default: Any, help: str, choices: Any = None) -> Any:
    """A field with its help text and, for a setting that is one of a list, its choices (the CLI shows both)."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices) if choices else None})


@dataclass
class Settings:
    # what to train on
    data: str = _f("synthetic", "'synthetic', a CelebA folder, or any folder of images")
    synthetic_size: int = _f(3000, "number of synthetic faces (split 80/10/10)")
    crop: str = _f(
        "resize-crop",
        "resize-crop: shorter side to 128, centre crop (the authors'); crop-resize: centre square, then resize",
        CROPS,
    )
    limit_train: int | None = _f(None, "use only the first N training images (quick runs)")
    limit_val: int | None = _f(None, "use only the first N validation images")
    limit_test: int | None = _f(None, "use only the first N test images")
    split_seed: int = _f(0, "image folders: seed of the 80/10/10 split hash")
    strict_images: bool = _f(False, "a corrupt image stops preparation instead of being skipped")
    follow_links: bool = _f(False, "image folders: also follow links that lead out of the folder")
    cache_dir: str | None = _f(None, "prepared splits; default $CELEBAE_CACHE or ~/.cache/celebae")
    # the model
    model: str = _f("conv", _models_help(), MODELS)
    nf: int | None = _f(None, f"width; default {_defaults_help('nf')}")
    nf_enc: int | None = _f(None, "conv only: encoder width (default nf)")
    nf_dec: int | None = _f(None, "conv only: decoder width (default nf)")
    slope: float | None = _f(
        None, f"LeakyReLU slope (default {_defaults_help('slope')}); 1.0 reproduces the authors' code (linear)"
    )
    image_size: int | None = _f(None, f"image side S (default {SIZE}); {_sizes_help()}")
    code_size: int | None = _f(None, f"numbers in the code (default {_defaults_help('code_size')})")
    model_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "any other argument of the model, as NAME=VALUE (repeatable); TOML: a [model_args] table"},
    )
    loss: str = _f(
        "mse", "training loss: " + "; ".join(f"{n}: {loss.description}" for n, loss in LOSSES.items()), LOSSES
    )
    # optimisation
    epochs: int = _f(8, "passes over the training split")
    batch_size: int = _f(64, "images per optimiser step (over all processes)")
    lr: float = _f(2e-4, "Adam learning rate")
    beta1: float = _f(0.9, "Adam beta1")
    beta2: float = _f(0.999, "Adam beta2")
    seed: int = _f(0, "seeds the initial weights and the data order")
    # beyond the report's recipe (the defaults are the report's: constant Adam, no augmentation, no averaging)
    lr_schedule: str = _f(
        "constant",
        "constant | cosine (to lr_min over the run) | step (×lr_gamma every lr_step_epochs) | "
        "plateau (×lr_gamma after lr_patience epochs without a lower validation loss)",
        SCHEDULES,
    )
    schedule_epochs: int | None = _f(
        None,
        "epochs the cosine schedule spans (default: --epochs when the run starts; a resumed run keeps it, and "
        "past its end the rate stays at lr_min)",
    )
    warmup_steps: int = _f(0, "linear warm-up of the learning rate, from a hundredth of it, over this many steps")
    lr_min: float = _f(0.0, "cosine: the learning rate at the end")
    lr_step_epochs: int = _f(4, "step: epochs between decays")
    lr_gamma: float = _f(0.1, "step, plateau: the factor of each decay")
    lr_patience: int = _f(2, "plateau: epochs without improvement before a decay")
    augment: str = _f(
        "none",
        "training batches only, on the device: none | flip (horizontal, half the images) | flip-shift",
        AUGMENTS,
    )
    shift_px: int = _f(4, "flip-shift: the largest shift in pixels (edge pixels repeated)")
    ema: float | None = _f(
        None,
        "keep an exponential moving average of the weights with this decay (e.g. 0.995); it is validated, "
        "chooses best, and is what celebae.load gives",
    )
    weight_decay: float = _f(0.0, "decoupled weight decay (AdamW) when above 0")
    grad_clip: float | None = _f(None, "clip the gradients' global norm to this")
    # how it runs
    device: str = _f("auto", "auto | cpu | cuda | cuda:N | mps")
    precision: str = _f(
        "auto", "auto | fp32 | bf16 (autocast); auto: bf16 on GPUs and on CPUs with native bf16", PRECISIONS
    )
    channels_last: bool | None = _f(None, "NHWC memory layout; default on with bf16 or a GPU")
    sync_batchnorm: bool = _f(False, "multi-GPU: BatchNorm statistics over the global batch, as on one GPU")
    compile: bool = _f(False, "torch.compile the model")
    compile_mode: str = _f(
        "default", "with --compile: default, reduce-overhead (CUDA graphs) or max-autotune", COMPILE_MODES
    )
    data_on_device: bool | None = _f(
        None,
        "CUDA: hold each split on the GPU (default: when it fits in half the free memory; else stream batches)",
    )
    cudnn_benchmark: bool | None = _f(None, "CUDA: let cuDNN time its convolution algorithms (default on)")
    deterministic: bool = _f(False, "bitwise-repeatable CUDA runs (deterministic kernels; slower)")
    log_every: int = _f(10, "steps between writes of metrics (every step's loss is written)")
    checkpoint_minutes: float = _f(10.0, "also save mid-epoch this often (epochs always end with a save)")
    grid_images: int = _f(8, "test images in reconstructions.png")
    out: str | None = _f(None, "run directory; default runs/<model>-bs<batch>-nf<nf>")

    def __post_init__(self) -> None:
        self.validate()

    @property
    def width(self) -> int | None:
        """The model's width: ``nf`` or the model's default (None for a model without one)."""
        return self.model_kwargs().get("nf", model_spec(self.model).defaults.get("nf"))

    @property
    def size(self) -> int:
        """The side of the images, in pixels."""
        return self.image_size or SIZE

    @property
    def label(self) -> str:
        """Short name of the run, as in the report's figures: ``conv bs=32 nf=16``."""
        nf = f"{self.nf_enc or self.width}/{self.nf_dec or self.width}" if self.nf_enc or self.nf_dec else self.width
        extra = (f" size={self.image_size}" if self.size != SIZE else "") + (
            f" code={self.code_size}" if self.code_size else ""
        )
        extra += "".join(f" {k}={v}" for k, v in self.model_args.items())
        loss = f" loss={self.loss}" if self.loss != "mse" else ""
        return f"{self.model} bs={self.batch_size} nf={nf}{extra}{loss}"

    def run_name(self, varying: list[str] | tuple[str, ...] = ()) -> str:
        """The run's folder name: ``conv-bs32-nf16`` (the label's order), plus any of ``varying`` beyond those
        (``-lr0.001``): the default ``--out`` (under ``runs/``) and a sweep point's folder."""
        width = f"{self.nf_enc or self.width}x{self.nf_dec or self.width}" if self.nf_enc or self.nf_dec else self.width
        parts = [self.model, f"bs{self.batch_size}", f"nf{width}"]
        named = ("model", "batch_size", "nf", "nf_enc", "nf_dec")
        parts += [f"{k.replace('_', '')}{getattr(self, k)}" for k in varying if k not in named]
        return "-".join(str(p) for p in parts)

    def model_kwargs(self) -> dict[str, Any]:
        """The model's keyword arguments: the model fields that are set, then ``model_args``."""
        kwargs = {k: getattr(self, k) for k in MODEL_FIELDS if getattr(self, k) is not None}
        both = sorted(set(kwargs) & set(self.model_args))
        if both:
            raise CelebaeError(f"{', '.join(both)} given both as a setting and in model_args; give it once")
        return {**kwargs, **self.model_args}

    def data_spec(self, data: str | None = None) -> DataSpec:
        """What the data part of these settings names (source, crop, size, limits, cache); ``data`` reads
        another source the same way (how a trained run's tools score other images)."""
        return DataSpec(
            data or self.data,
            self.synthetic_size,
            self.split_seed,
            self.crop,
            {"train": self.limit_train, "val": self.limit_val, "test": self.limit_test},
            self.cache_dir,
            self.strict_images,
            self.follow_links,
            self.size,
        )

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise CelebaeError(message)

        need(isinstance(self.model_args, dict), f"model_args must be a table of NAME = VALUE, got {self.model_args!r}")
        model_spec(self.model).check(self.model_kwargs())  # the model says which sizes and arguments it takes
        need(self.loss in LOSSES, f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        need(self.crop in CROPS, f"unknown crop {self.crop!r}; choose one of {', '.join(CROPS)}")
        need(
            self.precision in PRECISIONS,
            f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
        )
        need(
            self.compile_mode in COMPILE_MODES,
            f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}",
        )
        for name in ("epochs", "batch_size", "log_every", "synthetic_size"):
            need(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        need(self.batch_size >= 2, f"batch_size must be at least 2 (BatchNorm needs two images), got {self.batch_size}")
        for name in ("limit_train", "limit_val", "limit_test"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name} must be at least 1, got {value}")
        need(self.lr > 0, f"lr must be positive, got {self.lr}")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must lie in [0, 1)")
        need(
            1 <= self.grid_images <= MAX_GRID_IMAGES,
            f"grid_images must be 1 to {MAX_GRID_IMAGES}, got {self.grid_images}",
        )
        need(
            self.synthetic_size <= MAX_SYNTHETIC,
            f"synthetic_size must be at most {MAX_SYNTHETIC:,} (faces drawn once into the cache), "
            f"got {self.synthetic_size:,}",
        )
        for name in ("seed", "split_seed"):
            need(0 <= getattr(self, name) <= MAX_SEED, f"{name} must be 0 to 2**63 - 1, got {getattr(self, name)}")
        need(
            math.isfinite(self.checkpoint_minutes) and self.checkpoint_minutes >= 0,
            f"checkpoint_minutes must be 0 or more (0: after every step), got {self.checkpoint_minutes}",
        )
        need(self.out is None or self.out.strip() != "", "out must name a folder (or be left out for the default)")
        for f in fields(self):
            value = getattr(self, f.name)
            need(not isinstance(value, float) or math.isfinite(value), f"{f.name} must be a finite number, got {value}")
        self._validate_recipe(need)

    def _validate_recipe(self, need: Any) -> None:
        need(
            self.lr_schedule in SCHEDULES,
            f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}",
        )
        need(self.augment in AUGMENTS, f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        need(self.ema is None or 0 < self.ema < 1, f"ema is a decay in (0, 1), e.g. 0.995; got {self.ema}")
        for name in ("warmup_steps", "lr_min", "weight_decay", "shift_px"):
            need(getattr(self, name) >= 0, f"{name} must be at least 0, got {getattr(self, name)}")
        need(self.schedule_epochs is None or self.schedule_epochs >= 1, "schedule_epochs must be at least 1")
        for name in ("lr_step_epochs", "lr_patience"):
            need(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        need(0 < self.lr_gamma <= 1, f"lr_gamma is a factor in (0, 1], got {self.lr_gamma}")
        need(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be positive, got {self.grad_clip}")

    def resolved(self) -> Settings:
        """The paths (``data``, ``out``, ``cache_dir``) made absolute, as a run stores them when it starts: it
        then resumes and is evaluated from any working directory. What was typed is only for display."""

        def absolute(path: str | None) -> str | None:
            return None if path is None else str(Path(path).expanduser().resolve())

        data = self.data if self.data == "synthetic" else absolute(self.data)
        return self.replace(data=data, out=absolute(self.out), cache_dir=absolute(self.cache_dir))

    def portable(self) -> Settings:
        """These settings without this machine's paths, as a shared model folder carries them: no run directory
        or cache, and the data named by its folder (``celeba-sample``), not where it lies."""
        return self.replace(data=data_name(self.data), out=None, cache_dir=None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "settings") -> Settings:
        if not isinstance(values, dict):
            raise CelebaeError(f"{where}: settings must be a table of NAME = VALUE, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CelebaeError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**values)
        except TypeError as err:
            raise CelebaeError(f"{where}: {err}") from None


def data_name(data: str) -> str:
    """A data source as a person reads it, without the machine's path: ``synthetic`` or the folder's name."""
    return data if data == "synthetic" else Path(data).name


def parse_value(text: str) -> Any:
    """A command-line value as TOML reads it (``3`` → 3, ``0.5`` → 0.5, ``true`` → True), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict, with a one-line error for a missing or malformed file."""
    path = Path(path)
    try:
        regular_file(path, "config file")
        if path.stat().st_size > MAX_JSON_BYTES:
            raise CelebaeError(f"config file {path} is larger than any settings file; is it the right file?")
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise CelebaeError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else err
        raise CelebaeError(f"config file {path} is not valid TOML: {reason}") from None


def load_settings(path: str | Path) -> Settings:
    """Settings from a TOML config file or a run's ``config.json``."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            return Settings.from_dict(read_json(path, "settings file"), str(path))
        except FileNotFoundError:
            raise CelebaeError(f"settings file {path} does not exist") from None
    return Settings.from_dict(read_toml(path), str(path))
