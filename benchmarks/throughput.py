"""Training throughput: the authors' way against celebae's default path, side by side in one process.

    python benchmarks/throughput.py [--data ../shared/data/celeba-sample] [--steps 8] [--write]

(a) baseline, as the authors wrote it: a DataLoader whose workers open each JPEG with PIL, resize,
    centre-crop and normalise it per image; fp32, eager, contiguous layout, glibc's default allocator.
(b) celebae: the split decoded once into the uint8 cache, held in memory, batches gathered by index
    and converted on the device; the default precision and layout for the machine, allocator tuned.

For `conv` nf 16/32/64, `pool` (nf 16) and `lincode` (nf 16) at batch 64 it prints images/s of both, the ratio, the
achieved FLOP/s and its fraction of a matmul peak measured on the spot; it also times preparation
(JPEGs decoded into the cache per second) and the peak memory of one training step. ``--write``
records the table in benchmarks/RESULTS.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from celebae.data import Batches, open_source, place, prepare_split
from celebae.data.prepare import available_cores
from celebae.models import CodeConv2d, CodeConvTranspose2d, build_model
from celebae.quality.losses import get_loss
from celebae.training.device import (
    adam,
    default_channels_last,
    default_precision,
    resolve_device,
    synchronize,
    tune_allocator,
)
from celebae.training.flops import matmul_peak_flops, training_flops_per_image
from celebae.training.loop import train_step

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "celeba-sample"
CASES = [("conv", 16), ("conv", 32), ("conv", 64), ("pool", 16), ("lincode", 16)]
BATCH = 64


class AuthorsCelebA(torch.utils.data.Dataset):
    """The authors' input pipeline: PIL per image, Resize(128) + CenterCrop(128) + ToTensor + Normalize."""

    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = Image.open(self.files[i]).convert("RGB")
        w, h = img.size
        img = img.resize((128, int(128 * h / w)) if w <= h else (int(128 * w / h), 128), Image.BILINEAR)
        w, h = img.size
        top, left = int(round((h - 128) / 2.0)), int(round((w - 128) / 2.0))
        img = img.crop((left, top, left + 128, top + 128))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - 0.5) / 0.5


MSE = get_loss("mse")


class Timer:
    """Counts steps after ``warmup`` until at least ``steps`` steps and ``seconds`` have passed."""

    def __init__(self, steps: int, warmup: int, seconds: float, device: torch.device):
        self.steps, self.warmup, self.seconds, self.device = steps, warmup, seconds, device
        self.done, self.t0 = 0, 0.0

    def tick(self) -> bool:
        """Call after each step; False when enough has been timed."""
        self.done += 1
        if self.done == self.warmup:
            synchronize(self.device)
            self.t0 = time.perf_counter()
        timed = self.done - self.warmup
        return not (timed >= self.steps and time.perf_counter() - self.t0 >= self.seconds)

    def images_per_s(self) -> float:
        synchronize(self.device)
        return (self.done - self.warmup) * BATCH / (time.perf_counter() - self.t0)


def authors_model(name: str, nf: int) -> torch.nn.Module:
    """The same network with every layer a plain ``nn.Conv2d``/``nn.ConvTranspose2d``, as the authors wrote it
    (celebae computes the two code layers as the matrix products they are)."""
    model = build_model(name, nf=nf)
    for module in model.modules():
        if isinstance(module, CodeConv2d):
            module.__class__ = nn.Conv2d
        elif isinstance(module, CodeConvTranspose2d):
            module.__class__ = nn.ConvTranspose2d
    return model


def time_baseline(name: str, nf: int, files: list[Path], timer: Timer, device: torch.device) -> float:
    torch.manual_seed(0)
    model = authors_model(name, nf).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999))
    loader = torch.utils.data.DataLoader(
        AuthorsCelebA(files), batch_size=BATCH, shuffle=True, drop_last=True, num_workers=4
    )  # the authors' default
    running = True
    while running:
        batches = iter(loader)
        for x in batches:
            train_step(model, optimizer, x.to(device), MSE, "fp32", device)
            if not (running := timer.tick()):
                break
        del batches  # stops the workers before anything else is timed
    return timer.images_per_s()


def time_celebae(name: str, nf: int, images: np.ndarray, timer: Timer, device: torch.device, precision: str) -> float:
    torch.manual_seed(0)
    channels_last = default_channels_last(device, precision)
    model = build_model(name, nf=nf).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999))
    batches = Batches(place(images, device), BATCH, device, shuffle=True, drop_last=True, channels_last=channels_last)
    running, epoch = True, 0
    while running:
        for x in batches.epoch(epoch):
            train_step(model, optimizer, x, MSE, precision, device)
            if not (running := timer.tick()):
                break
        epoch += 1
    return timer.images_per_s()


def fixed_batch_step(name: str, nf: int, device: torch.device, precision: str) -> Callable[[], torch.Tensor]:
    """celebae's default training step on one random batch already on the device."""
    layout = torch.channels_last if default_channels_last(device, precision) else torch.contiguous_format
    model = build_model(name, nf=nf).to(device).to(memory_format=layout)
    optimizer = adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999))
    x = torch.rand(BATCH, 3, 128, 128, device=device).contiguous(memory_format=layout)
    return lambda: train_step(model, optimizer, x, MSE, precision, device)


