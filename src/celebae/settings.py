"""Every setting of a training run, in one dataclass.

The CLI and config/study files only fill it in; a run directory stores it
resolved (``config.json``), and checkpoints name it. Config files are TOML with
the same keys as the fields below (``batch_size = 32``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .data.images import CROPS
from .errors import CelebaeError
from .models import MODELS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_NF = {"conv": 64, "pool": 16}


def _f(default: Any, help: str) -> Any:
    """A field with its help text (the CLI shows it)."""
    return field(default=default, metadata={"help": help})


@dataclass
class Settings:
    # what to train on
    data: str = _f("synthetic", "'synthetic', a CelebA folder, or any folder of images")
    synthetic_size: int = _f(3000, "number of synthetic faces (split 80/10/10)")
    crop: str = _f(
        "resize-crop",
        "resize-crop: shorter side to 128, centre crop (the authors'); crop-resize: centre square, then resize",
    )
    limit_train: int | None = _f(None, "use only the first N training images (quick runs)")
    limit_val: int | None = _f(None, "use only the first N validation images")
    limit_test: int | None = _f(None, "use only the first N test images")
    split_seed: int = _f(0, "image folders: seed of the 80/10/10 split hash")
    strict_images: bool = _f(False, "a corrupt image stops preparation instead of being skipped")
    cache_dir: str | None = _f(None, "prepared splits; default $CELEBAE_CACHE or ~/.cache/celebae")
    # the model
    model: str = _f("conv", "conv (Model 1, strided convolutions) or pool (Model 2, pooling/upsampling)")
    nf: int | None = _f(None, "width; default 64 for conv, 16 for pool")
    nf_enc: int | None = _f(None, "conv only: encoder width (default nf)")
    nf_dec: int | None = _f(None, "conv only: decoder width (default nf)")
    slope: float = _f(0.2, "LeakyReLU slope; 1.0 reproduces the authors' code (no nonlinearity)")
    # optimisation
    epochs: int = _f(8, "passes over the training split")
    batch_size: int = _f(64, "images per optimiser step (over all processes)")
    lr: float = _f(2e-4, "Adam learning rate")
    beta1: float = _f(0.9, "Adam beta1")
    beta2: float = _f(0.999, "Adam beta2")
    seed: int = _f(0, "seeds the initial weights and the data order")
    # how it runs
    device: str = _f("auto", "auto | cpu | cuda | cuda:N | mps")
    precision: str = _f("auto", "auto | fp32 | bf16 (autocast); auto: bf16 on GPUs and on CPUs with native bf16")
    channels_last: bool | None = _f(None, "NHWC memory layout; default on with bf16 or a GPU")
    sync_batchnorm: bool = _f(False, "multi-GPU: BatchNorm statistics over the global batch, as on one GPU")
    compile: bool = _f(False, "torch.compile the model")
    log_every: int = _f(10, "steps between writes of metrics (every step's loss is written)")
    checkpoint_minutes: float = _f(10.0, "also save mid-epoch this often (epochs always end with a save)")
    grid_images: int = _f(8, "test images in reconstructions.png")
    out: str | None = _f(None, "run directory; default runs/<model>-nf<nf>-bs<batch>")

    def __post_init__(self) -> None:
        self.validate()

    @property
    def width(self) -> int:
        return self.nf if self.nf is not None else DEFAULT_NF.get(self.model, 64)

    @property
    def label(self) -> str:
        """Short name of the run, as in the report's figures: ``conv bs=32 nf=16``."""
        nf = f"{self.nf_enc or self.width}/{self.nf_dec or self.width}" if self.nf_enc or self.nf_dec else self.width
        return f"{self.model} bs={self.batch_size} nf={nf}"

    def model_kwargs(self) -> dict[str, Any]:
        return {"nf": self.width, "nf_enc": self.nf_enc, "nf_dec": self.nf_dec, "slope": self.slope}

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise CelebaeError(message)

        need(self.model in MODELS, f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        need(self.crop in CROPS, f"unknown crop {self.crop!r}; choose one of {', '.join(CROPS)}")
        need(
            self.precision in ("auto", "fp32", "bf16"), f"precision must be auto, fp32 or bf16, got {self.precision!r}"
        )
        for name in ("epochs", "batch_size", "log_every", "synthetic_size"):
            need(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        need(self.batch_size >= 2, f"batch_size must be at least 2 (BatchNorm needs two images), got {self.batch_size}")
        for name in ("limit_train", "limit_val", "limit_test", "nf", "nf_enc", "nf_dec"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name} must be at least 1, got {value}")
        need(self.lr > 0, f"lr must be positive, got {self.lr}")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must lie in [0, 1)")
        need(self.grid_images >= 1, f"grid_images must be at least 1, got {self.grid_images}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "settings") -> Settings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CelebaeError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**values)
        except TypeError as err:
            raise CelebaeError(f"{where}: {err}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict, with a one-line error for a missing or malformed file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise CelebaeError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise CelebaeError(f"config file {path} is not valid TOML: {err}") from None


def load_settings(path: str | Path) -> Settings:
    """Settings from a TOML config file or a run's ``config.json``."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            return Settings.from_dict(json.loads(path.read_text()), str(path))
        except (OSError, json.JSONDecodeError) as err:
            raise CelebaeError(f"cannot read settings from {path}: {err}") from None
    return Settings.from_dict(read_toml(path), str(path))
