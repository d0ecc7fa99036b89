"""Baselines at the model's code size: PCA (the best linear code) and real codecs (JPEG, WebP, AVIF).

PCA is fitted on the training split by a randomized SVD that streams the memory-mapped cache in chunks,
so it scales past memory (and runs on torch's fast matrix products). A codec picks, per image, the highest
Pillow quality whose file fits the byte budget.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from ..data.batches import to_unit_range


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


CODECS = {"JPEG": ("JPEG", 1, 95), "WebP": ("WEBP", 0, 100), "AVIF": ("AVIF", 0, 100)}  # format, qualities
_OPTIONS = {"JPEG": {"optimize": True}, "WEBP": {"method": 4}, "AVIF": {"speed": 6}}


def encode_image(image: np.ndarray, fmt: str, quality: int) -> bytes:
    """A uint8 3×H×W image as a ``fmt`` file (Pillow's format name) at ``quality``."""
    buf = io.BytesIO()
    Image.fromarray(image.transpose(1, 2, 0)).save(buf, fmt, quality=quality, **_OPTIONS[fmt])
    return buf.getvalue()


def codec_at_budget(
    images: np.ndarray, budget: int, codec: str = "JPEG", cache: dict | None = None
) -> tuple[np.ndarray | None, np.ndarray]:
    """(decoded uint8 images, file sizes) with each image at the highest quality whose ``codec`` file is at
    most ``budget`` bytes; (None, sizes at the lowest quality) when even that misses for some image.
    ``cache`` keeps the files encoded so far, by (image, quality), for the next budget."""
    fmt, low_q, high_q = CODECS[codec]
    cache = {} if cache is None else cache

    def file(i: int, q: int) -> bytes:
        if (i, q) not in cache:
            cache[i, q] = encode_image(images[i], fmt, q)
        return cache[i, q]

    decoded, sizes = [], []
    for i in range(len(images)):
        lo, hi, best = low_q, high_q, None
        while lo <= hi:  # file size grows with quality: binary search for the largest that fits
            q = (lo + hi) // 2
            if len(file(i, q)) <= budget:
                best, lo = file(i, q), q + 1
            else:
                hi = q - 1
        if best is None:
            return None, np.array([len(file(j, low_q)) for j in range(len(images))])
        decoded.append(np.asarray(Image.open(io.BytesIO(best)).convert("RGB")).transpose(2, 0, 1))
        sizes.append(len(best))
    return np.stack(decoded), np.array(sizes)
