"""Where and how a model runs: device choice, precision and layout defaults, autocast, the allocator, Adam.

Numbers behind the defaults are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Iterable, Iterator

import torch

from ..errors import CelebaeError

PRECISIONS = ("auto", "fp32", "bf16")
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → the local GPU, else Apple's MPS, else the CPU; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            name = f"cuda:{local_rank}"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CelebaeError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CelebaeError("--device cuda asked for, but this torch sees no CUDA GPU; use --device cpu or auto")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CelebaeError("--device mps asked for, but MPS is not available; use --device cpu or auto")
    return device


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


def resolve_precision(precision: str, channels_last: bool | None, device: torch.device) -> tuple[str, bool]:
    """(precision, channels_last) with ``auto`` and ``None`` filled in for ``device``."""
    precision = default_precision(device) if precision == "auto" else precision
    if channels_last is None:
        channels_last = default_channels_last(device, precision)
    return precision, channels_last


@contextlib.contextmanager
def backends(device: torch.device, deterministic: bool, cudnn_benchmark: bool | None) -> Iterator[None]:
    """PyTorch's global kernel choices for one run, put back after it.

    ``deterministic``: bitwise-repeatable kernels (cuBLAS workspace fixed, cuDNN without autotuning), so a
    resumed CUDA run equals an uninterrupted one bit for bit; slower. Otherwise cuDNN times its convolution
    algorithms on CUDA (``cudnn_benchmark``, default on: the shapes never change within a run)."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    saved_det = torch.backends.cudnn.deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS first starts
        torch.use_deterministic_algorithms(True, warn_only=True)  # ops without a deterministic kernel warn
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True if cudnn_benchmark is None else cudnn_benchmark
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[1], saved_det


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"``; nothing otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adam(
    params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float], weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """Adam (AdamW, decoupled weight decay, when ``weight_decay`` > 0) with one fused kernel for the whole step
    where this torch has one for the device (CUDA; CPU since torch 2.4), else the per-tensor loop. Fused pays
    on a GPU, where small batches are launch-bound, and on a CPU, where the loop costs 5× the fused step
    (7.6 vs 1.5 ms at nf 16)."""
    params = list(params)
    kind, extra = (torch.optim.AdamW, {"weight_decay": weight_decay}) if weight_decay > 0 else (torch.optim.Adam, {})
    try:
        return kind(params, lr=lr, betas=betas, fused=True, **extra)
    except RuntimeError:  # fused=True is not supported for this device here
        return kind(params, lr=lr, betas=betas, **extra)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a CPU needs no wait)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
