"""torchrun DDP on the CPU (gloo, 2 processes) against one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
from conftest import flags

from celebae import read_metrics
from celebae.cli import main
from celebae.training.checkpoint import read_metadata

COMMON = [
    *flags(
        data="synthetic",
        synthetic_size=200,
        nf=8,
        batch_size=16,
        limit_train=64,
        limit_val=32,
        limit_test=16,
        device="cpu",
        precision="fp32",
        log_every=2,
    ),
    "--quiet",
]
# BatchNorm sees 8 images per process instead of 16 (PyTorch has no CPU SyncBatchNorm), so the two runs
# follow slightly different paths: per-step losses agree within this relative tolerance.
RTOL = 0.05


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "celebae",
        "train",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def step_losses(run: Path) -> np.ndarray:
    return np.array([r["train_loss"] for r in read_metrics(run) if r["kind"] == "step"])


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch without gloo")
def test_two_processes_match_one_and_resume(tmp_path: Path) -> None:
    one, two, split = tmp_path / "one", tmp_path / "two", tmp_path / "split"
    assert main(["train", *COMMON, "--epochs", "2", "--out", str(one)]) == 0
    done = torchrun(*COMMON, "--epochs", "2", "--out", str(two))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((two / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 8
    rows = read_metrics(two)  # written once, by rank 0
    assert [r["step"] for r in rows if r["kind"] == "step"] == list(range(1, 9))
    a, b = step_losses(one), step_losses(two)
    np.testing.assert_allclose(b, a, rtol=RTOL)
    single = json.loads((one / "summary.json").read_text())
    assert summary["val_mse"] == pytest.approx(single["val_mse"], rel=2 * RTOL)

    # one epoch, then --resume to two, under torchrun: the same as two epochs straight
    first = torchrun(*COMMON, "--epochs", "1", "--out", str(split))
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = torchrun(*COMMON, "--epochs", "2", "--out", str(split), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    np.testing.assert_array_equal(step_losses(split), b)
    assert read_metadata(split / "checkpoints" / "last.safetensors")["position"]["step"] == 8
