"""Making the hardware go fast: allocator tuning, precision defaults, FLOP counts and a matmul peak.

Numbers behind the defaults are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import time
from collections.abc import Iterable

import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters


@functools.cache
def tune_allocator() -> bool:
    """Stop glibc from unmapping and re-faulting the large activation buffers of every training step.

    With glibc's defaults each buffer over 128 KiB is a fresh mmap: an nf 64 step then spends about a
    second in ~700k page faults and speeds vary 3× between runs. Keeping freed memory in the heap
    (the same as ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>``) removes that. Linux/glibc only;
    elsewhere a no-op. Returns whether it applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):  # musl or another libc
        return False


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), where bf16 autocast pays."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def default_precision(device: torch.device) -> str:
    """bf16 autocast on CUDA GPUs that support it and on CPUs with native bf16; fp32 elsewhere."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def default_channels_last(device: torch.device, precision: str) -> bool:
    """channels_last where the convolutions are faster in it: with bf16, and on GPUs."""
    return precision == "bf16" or device.type == "cuda"


def adam(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with one fused kernel for the whole step where this torch has one for the device (CUDA; CPU
    since torch 2.4), else the per-tensor loop. Fused pays on a GPU, where small batches are launch-bound,
    and on a CPU, where the loop costs 5× the fused step (7.6 vs 1.5 ms at nf 16)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except RuntimeError:  # fused=True is not supported for this device here
        return torch.optim.Adam(params, lr=lr, betas=betas)


def training_flops_per_image(model: torch.nn.Module) -> float:
    """≈ 6 × forward multiply-accumulates (forward 2 FLOP/MAC, backward twice that), from the layers' shapes."""
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
        model(torch.zeros(1, 3, 128, 128, device=p.device))
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


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a CPU needs no wait)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
