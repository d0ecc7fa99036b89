"""Studies and sweeps: expansion, skipping and resuming points, failures, tables, figures, the report."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from celebae import CelebaeError
from celebae.cli import main
from celebae.studies.sweep import expand, load_study, sweep

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "data": "synthetic",
    "synthetic_size": 200,
    "limit_train": 48,
    "limit_val": 16,
    "limit_test": 16,
    "epochs": 2,
    "log_every": 1,
}


def test_the_report_studies_expand_as_the_report_ran_them(tmp_path: Path) -> None:
    def summary(name: str) -> list[tuple]:
        points = expand(load_study(name), tmp_path)
        return [(s.model, s.width, s.batch_size, s.epochs) for s in points]

    assert summary("exp1") == [("conv", 16, 16, 8), ("conv", 16, 32, 8), ("pool", 16, 16, 8), ("pool", 16, 32, 8)]
    assert summary("exp2") == [("conv", 32, 32, 8), ("conv", 64, 32, 8), ("conv", 32, 64, 8), ("conv", 64, 64, 8)]
    assert summary("exp3") == [("conv", 64, 64, 10), ("conv", 128, 128, 10), ("conv", 128, 256, 10)]
    points = expand(load_study("exp1"), tmp_path, {"epochs": 1, "data": "x"})
    assert {(s.epochs, s.data) for s in points} == {(1, "x")}  # overrides reach every point
    assert Path(points[0].out) == tmp_path / "conv-bs16-nf16"


def test_bad_study_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nbatchsize = [1, 2]\n")
    with pytest.raises(CelebaeError, match="unknown setting.*batchsize"):
        expand(load_study(bad), tmp_path)
    bad.write_text("[grid]\nnf = 16\n")
    with pytest.raises(CelebaeError, match="grid.nf must be a non-empty list"):
        load_study(bad)
    bad.write_text("[runs]\nnf = 16\n")
    with pytest.raises(CelebaeError, match="unknown key"):
        load_study(bad)


def _study(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    lines = [
        "name = 'tiny'",
        "[settings]",
        "nf = 8",
        *(f"{k} = {json.dumps(v)}" for k, v in TINY.items()),
        "[grid]",
        "model = ['conv', 'pool']",
        "batch_size = [8, 16]",
        extra,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dry_run_lists_points(tmp_path: Path, capsys) -> None:
    assert main(["sweep", str(_study(tmp_path)), "--out", str(tmp_path / "s"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["conv-bs8-nf8", "conv-bs16-nf8", "pool-bs8-nf8", "pool-bs16-nf8"]
    assert all("pending" in line for line in out)
    assert not (tmp_path / "s").exists()


def test_interrupted_sweep_resumes_and_skips_finished_points(tmp_path: Path) -> None:
    study, out = _study(tmp_path), tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "celebae",
        "sweep",
        str(study),
        "--out",
        str(out),
        "--synthetic-size",
        "400",
        "--limit-train",
        "160",
        "--batch-size",
        "8",
    ]
    # the override makes every point batch 8, so two points collide: expect a clear error, not a crash
    clash = subprocess.run(cmd, capture_output=True, text=True)
    assert clash.returncode == 2 and "two points are both" in clash.stderr
    cmd = cmd[:-2]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=os.environ)
    first = out / "conv-bs8-nf8" / "summary.json"
    second = out / "conv-bs16-nf8" / "metrics.csv"
    deadline = time.time() + 180
    while time.time() < deadline and not (second.exists() and len(second.read_text().splitlines()) > 3):
        time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()
    assert first.exists()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (out / "conv-bs16-nf8" / "summary.json").exists()
    assert (out / "conv-bs16-nf8" / "checkpoints" / "last.safetensors").exists()
    finished_at = first.stat().st_mtime_ns

    records = sweep(study, out, {"synthetic_size": 400, "limit_train": 160})
    assert [r["status"] for r in records] == ["done"] * 4
    assert first.stat().st_mtime_ns == finished_at  # the finished point was not redone
    steps = [json.loads((out / r["name"] / "summary.json").read_text())["steps"] for r in records]
    assert steps == [2 * 160 // 8, 2 * 160 // 16] * 2  # the interrupted one resumed to its full length
    for name in (
        "results.csv",
        "results.md",
        "val_loss.png",
        "val_loss_steps.png",
        "train_loss.png",
        "reconstructions.png",
        "sweep.json",
        "study.json",
    ):
        assert (out / name).is_file(), name
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [r["name"] for r in records]
    for row in rows:
        summary = json.loads((out / row["name"] / "summary.json").read_text())
        for key in ("train_mse", "val_mse", "test_mse", "test_psnr", "train_images_per_s", "wall_s"):
            assert float(row[key]) == summary[key], (row["name"], key)
        assert int(row["params"]) == summary["params"]
    grid = Image.open(out / "reconstructions.png")
    assert grid.height == 5 * 130 + 2  # inputs + one row per run

    report = Path(main_report(out))
    text = report.read_text()
    assert "Model 1 (conv) beats Model 2 (pool)" in text and "at equal optimiser steps" in text
    assert "![val_loss](val_loss.png)" in text and "| conv | 8 | 8 |" in text


def main_report(out: Path) -> str:
    assert main(["report", str(out)]) == 0
    return str(out / "report.md")


def test_a_failing_point_is_recorded_and_the_rest_run(tmp_path: Path) -> None:
    study = tmp_path / "s.toml"
    study.write_text(
        "name = 's'\n[settings]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in TINY.items())
        + "nf = 8\n[[points]]\nbatch_size = 8\n[[points]]\nbatch_size = 64\n"
    )
    records = sweep(study, tmp_path / "out")
    assert [r["status"] for r in records] == ["done", "failed"]
    assert "fewer than one batch of 64" in records[1]["error"]
    saved = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert saved["points"][1]["status"] == "failed"
    assert main(["report", str(tmp_path / "out")]) == 0
    assert "## Failed points" in (tmp_path / "out" / "report.md").read_text()


def test_points_in_parallel(tmp_path: Path) -> None:
    records = sweep(_study(tmp_path), tmp_path / "par", {"epochs": 1}, parallel=2)
    assert [r["status"] for r in records] == ["done"] * 4


def test_plot_any_runs(tmp_path: Path) -> None:
    sweep(_study(tmp_path), tmp_path / "p", {"epochs": 1, "limit_train": 32})
    runs = [str(p) for p in sorted((tmp_path / "p").iterdir()) if p.is_dir()]
    fig = tmp_path / "fig.png"
    assert main(["plot", *runs, "--out", str(fig), "--metric", "train", "--x", "step"]) == 0
    assert Image.open(fig).size[0] > 400


def test_the_report_s_studies_ship_in_the_wheel(tmp_path: Path) -> None:
    """Installed from a wheel (no clone, no experiments/ folder), `celebae sweep exp1` finds its study."""
    wheel_dir, venv = tmp_path / "wheel", tmp_path / "venv"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), ROOT]
    # with this environment's setuptools when it can build wheels (fast, offline), else in pip's own build env
    built = subprocess.run([*build, "--no-build-isolation"], capture_output=True, text=True)
    if built.returncode != 0:
        built = subprocess.run(build, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    # a fresh venv that sees this interpreter's packages (torch, numpy, …) through a .pth file, but not the
    # editable celebae (its finder lives in a .pth of those folders, and .pth files there are not read)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    folders = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (Path(site) / "celebae-test-deps.pth").write_text("\n".join(folders) + "\n")
    wheel = next(wheel_dir.glob("celebae-*.whl"))
    with zipfile.ZipFile(wheel) as zf:  # the licence and the type hints' marker travel with the package
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "celebae/py.typed" in names and any(n.endswith("licenses/LICENSE") for n in names), names
    assert "License-Expression: MIT" in meta and "Project-URL: Documentation" in meta
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel], check=True)
    where = subprocess.run([python, "-c", "import celebae; print(celebae.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path)  # fmt: skip
    assert str(venv) in where.stdout, where.stdout + where.stderr
    listed = subprocess.run([python, "-m", "celebae", "sweep", "--list"], capture_output=True, text=True, cwd=tmp_path)
    assert [line.split(":")[0] for line in listed.stdout.splitlines()] == [
        "budget",
        "code_size",
        "exp1",
        "exp2",
        "exp3",
        "recipe",
    ]
    dry = subprocess.run(
        [python, "-m", "celebae", "sweep", "exp1", "--dry-run", "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert dry.returncode == 0 and len(dry.stdout.splitlines()) == 4, dry.stderr
    mine = tmp_path / "mine.toml"
    mine.write_text("name = 'mine'\n[grid]\nbatch_size = [8, 16]\n")
    own = subprocess.run([python, "-m", "celebae", "sweep", str(mine), "--dry-run"], capture_output=True, text=True,
                         cwd=tmp_path)  # fmt: skip
    assert own.returncode == 0 and len(own.stdout.splitlines()) == 2, own.stderr
    missing = subprocess.run([python, "-m", "celebae", "sweep", "exp9"], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2 and "neither a file nor a built-in study (budget, code_size, exp1" in missing.stderr


def test_a_preempted_parallel_sweep_starts_nothing_more(tmp_path: Path) -> None:
    """SIGTERM to the whole job (as a scheduler sends it) while two points train in two workers: both save,
    and no worker goes on to the points the pool had queued; no process is left behind."""
    study, out = _study(tmp_path), tmp_path / "pre"
    cmd = [sys.executable, "-m", "celebae", "sweep", str(study), "--out", str(out), "--parallel", "2",
           "--synthetic-size", "400", "--limit-train", "320", "--epochs", "50"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    while len([p for p in out.glob("*/metrics.csv") if len(p.read_text().splitlines()) > 3]) < 2:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143 and "stopped by SIGTERM" in err, err[-2000:]
    deadline = time.time() + 60
    while time.time() < deadline:  # the workers save, then leave
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("sweep workers were still running a minute after SIGTERM")
    started = sorted(p.parent.name for p in out.glob("*/metrics.csv"))
    assert len(started) == 2, started  # the two queued points never began
    assert all((out / name / "checkpoints" / "last.safetensors").exists() for name in started)
