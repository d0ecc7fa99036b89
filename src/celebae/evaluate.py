"""Reconstruction quality: MSE on [-1, 1] and PSNR on 0–255-rounded images."""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .data.batches import Batches, place, to_uint8

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


@torch.no_grad()
def score(model: torch.nn.Module, batches: Batches, precision: str = "fp32") -> Scores:
    """Score every image ``batches`` serves to this process (the model is put in eval mode)."""
    was_training = model.training
    model.eval()
    mse, psnr = [], []
    for x in batches.epoch(0):
        with autocast(x.device, precision):
            y = model(x)
        y = y.float()
        mse.append((y - x).pow(2).flatten(1).mean(1))
        psnr.append(psnr_uint8(to_uint8(x), to_uint8(y)))
    model.train(was_training)
    if not mse:  # this process's share of a small split can be empty under DDP
        return Scores(torch.empty(0), torch.empty(0))
    return Scores(torch.cat(mse).cpu(), torch.cat(psnr).cpu())


def mse_to_psnr(mse: float) -> float:
    """PSNR of an MSE measured on [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4.0 / mse) if mse > 0 else PSNR_CAP


def evaluate(
    run: str | Path,
    split: str = "test",
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int = 256,
    data: str | None = None,
) -> dict[str, float]:
    """Score a trained run on a split of its data (or of ``data``); writes ``eval-<split>.json`` in the run."""
    from .data import load_split
    from .runs import load

    trained = load(run, checkpoint=checkpoint, device=device)
    settings = trained.settings if data is None else trained.settings.replace(data=data)
    prepared = load_split(settings, split, progress=True)
    batches = Batches(place(prepared.images, trained.device), batch_size, trained.device)
    result = {
        "split": split,
        "checkpoint": checkpoint,
        "data": settings.data,
        **score(trained.model, batches, trained.settings.precision).summary(),
    }
    (Path(run) / f"eval-{split}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
