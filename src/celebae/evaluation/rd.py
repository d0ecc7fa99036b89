"""``celebae rd``: the rate–distortion picture. Quality (PSNR on 0–255 images, SSIM) against bytes per image
for the autoencoders' codes, PCA and real image codecs, on the same images.

- each run's code stored at float32, float16, 8 and 4 bits per number (per-dimension ranges fitted on
  training codes): four points per run, and runs with different code sizes make a curve;
- PCA fitted on the training split, keeping k ∈ {16, …, 1024} coefficients at float32 and at 8 bits;
- JPEG, WebP and (where this Pillow has it) AVIF at the byte budgets of those points, the quality picked
  per image as the highest whose file fits; a budget that even the lowest quality misses for some image
  is reported as such, without a point.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import features

from ..data import load_split
from ..errors import CelebaeError
from ..quality.codes import RANGE_FIT_IMAGES, CodeQuantiser
from ..quality.figures import plot_rate_distortion
from ..quality.metrics import reconstruction_quality
from ..use.latent import split_images
from ..use.trained import TrainedRun, load
from .baselines import CODECS, codec_at_budget, fit_pca, project

PCA_COMPONENTS = (16, 32, 64, 128, 256, 512, 1024)
CODE_BITS = (("float32", 32), ("float16", 16), ("8-bit", 8), ("4-bit", 4))
CSV_FIELDS = ["method", "config", "bytes", "max_bytes", "psnr", "ssim", "mse", "note"]


def _row(method: str, config: str, nbytes: float, x: np.ndarray, decoded: torch.Tensor | np.ndarray) -> dict:
    """One method's point: its means over the images, and (under ``per_image``, not written out) each image's."""
    scores = reconstruction_quality(x, decoded)
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    return {"method": method, "config": config, "bytes": nbytes, **means, "per_image": scores}


def label(row: dict[str, Any]) -> str:
    """A row as people read it: ``PCA (float32), 256 components``."""
    return f"{row['method']}, {row['config']}"


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as a Markdown table (``celebae evaluate`` and the model card show the same one)."""
    lines = ["| method | bytes per image | MSE | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
    for r in rows:
        if r.get("mse") is None:
            lines.append(f"| {label(r)} | – | – | – | – ({r.get('note', '')}) |")
        else:
            lines.append(f"| {label(r)} | {r['bytes']:,.0f} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    return lines


def model_rows(
    trained: TrainedRun, x: np.ndarray, train: np.ndarray, precisions: tuple[tuple[str, int], ...] = CODE_BITS
) -> list[dict]:
    """One run's code at each of ``precisions`` (name, bits per number)."""
    codes = trained.encode_batches(x)
    train_codes = trained.encode_batches(np.asarray(train[:RANGE_FIT_IMAGES]))
    k, rows = trained.model.code_size, []
    for name, bits in precisions:
        if bits == 32:
            stored = codes
        elif bits == 16:
            stored = codes.half().float()
        else:
            stored = CodeQuantiser(train_codes, bits).round_trip(codes)
        method = f"{trained.settings.model} code ({name})"
        rows.append(_row(method, f"{k} numbers, {trained.path.name}", k * bits / 8, x, trained.decode_batches(stored)))
    return rows


def pca_rows(
    x: np.ndarray, train: np.ndarray, components: tuple[int, ...] = PCA_COMPONENTS, eight_bit: bool = True
) -> list[dict]:
    """PCA with k coefficients, k in ``components`` up to the training images' count, float32 (and 8-bit)."""
    ks = [k for k in components if k <= len(train)]
    if not ks:
        raise CelebaeError(f"PCA needs at least {min(components)} training images, there are {len(train)}")
    mean, basis = fit_pca(train, max(ks))
    all_coeffs = project(x, mean, basis)
    train_coeffs = project(np.asarray(train[:RANGE_FIT_IMAGES]), mean, basis)
    rows = []
    for k in ks:
        coeffs = all_coeffs[:, :k]  # principal components are nested: the first k of the fit
        quantiser = CodeQuantiser(train_coeffs[:, :k], 8)
        kinds = (("float32", coeffs, 4 * k), ("8-bit", quantiser.round_trip(coeffs), k))
        for name, stored, nbytes in kinds if eight_bit else kinds[:1]:
            decoded = (stored @ basis[:k] + mean).reshape(x.shape).clamp(-1, 1)
            rows.append(_row(f"PCA ({name})", f"{k} components", nbytes, x, decoded))
    return rows


def available_codecs() -> list[str]:
    return [c for c in CODECS if c != "AVIF" or features.check("avif")]


def codec_rows(x: np.ndarray, budgets: list[int], codecs: list[str] | None = None) -> list[dict]:
    """Each codec (default: every one this Pillow has) at each byte budget."""
    rows = []
    for codec in codecs or available_codecs():
        cache: dict = {}
        for budget in budgets:
            decoded, sizes = codec_at_budget(x, budget, codec, cache)
            if decoded is None:
                note = f"even the lowest quality takes {int(sizes.min())}–{int(sizes.max())} bytes"
                rows.append({"method": codec, "config": f"≤ {budget} bytes", "bytes": None, "note": note})
            else:
                row = _row(codec, f"≤ {budget} bytes", float(sizes.mean()), x, decoded)
                rows.append({**row, "max_bytes": int(sizes.max())})
    return rows


def rate_distortion(
    runs: list[str | Path],
    out_dir: str | Path,
    data: str | None = None,
    split: str = "test",
    limit: int | None = None,
    device: str = "auto",
) -> tuple[Path, Path]:
    """Write ``rd.csv`` (every point) and ``rd.png`` (PSNR and SSIM against bytes, log scale) to ``out_dir``."""
    trained = [load(r, device=device) for r in runs]
    shapes = {(t.model.image_shape, t.settings.crop) for t in trained}
    if len(shapes) > 1:
        raise CelebaeError("rd compares runs on the same images: give runs of one image size and crop")
    images = split_images(trained[0], data, split, limit)
    spec = trained[0].settings.data_spec(data)
    train = load_split(spec, "train", progress=False).images
    rows = [row for t in trained for row in model_rows(t, images.pixels, train)]
    rows += pca_rows(images.pixels, train)
    budgets = sorted({int(math.ceil(r["bytes"])) for r in rows})
    rows += codec_rows(images.pixels, budgets)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "rd.csv", "w", newline="") as f:  # per_image is not a CSV field: left out
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    title = f"{len(images.files):,} {split} images of {Path(spec.data).name} at {spec.size}×{spec.size}"
    return out_dir / "rd.csv", plot_rate_distortion(_curves(rows), out_dir / "rd.png", title)


def _curves(rows: list[dict[str, Any]]) -> dict[str, list[tuple[float, float, float]]]:
    """method → (bytes, PSNR, SSIM) points sorted by bytes."""
    curves: dict[str, list[tuple[float, float, float]]] = {}
    for r in rows:
        if r.get("bytes") is not None:
            curves.setdefault(r["method"], []).append((r["bytes"], r["psnr"], r["ssim"]))
    return {m: sorted(points) for m, points in curves.items()}
