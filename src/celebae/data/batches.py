"""Serve a prepared uint8 split as float batches in [-1, 1], on the device that trains.

The whole split lives in memory (on the GPU when it fits), each epoch is a
seeded permutation, and a batch is one index gather plus one conversion on the
device: no per-image Python, no worker processes, no JPEG in the loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [-1, 1]."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255], rounded (how images are saved and how PSNR is scored)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8)


def place(images: np.ndarray, device: torch.device, on_device: bool | None = None) -> torch.Tensor:
    """Copy a prepared split into memory where batches are cut from: on a GPU, the GPU itself
    (``on_device``; by default when the split fits in half its free memory), else pinned host memory
    (so batch copies overlap compute)."""
    host = torch.from_numpy(np.array(images))  # a private, writable copy (memmaps are read-only)
    if device.type == "cuda":
        if on_device is None:
            on_device = host.numel() < torch.cuda.mem_get_info(device)[0] // 2
        return host.to(device) if on_device else host.pin_memory()
    return host if device.type == "cpu" else host.to(device)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch ``epoch``: a pure function of (seed, epoch), so a resumed run replays it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class Batches:
    """Batches of one split. With ``world`` > 1 each rank takes its slice of every global batch.

    ``batch_size`` is the global batch; each rank gets ``batch_size // world`` images of it.
    Training drops the last partial batch (equal steps on every rank, BatchNorm never sees a batch of one).
    """

    def __init__(
        self,
        data: torch.Tensor,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world: int = 1,
        channels_last: bool = False,
    ):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} does not split evenly over {world} processes")
        self.data, self.device = data, device
        self.batch_size, self.local = batch_size, batch_size // world
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world = rank, world
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def indices(self, epoch: int = 0) -> torch.Tensor:
        n = len(self.data)
        return epoch_permutation(n, self.seed, epoch) if self.shuffle else torch.arange(n)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[torch.Tensor]:
        """Float batches of ``epoch`` from batch number ``start`` on (to resume mid-epoch)."""
        order = self.indices(epoch).to(self.data.device)
        for b in range(start, len(self)):
            lo = b * self.batch_size + self.rank * self.local
            idx = order[lo : min(lo + self.local, (b + 1) * self.batch_size, len(order))]
            if len(idx) == 0:
                continue
            x = self.data.index_select(0, idx).to(self.device, non_blocking=True)
            yield to_unit_range(x).contiguous(memory_format=self.memory_format)
