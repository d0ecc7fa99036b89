"""``celebae evaluate``: a run scored on a split, beside baselines whose code is no larger: the rate–distortion
rows (``rd``) at the code's own budgets.

Rows, one per method: bytes per image, MSE on [-1, 1], PSNR and SSIM (means over images). The model is
scored with its float32 code and with the code stored at float16 and at 8 bits (per-dimension ranges from
training codes); PCA keeps as many coefficients as the code has numbers (float32); JPEG gets the code's
bytes at float32, float16 and 8 bits.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..data import load_split
from ..errors import CelebaeError
from ..quality.codes import compression
from ..use.trained import load
from .rd import CODE_BITS, codec_rows, markdown_table, model_rows, pca_rows

BASELINES = ("pca", "jpeg")


def evaluate(
    run: str | Path,
    split: str = "test",
    checkpoint: str = "best",
    device: str = "auto",
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
    x, k = np.asarray(prepared.images), trained.model.code_size
    rows = model_rows(trained, x, train_images, CODE_BITS[:3])
    if "pca" in baselines:  # as many components as the code has numbers, or as the training images allow
        rows += pca_rows(x, train_images, (min(k, len(train_images)),), eight_bit=False)
    if "jpeg" in baselines:
        rows += codec_rows(x, [4 * k, 2 * k, k], ["JPEG"])
    scores = rows[0].pop("per_image")
    for r in rows:
        r.pop("per_image", None)
    result = {
        "split": split,
        "checkpoint": checkpoint,
        "data": data or trained.settings.data,
        "images": len(x),
        **{key: rows[0][key] for key in ("mse", "psnr", "ssim")},
        "compression": compression(k, math.prod(trained.model.image_shape)),
        "methods": rows,
    }
    trained.run.eval_path(split).write_text(json.dumps(result, indent=1) + "\n")
    if per_image:
        with open(per_image, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "mse", "psnr", "ssim"])
            writer.writerows(zip(prepared.files, *(scores[key] for key in ("mse", "psnr", "ssim")), strict=True))
    return result


def format_table(result: dict[str, Any]) -> str:
    """An evaluation's methods as a Markdown table, with the true compression beside the report's."""
    c = result["compression"]
    return "\n".join(markdown_table(result["methods"])) + (
        f"\n\nCode: {c['code_numbers']} of {c['input_numbers']:,} numbers ({c['kept_percent']:.2f} % kept, a "
        f"{c['reduction_percent']:.2f} % reduction, {c['ratio']:.0f}×; the report states "
        f"{c['report_stated_reduction_percent']} %). {result['images']:,} {result['split']} images."
    )