def step_memory(name: str, nf: int, device: torch.device, precision: str) -> float:
    """Peak bytes of a training step: the GPU allocator's peak, or on a CPU the resident high-water mark of
    a fresh process (nothing else in its memory) above where it stood before the model existed."""
    if device.type != "cuda":
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(_cpu_step_memory, (name, nf, precision))
    step = fixed_batch_step(name, nf, device, precision)
    step()
    torch.cuda.reset_peak_memory_stats(device)
    step()
    return float(torch.cuda.max_memory_allocated(device))


def _cpu_step_memory(name: str, nf: int, precision: str) -> float:

    def vm(key: str) -> float:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key))
        return float(line.split()[1]) * 1024

    tune_allocator()
    before = vm("VmRSS")
    step = fixed_batch_step(name, nf, torch.device("cpu"), precision)
    for _ in range(2):
        step()
    return vm("VmHWM") - before


def time_preparation(data: Path, cache: Path) -> dict[str, float]:
    source = open_source(data)
    items = source.splits["train"]
    out = {}
    for workers in (1, available_cores()):
        t0 = time.perf_counter()
        prepare_split(source, "train", cache_dir=cache / f"w{workers}", workers=workers, progress=False)
        out[workers] = len(items) / (time.perf_counter() - t0)
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    text = f"{cpu}, {available_cores()} cores, torch {torch.__version__}, Python {platform.python_version()}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE, help="a CelebA folder (the real sample by default)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement, at least")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement, at least")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--repeats", type=int, default=2, help="best of this many measurements (shared machines are noisy)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if not (args.data / "img_align_celeba").is_dir():
        print(f"no CelebA images at {args.data}; pass --data (the project's shared sample is the default)")
        return 2
    device = resolve_device(args.device)
    source = open_source(args.data)
    files = [source.root / f for f in source.splits["train"]]

    # (a) first, while glibc still has its default settings
    def timer() -> Timer:
        return Timer(args.steps, args.warmup, args.seconds, device)

    baseline = {case: max(time_baseline(*case, files, timer(), device) for _ in range(args.repeats)) for case in CASES}
    # A training process starts with an empty heap; hand the baseline's leftovers back to the system so
    # that (b) does not run in their fragments (it measured 5-10 % slower without this).
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    tuned = tune_allocator()
    precision = default_precision(device)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare_split(source, "train", cache_dir=tmp, progress=False)
        ours = {
            case: max(time_celebae(*case, prepared.images, timer(), device, precision) for _ in range(args.repeats))
            for case in CASES
        }
        prep = time_preparation(args.data, Path(tmp))
    peak32 = matmul_peak_flops(device, torch.float32)
    peak = matmul_peak_flops(device, torch.bfloat16) if precision == "bf16" else peak32

    lines = [
        f"Machine: {machine()}; batch {BATCH}; best of {args.repeats} measurements, each ≥ {args.steps} steps and "
        f"≥ {args.seconds:g} s after {args.warmup} warm-up steps; "
        f"celebae path: {precision}{' + channels_last' if default_channels_last(device, precision) else ''}, "
        f"allocator tuned: {tuned}; measured matmul peak: {peak32 / 1e9:.0f} GFLOP/s fp32"
        + (f", {peak / 1e9:.0f} GFLOP/s bf16" if precision == "bf16" else ""),
        "",
        "| model | baseline img/s | celebae img/s | ratio | celebae GFLOP/s | of peak | peak step memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for (name, nf), speed in ours.items():
        memory = step_memory(name, nf, device, precision)
        flops = training_flops_per_image(build_model(name, nf=nf)) * speed
        lines.append(
            f"| {name} nf={nf} | {baseline[(name, nf)]:.1f} | {speed:.1f} | "
            f"{speed / baseline[(name, nf)]:.2f}× | {flops / 1e9:.0f} | {flops / peak:.0%} | "
            f"{memory / 2**20:.0f} MiB |"
        )
    cores = available_cores()
    per_core = prep[1]
    lines += [
        "",
        f"Preparation ({len(files)} CelebA JPEGs → uint8 cache): {prep[1]:.0f} img/s on 1 core, "
        f"{prep[cores]:.0f} img/s on {cores}. Whole CelebA (202,599) on 8 cores, extrapolated from the "
        f"per-core rate assuming linear scaling: {202_599 / (8 * per_core) / 60:.1f} min.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(ROOT / "benchmarks" / "RESULTS.md", f"{device.type.upper()} ({date.today()})", text)
    return 0


def write_section(path: Path, heading: str, text: str) -> None:
    """Replace (or add) this kind of device's ``## `` section of RESULTS.md, keeping the others."""
    kind = heading.split()[0]
    sections: dict[str, list[str]] = {}
    current = None
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("## "):
                current = line[3:]
                sections[current] = []
            elif current:
                sections[current].append(line)
    sections = {h: body for h, body in sections.items() if h.split()[0] != kind}
    sections[heading] = [text]
    body = "\n".join(f"## {h}\n\n" + "\n".join(lines).strip("\n") + "\n" for h, lines in sorted(sections.items()))
    path.write_text(
        "# Training throughput: the authors' pipeline against celebae's\n\n"
        "Written by `python benchmarks/throughput.py --write`, one section per kind of device.\n\n" + body
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
