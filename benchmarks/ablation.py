"""What each of celebae's speed choices buys: the default training step against the same step with one
choice switched off, side by side in one process.

    python benchmarks/ablation.py [--models conv:16,conv:64] [--rounds 4] [--seconds 3]

The variants run in interleaved rounds (A B C … A B C …) and each reports its best round, so a
neighbour's load on a shared machine hits all of them alike. Data are random images already on the
device: this isolates the step (``throughput.py`` measures the whole pipeline against the authors').
The allocator tuning is process-wide and cannot be undone, so it is on throughout; throughput.py's
baseline runs before it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from throughput import BATCH, MSE, authors_model

from celebae.models import build_model
from celebae.training.device import (
    adam,
    default_channels_last,
    default_precision,
    resolve_device,
    synchronize,
    tune_allocator,
)
from celebae.training.flops import training_flops_per_image
from celebae.training.loop import train_step


def make_step(name: str, nf: int, device: torch.device, change: str) -> Callable[[], None]:
    """One training step of the default path, or of the default path with ``change`` switched off."""
    torch.manual_seed(0)
    precision = "fp32" if change == "fp32" else default_precision(device)
    channels_last = change != "contiguous" and default_channels_last(device, precision)
    model = (authors_model(name, nf) if change == "plain-code-layers" else build_model(name, nf=nf)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if change == "loop-adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, foreach=False)
    else:
        optimizer = adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999))
    x = torch.rand(BATCH, 3, 128, 128, device=device) * 2 - 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return lambda: train_step(model, optimizer, x, MSE, precision, device)


def images_per_s(step: Callable[[], None], seconds: float, device: torch.device) -> float:
    step()  # untimed: the allocator settles, lazy initialisation happens
    synchronize(device)
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    synchronize(device)
    return n * BATCH / (time.perf_counter() - t0)


CHANGES = ("default", "plain-code-layers", "loop-adam", "contiguous", "fp32")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="conv:16,conv:64", help="name:nf pairs, comma-separated")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per variant per round")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    tune_allocator()
    print(f"device {device}, batch {BATCH}, default precision {default_precision(device)}, best of {args.rounds}")
    print("| model | variant | img/s | default ÷ variant | GFLOP/s |")
    print("|---|---|---|---|---|")
    for spec in args.models.split(","):
        name, nf = spec.split(":")[0], int(spec.split(":")[1])
        steps = {change: make_step(name, nf, device, change) for change in CHANGES}
        best = dict.fromkeys(CHANGES, 0.0)
        for _ in range(args.rounds):
            for change, step in steps.items():
                best[change] = max(best[change], images_per_s(step, args.seconds, device))
        flops = training_flops_per_image(build_model(name, nf=nf))
        for change in CHANGES:
            print(
                f"| {name} nf={nf} | {change} | {best[change]:.1f} | {best['default'] / best[change]:.2f}× | "
                f"{best[change] * flops / 1e9:.0f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
