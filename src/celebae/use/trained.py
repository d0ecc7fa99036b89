"""A trained run, loaded from its directory: ``celebae.load(RUN).encode(images)``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from ..data.batches import to_uint8, to_unit_range
from ..data.images import BadImage, load_image, square_array, to_rgb
from ..errors import CelebaeError
from ..models import Autoencoder, build_model
from ..training import checkpoint as ckpt
from ..training.device import resolve_device
from ..training.rundir import RunDir
from ..training.settings import Settings
from . import hub

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
        """Images → N×3×S×S float32 in [-1, 1] on the model's device (S: the model's size), prepared
        exactly as files are: resize-crop with the run's crop, 8 bits per value.

        One image or a list of them: image files; PIL images; uint8 arrays or tensors (values 0–255); float
        arrays or tensors (values in [0, 1], as ``ToTensor`` gives; [-1, 1] tensors of the model's size go to
        ``encode_tensor``). Arrays are H×W (grey), H×W×C or C×H×W with C = 1, 3 or 4, or a batch N×… of
        them. Any other input is a one-line error."""
        rows = [self._one(item) for item in _image_list(images)]
        if not rows:
            raise CelebaeError("no images given")
        return to_unit_range(torch.from_numpy(np.stack(rows))).to(self.device)

    def _one(self, item: ImageLike) -> np.ndarray:
        size, crop = self.model.image_shape[-1], self.settings.crop
        try:
            if isinstance(item, (str, Path)):
                if Path(item).is_dir():
                    raise CelebaeError(f"image {item} is a folder; pass image files")
                return load_image(item, crop, size)[0]  # a FIFO or device is refused there, by name
            img = item if isinstance(item, Image.Image) else _array_to_image(item)
            return square_array(to_rgb(img), crop, size)[0]
        except FileNotFoundError:
            raise CelebaeError(f"image {item} does not exist") from None
        except BadImage as err:
            raise CelebaeError(f"image {_name(item)} is {err}") from None

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Float images in [-1, 1] on the model's device → float32 codes (inference is always fp32)."""
        if tuple(x.shape[1:]) != self.model.image_shape:
            raise CelebaeError(
                f"encode_tensor takes N×{'×'.join(map(str, self.model.image_shape))} images in [-1, 1], got shape "
                f"{tuple(x.shape)}; pass other sizes through encode(), which resizes them as files are"
            )
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


def _image_list(images: ImageLike | Iterable[ImageLike]) -> list[ImageLike]:
    """One image, a batch (a 4-D array or tensor) or a list of single images → a list of single images."""
    if isinstance(images, (str, Path, Image.Image)):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim == 4:
            return list(images)
        if images.ndim in (2, 3):
            return [images]
        raise CelebaeError(f"an image array must have 2, 3 or 4 dimensions (a batch), got shape {tuple(images.shape)}")
    items = list(images)
    for item in items:
        if isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim not in (2, 3):
            raise CelebaeError(f"a list holds single images (2 or 3 dimensions), got shape {tuple(item.shape)}")
    return items


def _array_to_image(item: np.ndarray | torch.Tensor) -> Image.Image:
    """A uint8 (0–255) or float ([0, 1]) array as a PIL image, in any of the layouts ``images`` accepts."""
    arr = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
    if arr.dtype.kind == "f":
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if not (np.isfinite(arr).all() and lo >= 0 and hi <= 1):
            raise CelebaeError(
                f"float images must hold values in [0, 1], this one spans {lo:.3g} to {hi:.3g}; scale it, pass "
                "uint8 (0–255), or give [-1, 1] tensors of the model's size to encode_tensor"
            )
        arr = np.rint(arr * 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise CelebaeError(f"image arrays must be uint8 (0–255) or float ([0, 1]), got {arr.dtype}")
    if arr.ndim == 3:
        channels_first, channels_last = arr.shape[0] in (1, 3, 4), arr.shape[-1] in (1, 3, 4)
        if channels_first == channels_last:
            raise CelebaeError(f"cannot tell the channels of an image array of shape {arr.shape}; use H×W×C or C×H×W")
        arr = arr.transpose(1, 2, 0) if channels_first else arr
        arr = arr[:, :, 0] if arr.shape[2] == 1 else arr
    return Image.fromarray(np.ascontiguousarray(arr))


def _name(item: ImageLike) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    return f"of size {item.size if isinstance(item, Image.Image) else tuple(item.shape)}"


def load(run: str | Path | RunDir, checkpoint: str = "best", device: str = "auto", ema: bool = True) -> TrainedRun:
    """Load a trained model: a run directory written by ``celebae train`` (``checkpoint`` is ``best`` or
    ``last``), a model folder written by ``celebae export --format hub``, or a Hub repository ``user/name``
    (fetched with ``huggingface_hub``, then loaded as a folder).

    A run trained with ``--ema`` gives its weight average: ``best`` is the average's best, and ``last`` the
    average at the last step (``ema=False``: the raw weights of the last step)."""
    run = run if isinstance(run, RunDir) else RunDir(hub.resolve(run))
    if run.path.is_file():
        raise CelebaeError(f"{run.path} is a file, not a run directory; pass the folder `celebae train --out` made")
    if not run.path.is_dir():
        raise CelebaeError(
            f"run directory {run.path} does not exist (a Hub repository is named {hub.HUB_PREFIX}user/name)"
        )
    if hub.is_hub_folder(run.path):
        if checkpoint != "best":
            raise CelebaeError(f"{run.path} is a model folder with one set of weights; it has no {checkpoint!r}")
        weights, settings = hub.weights_path(run.path), hub.read_settings(run.path)
    else:
        weights = run.weights(checkpoint)
        if checkpoint == "last" and ema and run.ema_weights("last").exists():
            weights = run.ema_weights("last")
        if not weights.exists():
            raise CelebaeError(
                f"{run.path} has no {weights.relative_to(run.path)}; is it a celebae run that finished an epoch?"
            )
        settings = Settings.from_dict(ckpt.read_metadata(weights)["settings"], str(weights))
    dev = resolve_device(device)
    model = build_model(settings.model, **settings.model_kwargs())
    ckpt.load_weights(model, weights)
    return TrainedRun(run, settings, model.to(dev).eval(), dev)
