"""Training losses, by name: ``--loss mse`` (the report's), ``l1``, ``ssim``.

Each loss takes reconstructions ``y`` and inputs ``x`` in [-1, 1] (float32) and gives the batch's loss
(what training minimises) and, per image, the same quantity (what validation reports under the loss's
name). Whatever a run minimises, it is also scored by MSE and PSNR, so runs compare on one scale.
To add a loss, write its two functions and register them here; ``tests/test_losses.py`` checks every
registered loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import CelebaeError


@dataclass(frozen=True)
class Loss:
    name: str
    description: str
    batch: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (y, x) → scalar
    per_image: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (y, x) → N


LOSSES: dict[str, Loss] = {}


def register_loss(name: str, description: str, per_image: Callable, batch: Callable | None = None) -> Loss:
    """Register a loss; ``batch`` defaults to the mean of ``per_image``."""
    loss = Loss(name, description, batch or (lambda y, x: per_image(y, x).mean()), per_image)
    LOSSES[name] = loss
    return loss


def get_loss(name: str) -> Loss:
    if name not in LOSSES:
        raise CelebaeError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]


def _ssim_per_image(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    from pytorch_msssim import ssim  # Gaussian window 11, σ 1.5, as scikit-image's SSIM that scores runs

    return 1 - ssim((y + 1) / 2, (x + 1) / 2, data_range=1.0, size_average=False)


register_loss(
    "mse",
    "mean squared error on [-1, 1] (the report's)",
    per_image=lambda y, x: (y - x).pow(2).flatten(1).mean(1),
    batch=F.mse_loss,
)
register_loss(
    "l1",
    "mean absolute error on [-1, 1]",
    per_image=lambda y, x: (y - x).abs().flatten(1).mean(1),
    batch=F.l1_loss,
)
register_loss("ssim", "1 − SSIM on [0, 1] images (Gaussian window 11, σ 1.5)", per_image=_ssim_per_image)
