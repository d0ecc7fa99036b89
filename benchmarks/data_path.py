"""The data path's cost: batches gathered from a private copy of the split (before) against batches gathered
from its memory map by the prefetch thread (now), the same training step, interleaved in one process.

    python benchmarks/data_path.py [--rounds 4] [--steps 40]

conv nf 16, batch 64, the machine's default precision and layout, the sample's train split. Prints each
side's images/s per round, the best of each and their ratio.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from celebae.data import Batches, open_source, prepare_split
from celebae.quality.losses import get_loss
from celebae.training.device import resolve_precision, tune_allocator
from celebae.training.distributed import Processes
from celebae.training.loop import build_network, train_step
from celebae.training.settings import Settings

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-sample"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    tune_allocator()
    split = prepare_split(open_source(str(SAMPLE)), "train", progress=False).images
    device = torch.device("cpu")
    precision, channels_last = resolve_precision("auto", None, device)
    settings = Settings(model="conv", nf=16, batch_size=64, precision=precision, channels_last=channels_last)
    net, loss = build_network(settings, device, Processes()), get_loss("mse")

    def images_per_s(data: torch.Tensor) -> float:
        batches = Batches(data, 64, device, shuffle=True, drop_last=True, channels_last=channels_last)
        stream = (x for epoch in range(10_000) for x in batches.epoch(epoch))
        for _ in range(5):
            train_step(net.forward, net.optimizer, next(stream), loss, precision, device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            train_step(net.forward, net.optimizer, next(stream), loss, precision, device)
        return 64 * args.steps / (time.perf_counter() - t0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch on a read-only map
        sides = {
            "private copy (before)": torch.from_numpy(np.array(split)),
            "memory map (now)": torch.from_numpy(split),
        }
    results: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, data in sides.items():
            results[name].append(images_per_s(data))
    for name, values in results.items():
        print(f"{name}: {', '.join(f'{v:.0f}' for v in values)} img/s; best {max(values):.0f}")
    before, now = (max(v) for v in results.values())
    print(f"memory map / private copy, best of each: {now / before:.2f}×")


if __name__ == "__main__":
    main()
