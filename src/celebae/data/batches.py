"""Serve a prepared uint8 split as float batches in [-1, 1], on the device that trains.

A split is never copied whole into this process's private memory. Batches are gathered from the split's
memory map, whose pages belong to the OS's page cache and are shared by every process on the machine (the
ranks of a torchrun job, the runs of a sweep); a split larger than memory streams from disk. On a GPU the
split is copied onto the device, in chunks, when it fits in half the free memory; otherwise it streams too.
Each epoch is a seeded permutation, and a batch is one index gather plus one conversion on the device: no
per-image Python, no worker processes, no JPEG in the loop. A background thread gathers the next batches
(into pinned memory for a GPU) while the current step runs::

    memmap (page cache) ─gather(permutation[b])→ uint8 batch (pinned) ─copy→ device ─to float→ x in [-1, 1]
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from .augment import augment, batch_generator


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [-1, 1]."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255], rounded (how images are saved and how PSNR is scored)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8)


PREFETCH = 2  # batches gathered ahead of the step that uses them
CHUNK_BYTES = 256 << 20  # host → GPU copies of a split go in pieces this size


def host_view(images: np.ndarray) -> torch.Tensor:
    """A tensor over ``images`` without a copy (a memory map stays a memory map). Batches only read it."""
    with warnings.catch_warnings():  # a read-only map: torch warns that writing would be undefined; we never do
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(images)


def place(images: np.ndarray, device: torch.device, on_device: bool | None = None) -> torch.Tensor:
    """Where batches are cut from: on a GPU the GPU itself (``on_device``; by default when the split fits in
    half its free memory), copied from the map in chunks; otherwise the memory map, read as batches are
    gathered (no private copy of the split on any device)."""
    host = host_view(images)
    if device.type != "cpu":
        if on_device is None:
            on_device = device.type != "cuda" or host.numel() < torch.cuda.mem_get_info(device)[0] // 2
        if on_device:
            out = torch.empty(host.shape, dtype=host.dtype, device=device)
            rows = max(1, CHUNK_BYTES // max(1, host[0].numel()))
            for s in range(0, len(host), rows):
                out[s : s + rows].copy_(host[s : s + rows])
            return out
    return host


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
        augment: tuple[str, int] | None = None,
    ):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} does not split evenly over {world} processes")
        self.data, self.device = data, device
        self.batch_size, self.local = batch_size, batch_size // world
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world = rank, world
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.augment = augment if augment and augment[0] != "none" else None  # (kind, shift): data.augment

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def indices(self, epoch: int = 0) -> torch.Tensor:
        n = len(self.data)
        return epoch_permutation(n, self.seed, epoch) if self.shuffle else torch.arange(n)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[torch.Tensor]:
        """Float batches of ``epoch`` from batch number ``start`` on (to resume mid-epoch)."""
        order = self.indices(epoch).to(self.data.device)
        picks = [(b, self._pick(order, b)) for b in range(start, len(self))]
        picks = [(b, idx) for b, idx in picks if len(idx)]
        if self.data.device.type != "cpu":  # on the GPU already: a gather there, nothing to overlap
            for b, idx in picks:
                yield self._convert(self.data.index_select(0, idx), epoch, b)
            return
        pinned = self.device.type == "cuda"
        with ThreadPoolExecutor(1, thread_name_prefix="celebae-gather") as pool:
            ahead: list[Future] = [pool.submit(self._gather, idx, pinned) for _, idx in picks[:PREFETCH]]
            try:
                for i, (b, _) in enumerate(picks):
                    if i + PREFETCH < len(picks):
                        ahead.append(pool.submit(self._gather, picks[i + PREFETCH][1], pinned))
                    yield self._convert(ahead[i].result().to(self.device, non_blocking=pinned), epoch, b)
                    ahead[i] = None  # the batch is the step's now
            finally:
                for future in ahead:
                    if future is not None:
                        future.cancel()

    def _pick(self, order: torch.Tensor, b: int) -> torch.Tensor:
        lo = b * self.batch_size + self.rank * self.local
        return order[lo : min(lo + self.local, (b + 1) * self.batch_size, len(order))]

    def _gather(self, idx: torch.Tensor, pinned: bool) -> torch.Tensor:
        """Rows ``idx`` of the split read from the memory map (the GIL is released while pages are read)."""
        out = torch.empty((len(idx), *self.data.shape[1:]), dtype=self.data.dtype, pin_memory=pinned)
        return torch.index_select(self.data, 0, idx, out=out)

    def _convert(self, x: torch.Tensor, epoch: int, b: int) -> torch.Tensor:
        x = to_unit_range(x)
        if self.augment is not None:
            draw = batch_generator(x.device, self.seed, epoch, b, self.rank)
            x = augment(x, *self.augment, draw)
        return x.contiguous(memory_format=self.memory_format)
