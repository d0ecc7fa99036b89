"""A shared cluster, reproduced with real processes and signals: one writer per run, preemption by SIGTERM and
SIGUSR1, a killed writer, one study swept by several processes at once, and torchrun across two "nodes"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from conftest import flags
from safetensors.torch import load_file

from celebae import read_metrics
from celebae.training.checkpoint import read_metadata

RUN_FLAGS = [
    "train",
    *flags(data="synthetic", synthetic_size=400, nf=8, batch_size=8, epochs=2, limit_val=8, limit_test=8),
    *flags(log_every=1, precision="fp32", device="cpu"),
    "--quiet",
]


def celebae(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "celebae", *args], stderr=subprocess.PIPE, text=True, **kw)


def wait_for_steps(proc: subprocess.Popen, run: Path, rows: int, timeout: float = 120) -> None:
    """Until the run's metrics.csv has ``rows`` lines (the run is training)."""
    metrics, deadline = run / "metrics.csv", time.time() + timeout
    while not (metrics.exists() and len(metrics.read_text().splitlines()) > rows):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "the run did not start training"
        time.sleep(0.05)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "last.safetensors")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_a_preempted_run_saves_and_resumes_exactly(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert subprocess.run([sys.executable, "-m", "celebae", *RUN_FLAGS, "--out", str(straight)]).returncode == 0
    requeued = [*RUN_FLAGS, "--out", str(stopped), "--auto-resume"]  # one command for every start of the job
    proc = celebae(*requeued)
    wait_for_steps(proc, stopped, 5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"stopped by {sig.name}" in err and "checkpoint saved" in err and "Traceback" not in err
    at = read_metadata(stopped / "checkpoints" / "last.safetensors")["position"]["step"]
    assert 0 < at < 2 * 320 // 8  # mid-run (320 training faces of 400, batch 8, 2 epochs)
    assert [r["step"] for r in read_metrics(stopped) if r["kind"] == "step"] == list(range(1, at + 1))
    resumed = subprocess.run([sys.executable, "-m", "celebae", *requeued])
    assert resumed.returncode == 0
    a, b = weights(straight), weights(stopped)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in read_metrics(stopped) if r["kind"] == "step"]
    assert steps == [r["step"] for r in read_metrics(straight) if r["kind"] == "step"]  # each step once
    again = subprocess.run([sys.executable, "-m", "celebae", *requeued], capture_output=True, text=True)
    assert again.returncode == 0 and "has finished already" in again.stderr
    assert weights(stopped).keys() == a.keys() and all(torch.equal(weights(stopped)[k], a[k]) for k in a)


def test_a_second_writer_is_refused_by_name_and_touches_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = celebae(*RUN_FLAGS, "--epochs", "50", "--out", str(run))  # long enough to be still running
    wait_for_steps(first, run, 3)
    first.send_signal(signal.SIGSTOP)  # paused, still holding the lock: the folder must not change now

    def files() -> dict[Path, tuple[int, int]]:
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()}

    before = files()
    for extra in (["--resume"], ["--overwrite"]):
        second = subprocess.run(
            [sys.executable, "-m", "celebae", *RUN_FLAGS, "--epochs", "50", "--out", str(run), *extra],
            capture_output=True,
            text=True,
        )
        assert second.returncode == 2, second.stderr
        line = second.stderr.strip()
        assert "\n" not in line and f"{run} is in use by pid {first.pid} on " in line and " since 20" in line
    assert files() == before  # the refused processes wrote, removed and truncated nothing
    first.send_signal(signal.SIGCONT)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert first.returncode == 143
    steps = [r["step"] for r in read_metrics(run) if r["kind"] == "step"]
    assert steps == list(range(1, len(steps) + 1))


def test_a_lock_left_by_kill_9_never_blocks(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = celebae(*RUN_FLAGS, "--out", str(run))
    wait_for_steps(proc, run, 3)
    proc.kill()
    proc.communicate(timeout=30)
    assert (run / ".lock.json").exists()  # the dead holder's note is still there; its lock is not
    done = subprocess.run([sys.executable, "-m", "celebae", *RUN_FLAGS, "--out", str(run), "--overwrite"])
    assert done.returncode == 0
    assert (run / "summary.json").exists() and not (run / ".lock.json").exists()


def test_three_sweeps_of_one_study_cover_it_exactly_once(tmp_path: Path) -> None:
    study, out = tmp_path / "s.toml", tmp_path / "sweep"
    study.write_text(
        "name = 'shared'\nseeds = 2\n[settings]\nnf = 8\nepochs = 2\nsynthetic_size = 200\nlimit_train = 64\n"
        "limit_val = 16\nlimit_test = 16\nprecision = 'fp32'\ndevice = 'cpu'\n[grid]\nbatch_size = [8, 16]\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [celebae("sweep", str(study), "--out", str(out), env=env) for _ in range(3)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    runs = sorted(p.parent for p in out.rglob("summary.json"))
    assert [r.relative_to(out).as_posix() for r in runs] == [
        f"conv-bs{b}-nf8/seed-{s}" for b in (16, 8) for s in (0, 1)
    ]
    for run in runs:
        steps = [r["step"] for r in read_metrics(run) if r["kind"] == "step"]
        assert steps == list(range(1, 2 * 64 // json.loads((run / "config.json").read_text())["batch_size"] + 1))
        assert len([r for r in read_metrics(run) if r["kind"] == "epoch"]) == 2
    records = json.loads((out / "sweep.json").read_text())["points"]
    assert sorted(r["status"] for r in records) == ["done"] * 4
    assert (out / "results.csv").exists()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch without gloo")
def test_two_nodes_train_like_one_process(tmp_path: Path, unused_port: int) -> None:
    common = [*RUN_FLAGS[:-1], *flags(synthetic_size=200, limit_train=64, batch_size=16, log_every=2), "--quiet"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert subprocess.run([sys.executable, "-m", "celebae", *common, "--out", str(one)]).returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{unused_port}",
                "--rdzv-id",
                "celebae-test",
                "-m",
                "celebae",
                *common,
                "--out",
                str(two),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    errs = [n.communicate(timeout=300)[1] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [e[-2000:] for e in errs]
    summary = json.loads((two / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2 * 64 // 16
    a, b = (np.array([r["train_loss"] for r in read_metrics(r) if r["kind"] == "step"]) for r in (one, two))
    np.testing.assert_allclose(b, a, rtol=0.05)  # BatchNorm sees 8 images per process instead of 16


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
