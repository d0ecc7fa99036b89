"""Measuring the hardware's work: training FLOPs per image (from the layers' shapes) and a matmul peak.

Used by the benchmarks and by the report's equal-compute comparisons; nothing here runs during training.
"""

from __future__ import annotations

import time

import torch

from ..models import Autoencoder
from .device import synchronize


def training_flops_per_image(model: Autoencoder) -> float:
    """≈ 6 × forward multiply-accumulates (forward 2 FLOP/MAC, backward twice that), from the layers' shapes,
    on one image of the model's own size (``model.image_shape``)."""
    macs = 0
    hooks = []

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        w = module.weight
        if isinstance(module, torch.nn.Conv2d):
            macs += output[0].numel() * w[0].numel()
        else:  # ConvTranspose2d: every input pixel meets the whole kernel
            macs += inputs[0][0].numel() * w[0].numel()

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            hooks.append(m.register_forward_hook(count))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        p = next(model.parameters())
        model(torch.zeros(1, *model.image_shape, device=p.device))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return 6.0 * macs


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 0.5) -> float:
    """Best FLOP/s of large 1×1-convolution GEMMs (channels_last, tensors already in ``dtype``) on ``device``:
    the practical ceiling for these models' convolutions."""
    best = 0.0
    for n, c, hw in ((32, 1024, 16), (64, 512, 32)):
        x = torch.randn(n, c, hw, hw, device=device, dtype=dtype).to(memory_format=torch.channels_last)
        conv = torch.nn.Conv2d(c, c, 1, bias=False).to(device, dtype).to(memory_format=torch.channels_last)
        with torch.no_grad():
            conv(x)
            synchronize(device)
            runs, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                conv(x)
                runs += 1
            synchronize(device)
            best = max(best, runs * 2 * n * hw * hw * c * c / (time.perf_counter() - t0))
    return best
