"""Augmentation of training batches on the device: one seeded draw per batch, no per-image Python.

    flip        each image mirrored left–right with probability ½ (aligned faces stay faces)
    flip-shift  flip, then each image moved by up to ``shift`` pixels in x and y (edge pixels repeated)

The draw for a batch is a pure function of (seed, epoch, batch, rank), so a resumed run replays it with no
state to save. Validation and test batches are never augmented.
"""

from __future__ import annotations

import torch

AUGMENTS = ("none", "flip", "flip-shift")


def batch_generator(device: torch.device, seed: int, epoch: int, batch: int, rank: int) -> torch.Generator:
    """The generator of one batch's draw, on the batch's device."""
    mixed = ((seed * 1_000_003 + epoch) * 1_000_033 + batch) * 101 + rank
    return torch.Generator(device=device).manual_seed(mixed % (2**63))


def augment(x: torch.Tensor, kind: str, shift: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N×C×S×S float on its device) augmented as ``kind`` says."""
    if kind == "none":
        return x
    n, c, h, w = x.shape
    flip = torch.rand(n, generator=generator, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if kind == "flip-shift" and shift > 0:
        dy, dx = torch.randint(-shift, shift + 1, (2, n), generator=generator, device=x.device)
        rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None]).clamp_(0, h - 1)  # N×H
        cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None]).clamp_(0, w - 1)  # N×W
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(c, device=x.device)[None, :, None, None]
        x = x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
    return x
