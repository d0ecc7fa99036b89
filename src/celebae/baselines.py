"""Baselines at the model's code size: PCA (the best linear code) and JPEG (a real codec).

PCA is fitted on the training split by a randomized SVD that streams the memory-mapped cache in chunks,
so it scales past memory (and runs on torch's fast matrix products). JPEG picks, per image, the highest
Pillow quality whose file fits the byte budget.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from .data.batches import to_unit_range


def _batches(images: np.ndarray, size: int):
    """(start, float N×D rows in [-1, 1]) of a uint8 array, one chunk in memory at a time."""
    for start in range(0, len(images), size):
        yield start, to_unit_range(torch.from_numpy(np.array(images[start : start + size]))).reshape(-1, _dim(images))


def _dim(images: np.ndarray) -> int:
    return int(np.prod(images.shape[1:]))


def fit_pca(
    train: np.ndarray,
    components: int,
    oversample: int = 10,
    power_iterations: int = 2,
    chunk: int = 1024,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, components k×D) of a uint8 N×3×128×128 array by randomized SVD (Halko, Martinsson & Tropp 2011),
    streamed in chunks: memory holds N×(k+oversample) and (k+oversample)×D numbers, never N×D."""
    n, d = len(train), _dim(train)
    k = min(components, n)
    width = min(k + oversample, n)
    mean = sum(x.sum(0) for _, x in _batches(train, chunk)) / n
    omega = torch.randn(d, width, generator=torch.Generator().manual_seed(seed))
    y = torch.empty(n, width)
    for start, x in _batches(train, chunk):
        y[start : start + len(x)] = (x - mean) @ omega
    for _ in range(power_iterations):  # sharpen the spectrum: Y ← X Xᵀ Y, re-orthonormalised
        q, _ = torch.linalg.qr(y)
        z = torch.zeros(d, width)
        for start, x in _batches(train, chunk):
            z += (x - mean).T @ q[start : start + len(x)]
        z, _ = torch.linalg.qr(z)
        for start, x in _batches(train, chunk):
            y[start : start + len(x)] = (x - mean) @ z
    q, _ = torch.linalg.qr(y)
    b = torch.zeros(width, d)
    for start, x in _batches(train, chunk):
        b += q[start : start + len(x)].T @ (x - mean)
    # B = U S Vᵀ: the right singular vectors from the small Gram matrix B Bᵀ = U S² Uᵀ, not an SVD of B (l × D)
    evals, u = torch.linalg.eigh(b.double() @ b.double().T)
    top = torch.argsort(evals, descending=True)[:k]
    vt = (u[:, top].T @ b.double()) / evals[top].clamp_min(1e-12).sqrt()[:, None]
    return mean, vt.float()


def project(images: np.ndarray, mean: torch.Tensor, basis: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Coefficients (N×k) of uint8 images on the rows of ``basis``, one chunk of images in memory at a time."""
    return torch.cat([(x - mean) @ basis.T for _, x in _batches(images, chunk)])


def pca_baseline(train: np.ndarray, test: np.ndarray, components: int) -> torch.Tensor:
    """Reconstructions of ``test`` (float N×3×128×128 in [-1, 1]) from its first ``components`` principal
    components, fitted on ``train`` (fewer components when there are fewer training images)."""
    mean, basis = fit_pca(train, components)
    out = [((x - mean) @ basis.T) @ basis + mean for _, x in _batches(test, 1024)]
    return torch.cat(out).reshape(len(test), *test.shape[1:])


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.transpose(1, 2, 0)).save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def jpeg_baseline(images: np.ndarray, budget: int) -> tuple[np.ndarray | None, np.ndarray]:
    """(decoded uint8 images, file sizes) with each image at the highest quality (1–95) whose file is at most
    ``budget`` bytes; (None, sizes at quality 1) when even quality 1 does not fit for some image."""
    decoded, sizes = [], []
    for image in images:
        lo, hi, best = 1, 95, None
        while lo <= hi:  # file size grows with quality: binary search for the largest that fits
            q = (lo + hi) // 2
            data = jpeg_bytes(image, q)
            if len(data) <= budget:
                best, lo = data, q + 1
            else:
                hi = q - 1
        if best is None:
            floor = np.array([len(jpeg_bytes(im, 1)) for im in images])
            return None, floor
        decoded.append(np.asarray(Image.open(io.BytesIO(best)).convert("RGB")).transpose(2, 0, 1))
        sizes.append(len(best))
    return np.stack(decoded), np.array(sizes)
