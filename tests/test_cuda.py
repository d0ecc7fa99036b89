"""The CUDA path: bf16 + channels_last + fused Adam learning like fp32, batches that never leave the GPU,
exact resume, CUDA-trained runs used on the CPU, and the sweep's runs placed on the GPUs.

Run by ``benchmarks/gpu_check.py`` on a lent GPU; skipped (with the reason) where no GPU is visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny
from safetensors.torch import load_file

import celebae
from celebae import RunDir, read_metrics, train
from celebae.data import Batches, place

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine shows none"),
]
VAL_RTOL, STEP_RTOL = 0.06, 0.05  # the CPU precision test's tolerance (tests/test_precision.py)


def cuda_tiny(tmp_path: Path, **changes) -> celebae.Settings:
    values = dict(device="cuda", nf=16, batch_size=32, epochs=3, limit_train=512, limit_val=64, lr=2e-3, log_every=4)
    return tiny(tmp_path, **{**values, **changes})


def test_the_default_gpu_step_learns_like_fp32(tmp_path: Path) -> None:
    runs = {}
    for name, precision in (("fp32", "fp32"), ("default", "auto")):
        summary = train(cuda_tiny(tmp_path, precision=precision, out=str(tmp_path / name)), progress=False)
        runs[name] = read_metrics(tmp_path / name)
    assert summary["precision"] == "bf16" and summary["device"].startswith("cuda")
    assert RunDir(tmp_path / "default").read_config().channels_last is True
    steps = {k: np.array([r["train_loss"] for r in v if r["kind"] == "step"]) for k, v in runs.items()}
    vals = {k: np.array([r["val_loss"] for r in v if r["kind"] == "epoch"]) for k, v in runs.items()}
    np.testing.assert_allclose(vals["default"], vals["fp32"], rtol=VAL_RTOL)
    assert np.mean(np.abs(steps["default"] / steps["fp32"] - 1)) < STEP_RTOL
    assert steps["default"][-4:].mean() < 0.8 * steps["default"][:4].mean()


def test_batches_never_leave_the_gpu() -> None:
    """Over an epoch of 16 steps, the only host-to-device copy is the epoch's permutation (one index vector)."""
    device = torch.device("cuda")
    data = place(np.random.default_rng(0).integers(0, 256, (512, 3, 128, 128), dtype=np.uint8), device)
    assert data.device.type == "cuda"
    batches = Batches(data, 32, device, shuffle=True, drop_last=True, channels_last=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for x in batches.epoch(0):
            assert x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
        torch.cuda.synchronize()
    copies = [e for e in prof.events() if "Memcpy HtoD" in e.name]
    assert len(copies) <= 1, [e.name for e in copies]


def test_a_resumed_cuda_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """Bitwise with --deterministic (fixed cuBLAS workspace, deterministic cuDNN kernels); without it cuDNN's
    autotuned kernels may sum in another order, so only the deterministic mode is promised to be exact."""
    settings = cuda_tiny(tmp_path, deterministic=True, epochs=2)
    train(settings.replace(out=str(tmp_path / "straight")), progress=False)
    split = settings.replace(out=str(tmp_path / "split"), epochs=1)
    train(split, progress=False)
    train(split.replace(epochs=2), start="resume", progress=False)
    a, b = (load_file(tmp_path / n / "checkpoints" / "last.safetensors") for n in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_cuda_run_is_used_on_the_cpu(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(cuda_tiny(tmp_path, epochs=1, out=str(run)), progress=False)
    loaded = celebae.load(run, device="cpu")
    assert loaded.device.type == "cpu" and loaded.encode(celebae.data.draw_face(0)).shape == (1, 256)
    result = celebae.evaluate(run, device="cpu")
    assert result["mse"] == pytest.approx(RunDir(run).summary["test_mse"], rel=0.02)  # bf16 training, fp32 scoring
    from celebae.use.export import export

    assert len(export(run, "torchscript", tmp_path / "ts")) == 3


def test_the_sweep_places_runs_on_the_gpus(tmp_path: Path) -> None:
    from celebae.studies.sweep import sweep

    study = tmp_path / "s.toml"
    study.write_text(
        "name = 's'\n[settings]\nnf = 8\nepochs = 1\nlimit_train = 64\nlimit_val = 16\nlimit_test = 16\n"
        "synthetic_size = 200\n[grid]\nbatch_size = [8, 16]\n"
    )
    records = sweep(study, tmp_path / "out", parallel=max(2, torch.cuda.device_count()))
    assert [r["status"] for r in records] == ["done", "done"]
    devices = {RunDir(tmp_path / "out" / r["name"]).summary["device"] for r in records}
    assert all(d.startswith("cuda") for d in devices)
    if torch.cuda.device_count() > 1:
        assert len(devices) == 2  # one GPU each
