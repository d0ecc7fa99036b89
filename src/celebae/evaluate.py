"""Reconstruction quality: MSE on [-1, 1] and PSNR on 0–255-rounded images."""

from __future__ import annotations

import contextlib
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.batches import Batches, to_uint8, to_unit_range
from .errors import CelebaeError

PSNR_CAP = 100.0  # dB, for a pixel-exact reconstruction (MSE 0)


@dataclass
class Scores:
    """Per-image scores of one split, in row order."""

    mse: torch.Tensor  # mean squared error on [-1, 1]
    psnr: torch.Tensor  # dB, on images rounded to 0–255

    def summary(self) -> dict[str, float]:
        return {
            "mse": float(self.mse.double().mean()),
            "psnr": float(self.psnr.double().mean()),
            "images": len(self.mse),
        }


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def psnr_uint8(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) between two uint8 batches."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return torch.where(mse > 0, 10 * torch.log10(255.0**2 / mse.clamp_min(1e-12)), torch.full_like(mse, PSNR_CAP))


def per_image_errors(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image MSE on [-1, 1] and PSNR on 0–255-rounded pixels, of inputs ``x`` and outputs ``y`` in [-1, 1]."""
    mse = (y.float() - x.float()).pow(2).flatten(1).mean(1)
    return mse, psnr_uint8(to_uint8(x), to_uint8(y))


@torch.no_grad()
def score(model: torch.nn.Module, batches: Batches) -> Scores:
    """Score every image ``batches`` serves to this process (the model is put in eval mode).

    Scoring is always fp32, whatever precision trained the model: numbers stay comparable across
    runs and machines, and equal to what ``celebae evaluate`` and ``celebae.load`` give later."""
    was_training = model.training
    model.eval()
    mse, psnr = [], []
    for x in batches.epoch(0):
        image_mse, image_psnr = per_image_errors(x, model(x))
        mse.append(image_mse)
        psnr.append(image_psnr)
    model.train(was_training)
    if not mse:  # this process's share of a small split can be empty under DDP
        return Scores(torch.empty(0), torch.empty(0))
    return Scores(torch.cat(mse).cpu(), torch.cat(psnr).cpu())


def mse_to_psnr(mse: float) -> float:
    """PSNR of an MSE measured on [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4.0 / mse) if mse > 0 else PSNR_CAP


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
    return {"mse": mse.numpy(), "psnr": psnr.numpy(), "ssim": ssim_uint8(x, y)}


def evaluate(
    run: str | Path,
    split: str = "test",
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int = 256,
    data: str | None = None,
    baselines: tuple[str, ...] = (),
    per_image: str | Path | None = None,
) -> dict[str, Any]:
    """Score a trained run on a split, optionally against baselines whose code is no larger than the model's.

    Rows, one per method: bytes per image, MSE on [-1, 1], PSNR and SSIM (means over images). The model is
    scored with its float32 code and with the code rounded to float16 and to 8 bits (per-dimension ranges
    from training codes). Written to ``RUN/eval-<split>.json``; ``per_image`` also writes the model's
    per-image scores as CSV.
    """
    from .baselines import jpeg_baseline, pca_baseline
    from .data import load_split
    from .runs import load
    from .train import compression

    unknown = set(baselines) - {"pca", "jpeg"}
    if unknown:
        raise CelebaeError(f"unknown baseline(s) {', '.join(sorted(unknown))}; choose from pca, jpeg")
    trained = load(run, checkpoint=checkpoint, device=device)
    settings = trained.settings if data is None else trained.settings.replace(data=data)
    prepared = load_split(settings, split, progress=True)
    images = np.asarray(prepared.images)
    train_images = load_split(trained.settings, "train", progress=False).images
    code_size = trained.model.code_size
    codes = trained.encode_batches(images, batch_size)
    rows: list[dict[str, Any]] = []

    def add(method: str, nbytes: float, decoded: torch.Tensor | np.ndarray, **extra: Any) -> dict[str, np.ndarray]:
        if torch.is_tensor(decoded):
            scores = quality(images, to_uint8(decoded).numpy(), decoded)
        else:
            scores = quality(images, decoded)
        rows.append({"method": method, "bytes": nbytes, **{k: float(np.mean(v)) for k, v in scores.items()}, **extra})
        return scores

    name = trained.settings.model
    model_scores = add(f"{name} (float32 code)", 4 * code_size, trained.decode_batches(codes, batch_size))
    add(f"{name} (float16 code)", 2 * code_size, trained.decode_batches(codes.half().float(), batch_size))
    train_codes = trained.encode_batches(np.asarray(train_images[:4096]), batch_size)
    lo, hi = train_codes.min(0).values, train_codes.max(0).values
    step = (hi - lo).clamp_min(1e-8) / 255
    quantised = ((codes - lo) / step).round().clamp(0, 255) * step + lo
    add(f"{name} (8-bit code)", code_size, trained.decode_batches(quantised, batch_size))
    if "pca" in baselines:
        add(f"PCA, {code_size} components (float32)", 4 * code_size, pca_baseline(train_images, images, code_size))
    if "jpeg" in baselines:
        for budget in (4 * code_size, 2 * code_size, code_size):
            decoded, sizes = jpeg_baseline(images, budget)
            if decoded is None:
                rows.append(
                    {
                        "method": f"JPEG ≤ {budget} bytes",
                        "bytes": None,
                        "mse": None,
                        "psnr": None,
                        "ssim": None,
                        "note": f"at quality 1 these JPEGs take {int(sizes.min())}–{int(sizes.max())} bytes",
                    }
                )
            else:
                add(f"JPEG ≤ {budget} bytes", float(sizes.mean()), decoded, max_bytes=int(sizes.max()))
    result = {
        "split": split,
        "checkpoint": checkpoint,
        "data": settings.data,
        "images": len(images),
        "mse": rows[0]["mse"],
        "psnr": rows[0]["psnr"],
        "ssim": rows[0]["ssim"],
        "compression": compression(code_size),
        "methods": rows,
    }
    (Path(run) / f"eval-{split}.json").write_text(json.dumps(result, indent=1) + "\n")
    if per_image:
        with open(per_image, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "mse", "psnr", "ssim"])
            writer.writerows(zip(prepared.files, *(model_scores[k] for k in ("mse", "psnr", "ssim")), strict=True))
    return result


def format_table(result: dict[str, Any]) -> str:
    """An evaluation's methods as a Markdown table, with the true compression beside the report's."""
    lines = ["| method | bytes per image | MSE | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
    for r in result["methods"]:
        if r["mse"] is None:
            lines.append(f"| {r['method']} | – | – | – | – ({r['note']}) |")
        else:
            lines.append(f"| {r['method']} | {r['bytes']:,.0f} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    c = result["compression"]
    lines.append(
        f"\nCode: {c['code_numbers']} of {c['input_numbers']:,} numbers ({c['kept_percent']:.2f} % kept, a "
        f"{c['reduction_percent']:.2f} % reduction, {c['ratio']:.0f}×; the report states "
        f"{c['report_stated_reduction_percent']} %). {result['images']:,} {result['split']} images."
    )
    return "\n".join(lines)
