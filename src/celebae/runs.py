"""A trained run, loaded from its directory: ``celebae.load(RUN).encode(images)``."""

from __future__ import annotations

import json
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
from .errors import CelebaeError
from .models import Autoencoder, build_model
from .settings import Settings
from .train import read_metrics, resolve_device

ImageLike = Union[str, Path, Image.Image, np.ndarray, torch.Tensor]  # noqa: UP007 (runtime alias, Python 3.10)


@dataclass
class TrainedRun:
    """A run directory's settings, summary and trained model (in eval mode)."""

    path: Path
    settings: Settings
    model: Autoencoder
    device: torch.device
    summary: dict[str, Any] | None

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    def images(self, images: ImageLike | Iterable[ImageLike]) -> torch.Tensor:
        """Image files, PIL images, uint8 arrays/tensors or float tensors in [-1, 1] → N×3×128×128 float on
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
        if arr.shape == (128, 128, 3):
            arr = arr.transpose(2, 0, 1)
        if arr.shape != (3, 128, 128) or arr.dtype != np.uint8:
            raise CelebaeError(f"an array image must be uint8 128×128×3 or 3×128×128, got {arr.dtype} {arr.shape}")
        return np.ascontiguousarray(arr)

    @torch.no_grad()
    def encode(self, images: ImageLike | Iterable[ImageLike]) -> torch.Tensor:
        """N×code_size codes."""
        return self.model.encode(self.images(images))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes → images in [-1, 1] (``celebae.data.to_uint8`` turns them into pixels)."""
        return self.model.decode(torch.as_tensor(codes, dtype=torch.float32).to(self.device))

    @torch.no_grad()
    def reconstruct(self, images: ImageLike | Iterable[ImageLike]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, reconstructions) as uint8 N×3×128×128."""
        x = self.images(images)
        return to_uint8(x), to_uint8(self.model(x))


def load(run: str | Path, checkpoint: str = "best", device: str = "auto") -> TrainedRun:
    """Load a run directory written by ``celebae train``; ``checkpoint`` is ``best`` or ``last``."""
    path = Path(run)
    if not path.is_dir():
        raise CelebaeError(f"run directory {path} does not exist")
    if checkpoint not in ("best", "last"):
        raise CelebaeError(f"checkpoint must be best or last, got {checkpoint!r}")
    weights = path / "checkpoints" / f"{checkpoint}.safetensors"
    if not weights.exists():
        raise CelebaeError(
            f"{path} has no checkpoints/{checkpoint}.safetensors; is it a celebae run that finished at least one epoch?"
        )
    settings = Settings.from_dict(ckpt.read_metadata(weights)["settings"], str(weights))
    dev = resolve_device(device)
    model = build_model(settings.model, **settings.model_kwargs())
    ckpt.load_weights(model, weights)
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return TrainedRun(path, settings, model.to(dev).eval(), dev, summary)
