"""Per-image reconstruction quality: MSE on [-1, 1], PSNR on 0–255-rounded images, SSIM; scores of a split.

Scoring is always fp32, whatever precision trained the model: numbers stay comparable across runs and
machines, and equal to what ``celebae evaluate`` and ``celebae.load`` give later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.batches import Batches, to_uint8, to_unit_range
from ..errors import CelebaeError
from .losses import Loss

PSNR_CAP = 100.0  # dB, for a pixel-exact reconstruction (MSE 0)


@dataclass
class Scores:
    """Per-image scores of one split, in row order."""

    mse: torch.Tensor  # mean squared error on [-1, 1]
    psnr: torch.Tensor  # dB, on images rounded to 0–255
    loss: torch.Tensor  # the run's training loss, per image (the MSE itself for MSE runs)


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) between two uint8 batches."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return torch.where(mse > 0, 10 * torch.log10(255.0**2 / mse.clamp_min(1e-12)), torch.full_like(mse, PSNR_CAP))


def per_image_errors(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image MSE on [-1, 1] and PSNR on 0–255-rounded pixels, of inputs ``x`` and outputs ``y`` in [-1, 1]."""
    mse = (y.float() - x.float()).pow(2).flatten(1).mean(1)
    return mse, psnr_uint8(to_uint8(x), to_uint8(y))


@torch.no_grad()
def score(model: torch.nn.Module, batches: Batches, loss: Loss) -> Scores:
    """Score every image ``batches`` serves to this process (the model is put in eval mode, then back)."""
    was_training = model.training
    model.eval()
    mse, psnr, losses = [], [], []
    for x in batches.epoch(0):
        y = model(x)
        image_mse, image_psnr = per_image_errors(x, y)
        mse.append(image_mse)
        psnr.append(image_psnr)
        losses.append(loss.per_image(y.float(), x))
    model.train(was_training)
    if not mse:  # this process's share of a small split can be empty under DDP
        return Scores(torch.empty(0), torch.empty(0), torch.empty(0))
    scores = Scores(torch.cat(mse).cpu(), torch.cat(psnr).cpu(), torch.cat(losses).cpu())
    require_finite(scores.mse, scores.loss)
    return scores


def require_finite(*per_image: torch.Tensor) -> None:
    """A NaN or infinity anywhere in scoring is an error, never a mean printed beside finite numbers."""
    bad = sum(int((~torch.isfinite(t)).sum()) for t in per_image)
    if bad:
        raise CelebaeError(
            f"scoring met {bad} non-finite value(s) (NaN or infinity): the model's outputs are not finite, so its "
            "weights are damaged or training diverged (try a lower --lr)"
        )


def ssim_uint8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image SSIM (scikit-image, Gaussian-weighted as Wang et al.) of two uint8 N×3×H×W batches on [0, 1]."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        raise CelebaeError("SSIM needs scikit-image: pip install 'celebae[eval]'") from None
    return np.array(
        [
            structural_similarity(
                x.transpose(1, 2, 0) / 255.0,
                y.transpose(1, 2, 0) / 255.0,
                channel_axis=2,
                data_range=1.0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for x, y in zip(a, b, strict=True)
        ]
    )


def quality(x: np.ndarray, y: np.ndarray, y_float: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Per-image MSE on [-1, 1] (of ``y_float`` when the method has unrounded output), PSNR and SSIM."""
    out = y_float.cpu() if y_float is not None else to_unit_range(torch.from_numpy(np.array(y)))
    mse, psnr = per_image_errors(to_unit_range(torch.from_numpy(np.array(x))), out)
    require_finite(mse)
    return {"mse": mse.numpy(), "psnr": psnr.numpy(), "ssim": ssim_uint8(x, y)}


def reconstruction_quality(x: np.ndarray, decoded: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """``quality`` of any method's output: float reconstructions in [-1, 1] (MSE before rounding) or uint8."""
    if torch.is_tensor(decoded):
        return quality(x, to_uint8(decoded).numpy(), decoded)
    return quality(x, decoded)


def auroc_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC of each row (resample) of scores ``p`` against labels ``y``: the Mann–Whitney U over n₀·n₁, from
    scipy's ranks (equal to scikit-learn's roc_auc_score, ties included; vectorised over resamples)."""
    from scipy.stats import rankdata  # scipy comes with scikit-learn (the apps extra)

    ranks = rankdata(p, axis=1)
    n1 = y.sum(1)
    n0 = y.shape[1] - n1
    return ((ranks * y).sum(1) - n1 * (n1 + 1) / 2) / np.maximum(n0 * n1, 1)


def balanced_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Balanced accuracy (mean of the two classes' recalls) of each row at the 0.5 probability threshold."""
    hit = (p >= 0.5) == y.astype(bool)
    return ((hit * y).sum(1) / np.maximum(y.sum(1), 1) + (hit * (1 - y)).sum(1) / np.maximum((1 - y).sum(1), 1)) / 2
