"""A trained run, loaded from its directory: ``celebae.load(RUN).encode(images)``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from . import checkpoint as ckpt
from .data.batches import to_uint8, to_unit_range
from .data.images import BadImage, load_image, square, to_rgb
from .device import resolve_device
from .errors import CelebaeError
from .models import Autoencoder, build_model
from .rundir import RunDir
from .settings import Settings

ImageLike = Union[str, Path, Image.Image, np.ndarray, torch.Tensor]  # noqa: UP007 (runtime alias, Python 3.10)


@dataclass
class TrainedRun:
    """A run directory's settings and trained model (in eval mode); ``run`` is its record."""

    run: RunDir
    settings: Settings
    model: Autoencoder
    device: torch.device

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def summary(self) -> dict[str, Any] | None:
        return self.run.summary

    def metrics(self) -> list[dict[str, Any]]:
        return self.run.metrics

    def images(self, images: ImageLike | Iterable[ImageLike]) -> torch.Tensor:
        """Image files, PIL images, uint8 arrays/tensors or float tensors in [-1, 1] → N×3×S×S float on
        the model's device, preprocessed with the run's crop."""
        if isinstance(images, torch.Tensor):
            x = images if images.dim() == 4 else images.unsqueeze(0)
            return (to_unit_range(x) if x.dtype == torch.uint8 else x.float()).to(self.device)
        if isinstance(images, (str, Path, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim == 3):
            images = [images]
        rows = [self._one(item) for item in images]
        if not rows:
            raise CelebaeError("no images given")
        return to_unit_range(torch.from_numpy(np.stack(rows))).to(self.device)

    def _one(self, item: ImageLike) -> np.ndarray:
        if isinstance(item, (str, Path)):
            try:
                return load_image(item, self.settings.crop)[0]
            except FileNotFoundError:
                raise CelebaeError(f"image {item} does not exist") from None
            except BadImage as err:
                raise CelebaeError(f"image {item} is {err}") from None
        if isinstance(item, Image.Image):
            return np.asarray(square(to_rgb(item), self.settings.crop)).transpose(2, 0, 1).copy()
        arr = np.asarray(item)
        c, h, w = self.model.image_shape
        if arr.shape == (h, w, c):
            arr = arr.transpose(2, 0, 1)
        if arr.shape != (c, h, w) or arr.dtype != np.uint8:
            raise CelebaeError(f"an array image must be uint8 {h}×{w}×{c} or {c}×{h}×{w}, got {arr.dtype} {arr.shape}")
        return np.ascontiguousarray(arr)

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Float images in [-1, 1] on the model's device → float32 codes (inference is always fp32)."""
        return self.model.encode(x.float())

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes → float32 images in [-1, 1] on the model's device (``celebae.data.to_uint8`` makes pixels)."""
        return self.model.decode(torch.as_tensor(codes, dtype=torch.float32).to(self.device))

    def encode(self, images: ImageLike | Iterable[ImageLike]) -> torch.Tensor:
        """N×code_size float32 codes of image files, PIL images, uint8 arrays/tensors or float tensors."""
        return self.encode_tensor(self.images(images))

    def reconstruct(self, images: ImageLike | Iterable[ImageLike]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, reconstructions) as uint8 N×3×S×S."""
        x = self.images(images)
        return to_uint8(x), to_uint8(self.decode(self.encode_tensor(x)))

    def encode_batches(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """Codes (on the CPU) of a uint8 N×3×S×S array, in batches."""
        out = [
            self.encode_tensor(
                to_unit_range(torch.from_numpy(np.array(images[i : i + batch_size])).to(self.device))
            ).cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, self.model.code_size)

    def decode_batches(self, codes: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Reconstructions (float in [-1, 1], on the CPU) of codes, in batches."""
        return torch.cat([self.decode(codes[i : i + batch_size]).cpu() for i in range(0, len(codes), batch_size)])


def load(run: str | Path | RunDir, checkpoint: str = "best", device: str = "auto") -> TrainedRun:
    """Load a run directory written by ``celebae train``; ``checkpoint`` is ``best`` or ``last``."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    if not run.path.is_dir():
        raise CelebaeError(f"run directory {run.path} does not exist")
    weights = run.weights(checkpoint)
    if not weights.exists():
        raise CelebaeError(
            f"{run.path} has no {weights.relative_to(run.path)}; is it a celebae run that finished an epoch?"
        )
    settings = Settings.from_dict(ckpt.read_metadata(weights)["settings"], str(weights))
    dev = resolve_device(device)
    model = build_model(settings.model, **settings.model_kwargs())
    ckpt.load_weights(model, weights)
    return TrainedRun(run, settings, model.to(dev).eval(), dev)
