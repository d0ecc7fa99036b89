"""``celebae evaluate``: score a trained run on a split, beside baselines whose code is no larger.

Rows, one per method: bytes per image, MSE on [-1, 1], PSNR and SSIM (means over images). The model is
scored with its float32 code and with the code rounded to float16 and to 8 bits (per-dimension ranges
from training codes).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import load_split
from ..errors import CelebaeError
from ..quality.codes import RANGE_FIT_IMAGES, CodeQuantiser, compression
from ..quality.metrics import reconstruction_quality
from ..use.trained import TrainedRun, load
from .baselines import jpeg_baseline, pca_baseline

BASELINES = ("pca", "jpeg")


class _Table:
    """The rows of an evaluation, scored against the same ``images``."""

    def __init__(self, images: np.ndarray):
        self.images, self.rows = images, []

    def add(self, method: str, nbytes: float, decoded: torch.Tensor | np.ndarray, **extra: Any) -> dict:
        scores = reconstruction_quality(self.images, decoded)
        means = {k: float(np.mean(v)) for k, v in scores.items()}
        self.rows.append({"method": method, "bytes": nbytes, **means, **extra})
        return scores

    def missing(self, method: str, note: str) -> None:
        self.rows.append({"method": method, "bytes": None, "mse": None, "psnr": None, "ssim": None, "note": note})


def _model_rows(table: _Table, trained: TrainedRun, train_images: np.ndarray, batch_size: int) -> dict:
    """The model at float32, float16 and 8-bit codes; returns the float32 code's per-image scores."""
    name, code_size = trained.settings.model, trained.model.code_size
    codes = trained.encode_batches(table.images, batch_size)
    scores = table.add(f"{name} (float32 code)", 4 * code_size, trained.decode_batches(codes, batch_size))
    table.add(f"{name} (float16 code)", 2 * code_size, trained.decode_batches(codes.half().float(), batch_size))
    quantiser = CodeQuantiser(trained.encode_batches(np.asarray(train_images[:RANGE_FIT_IMAGES]), batch_size), 8)
    table.add(f"{name} (8-bit code)", code_size, trained.decode_batches(quantiser.round_trip(codes), batch_size))
    return scores


def _baseline_rows(table: _Table, baselines: tuple[str, ...], train_images: np.ndarray, code_size: int) -> None:
    if "pca" in baselines:
        decoded = pca_baseline(train_images, table.images, code_size)
        table.add(f"PCA, {code_size} components (float32)", 4 * code_size, decoded)
    if "jpeg" in baselines:
        for budget in (4 * code_size, 2 * code_size, code_size):
            decoded, sizes = jpeg_baseline(table.images, budget)
            if decoded is None:
                table.missing(
                    f"JPEG ≤ {budget} bytes",
                    f"at quality 1 these JPEGs take {int(sizes.min())}–{int(sizes.max())} bytes",
                )
            else:
                table.add(f"JPEG ≤ {budget} bytes", float(sizes.mean()), decoded, max_bytes=int(sizes.max()))


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
    """Score a trained run on a split (the run's data, or ``data``), optionally against ``baselines``.

    Written to ``RUN/eval-<split>.json``; ``per_image`` also writes the model's per-image scores as CSV.
    """
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise CelebaeError(f"unknown baseline(s) {', '.join(sorted(unknown))}; choose from {', '.join(BASELINES)}")
    trained = load(run, checkpoint=checkpoint, device=device)
    prepared = load_split(trained.settings.data_spec(data), split)
    train_images = load_split(trained.settings.data_spec(), "train", progress=False).images
    table = _Table(np.asarray(prepared.images))
    scores = _model_rows(table, trained, train_images, batch_size)
    _baseline_rows(table, baselines, train_images, trained.model.code_size)
    first = table.rows[0]
    result = {
        "split": split,
        "checkpoint": checkpoint,
        "data": data or trained.settings.data,
        "images": len(table.images),
        **{k: first[k] for k in ("mse", "psnr", "ssim")},
        "compression": compression(trained.model.code_size, math.prod(trained.model.image_shape)),
        "methods": table.rows,
    }
    trained.run.eval_path(split).write_text(json.dumps(result, indent=1) + "\n")
    if per_image:
        with open(per_image, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "mse", "psnr", "ssim"])
            writer.writerows(zip(prepared.files, *(scores[k] for k in ("mse", "psnr", "ssim")), strict=True))
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
