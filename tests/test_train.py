"""Training end to end: artefacts, falling loss, exact resume, interruption, bad settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny
from safetensors.torch import load_file

import celebae
from celebae import CelebaeError, Settings, read_metrics, train
from celebae.training.checkpoint import load_state, read_metadata, save_state

SUMMARY_KEYS = {"train_mse", "val_mse", "test_mse", "test_psnr", "params", "train_images_per_s", "wall_s"}


def test_a_run_writes_every_artefact(tmp_path: Path) -> None:
    summary = train(tiny(tmp_path), progress=False)
    run = tmp_path / "run"
    for name in (
        "config.json",
        "metrics.csv",
        "summary.json",
        "reconstructions.png",
        "loss.png",
        "checkpoints/last.safetensors",
        "checkpoints/last.state.safetensors",
        "checkpoints/best.safetensors",
    ):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    assert set(summary) >= SUMMARY_KEYS
    assert summary == json.loads((run / "summary.json").read_text())
    assert summary["params"] == celebae.count_parameters(celebae.build_model("conv", nf=8))
    assert summary["splits"] == {"train": 64, "val": 20, "test": 16}
    assert summary["steps"] == 2 * 64 // 16 and summary["compression"]["ratio"] == 192
    assert 0 < summary["test_mse"] < 1 and summary["test_psnr"] > 5
    rows = read_metrics(run)
    assert [r["step"] for r in rows if r["kind"] == "step"] == list(range(1, 9))
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[-1]["val_loss"] == pytest.approx(summary["val_mse"], rel=1e-6)
    assert json.loads((run / "config.json").read_text())["nf"] == 8
    assert read_metadata(run / "checkpoints" / "best.safetensors")["settings"]["model"] == "conv"


def test_loss_falls_on_synthetic_faces(tmp_path: Path) -> None:
    summary = train(tiny(tmp_path, epochs=4, limit_train=128, batch_size=16, lr=2e-3), progress=False)
    losses = [r["train_loss"] for r in read_metrics(tmp_path / "run") if r["kind"] == "step"]
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5
    assert summary["val_mse"] < 0.8 * losses[0]


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = tiny(tmp_path, out=str(tmp_path / "straight"))
    train(straight, progress=False)
    split = tiny(tmp_path, out=str(tmp_path / "split"), epochs=1)
    train(split, progress=False)
    train(split.replace(epochs=2), start="resume", progress=False)
    a, b = (load_file(tmp_path / n / "checkpoints" / "last.safetensors") for n in ("straight", "split"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra, rb = (read_metrics(tmp_path / n) for n in ("straight", "split"))
    assert [(r["kind"], r["step"], r["train_loss"], r["val_loss"]) for r in ra] == [
        (r["kind"], r["step"], r["train_loss"], r["val_loss"]) for r in rb
    ]
    sa, sb = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("straight", "split"))
    assert sa["test_mse"] == sb["test_mse"] and sa["steps"] == sb["steps"] == 8


def test_runs_are_never_overwritten_and_resume_checks_settings(tmp_path: Path) -> None:
    settings = tiny(tmp_path, epochs=1)
    train(settings, progress=False)
    with pytest.raises(CelebaeError, match="already holds a run; pass --resume"):
        train(settings, progress=False)
    with pytest.raises(CelebaeError, match=r"cannot resume .* \(nf: 8 → 16\)"):
        train(settings.replace(nf=16, epochs=2), start="resume", progress=False)
    with pytest.raises(CelebaeError, match="nothing to resume"):
        train(settings.replace(out=str(tmp_path / "new")), start="resume", progress=False)


def test_too_few_images_for_a_batch(tmp_path: Path) -> None:
    with pytest.raises(CelebaeError, match="fewer than one batch of 128"):
        train(tiny(tmp_path, batch_size=128), progress=False)


def test_a_failed_write_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch) -> None:
    settings = tiny(tmp_path, epochs=1)
    train(settings, progress=False)
    last = tmp_path / "run" / "checkpoints" / "last.safetensors"
    before = last.read_bytes()
    import celebae.training.checkpoint as ckpt

    def dies_mid_write(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_file", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        train(settings.replace(epochs=2), start="resume", progress=False)
    assert last.read_bytes() == before
    monkeypatch.undo()
    train(settings.replace(epochs=2), start="resume", progress=False)
    assert read_metadata(last)["position"]["epoch"] == 2


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    train(tiny(tmp_path, epochs=1), progress=False)
    best = tmp_path / "run" / "checkpoints" / "best.safetensors"
    best.write_bytes(best.read_bytes()[:100])
    with pytest.raises(CelebaeError, match="unreadable"):
        celebae.load(tmp_path / "run")


def test_ctrl_c_saves_and_the_run_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "celebae",
        "train",
        "--data",
        "synthetic",
        "--synthetic-size",
        "400",
        "--nf",
        "8",
        "--batch-size",
        "8",
        "--epochs",
        "3",
        "--limit-val",
        "8",
        "--limit-test",
        "8",
        "--log-every",
        "1",
        "--quiet",
        "--out",
        str(run),
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=os.environ)
    deadline = time.time() + 120
    while (
        time.time() < deadline
        and not (run / "metrics.csv").exists()
        or len((run / "metrics.csv").read_text().splitlines()) < 4
    ):
        time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    position = read_metadata(run / "checkpoints" / "last.safetensors")["position"]
    assert 0 < position["step"] < 3 * 320 // 8
    steps = [r["step"] for r in read_metrics(run) if r["kind"] == "step"]
    assert steps == list(range(1, position["step"] + 1))
    done = subprocess.run(cmd + ["--resume", "--epochs", "1"], capture_output=True, text=True, env=os.environ)
    assert done.returncode == 0, done.stderr
    steps = [r["step"] for r in read_metrics(run) if r["kind"] == "step"]
    assert steps == list(range(1, 41))


def test_settings_validation() -> None:
    with pytest.raises(CelebaeError, match="batch_size must be at least 2"):
        Settings(batch_size=1)
    with pytest.raises(CelebaeError, match="unknown crop"):
        Settings(crop="zoom")
    with pytest.raises(CelebaeError, match="unknown setting"):
        Settings.from_dict({"batchsize": 3})


def test_a_kill_between_the_state_and_the_weights_still_resumes(tmp_path: Path, monkeypatch) -> None:
    """The state is saved first: if the weights' save then dies, the previous state still matches them."""
    settings = tiny(tmp_path, epochs=1)
    train(settings, progress=False)
    import celebae.training.checkpoint as ckpt

    real = ckpt.save_weights

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_weights", dies)
    with pytest.raises(KeyboardInterrupt):
        train(settings.replace(epochs=2), start="resume", progress=False)
    monkeypatch.setattr(ckpt, "save_weights", real)
    state = tmp_path / "run" / "checkpoints" / "last.state.safetensors"
    assert ckpt.read_metadata(tmp_path / "run" / "checkpoints" / "last.safetensors")["position"]["step"] == 4
    assert (
        ckpt.matching_state(tmp_path / "run" / "checkpoints" / "last.safetensors", state).name
        == "last.state.prev.safetensors"
    )
    train(settings.replace(epochs=2), start="resume", progress=False)
    straight = tiny(tmp_path, out=str(tmp_path / "straight"))
    train(straight, progress=False)
    a, b = (load_file(p / "checkpoints" / "last.safetensors") for p in (tmp_path / "run", tmp_path / "straight"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_restored_adam_moments_keep_their_parameters_layout(tmp_path: Path) -> None:
    """Fused Adam reads parameter, gradient and moments as flat memory, so moments restored from a
    checkpoint must have their (channels_last) parameter's layout, or the resumed steps go wrong."""

    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = celebae.build_model("conv", nf=4).to(memory_format=torch.channels_last)
        return model, torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)

    x = torch.rand(2, 3, 128, 128) * 2 - 1

    def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), x).backward()
        optimizer.step()

    a, opt_a = make()
    step(a, opt_a)
    save_state(opt_a, tmp_path / "state.safetensors", {"step": 1})
    b, opt_b = make()
    b.load_state_dict(a.state_dict())
    load_state(opt_b, tmp_path / "state.safetensors")
    assert all(opt_b.state[p]["exp_avg_sq"].stride() == p.stride() for p in b.parameters())
    step(a, opt_a)
    step(b, opt_b)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


EXPECTED = Path(__file__).parent / "expected"


@pytest.mark.parametrize("model", sorted(celebae.MODELS))
def test_training_log_matches_the_expected_log(tmp_path: Path, model: str) -> None:
    """A fixed fp32 CPU run's losses, step by step, against the log it wrote when this file was last
    regenerated (``CELEBAE_UPDATE_EXPECTED=1 pytest tests/test_train.py -k expected_log``): any change to
    the data order, initialisation, loss or optimiser shows here. Tolerance 1e-3: other CPUs and torch
    versions sum in another order."""
    small = dict(celebae.MODELS[model].small)  # each model's test size, declared where it is registered
    settings = tiny(tmp_path, model=model, nf=None, model_args=small, epochs=3, log_every=1, lr=1e-3)
    train(settings.replace(device="cpu", precision="fp32", channels_last=False), progress=False)
    columns = ("kind", "epoch", "step", "train_loss", "val_loss")
    rows = [{c: r[c] for c in columns} for r in read_metrics(tmp_path / "run")]
    path = EXPECTED / f"train-{model}.json"
    if os.environ.get("CELEBAE_UPDATE_EXPECTED"):
        path.parent.mkdir(exist_ok=True)
        path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
        pytest.skip(f"wrote {path}")
    if not path.exists():
        pytest.fail(f"no expected log for model {model!r}; write it with {path.name}'s command in this docstring")
    expected = json.loads(path.read_text())
    assert [(r["kind"], r["epoch"], r["step"]) for r in rows] == [(r["kind"], r["epoch"], r["step"]) for r in expected]
    for got, want in zip(rows, expected, strict=True):
        for key in ("train_loss", "val_loss"):
            assert (got[key] is None) == (want[key] is None), (got, want)
            if want[key] is not None:
                assert got[key] == pytest.approx(want[key], rel=1e-3), (key, got["step"])


def test_python_resume_behaves_as_the_shells(tmp_path: Path, capsys) -> None:
    """The rules for resuming live in RunDir: ``celebae.train(..., start="resume")`` and ``celebae train --resume``
    continue to the same weights and refuse the same changes with the same message."""
    import shutil

    from celebae import RunDir
    from celebae.cli import main

    py, sh = tmp_path / "py", tmp_path / "sh"
    train(tiny(tmp_path, epochs=1, out=str(py)), progress=False)
    shutil.copytree(py, sh)
    train(RunDir(py).resume_settings({"epochs": 2}), start="resume", progress=False)
    assert main(["train", "--resume", "--out", str(sh), "--epochs", "2", "--quiet"]) == 0
    a, b = (load_file(p / "checkpoints" / "last.safetensors") for p in (py, sh))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in read_metrics(py)] == [r["train_loss"] for r in read_metrics(sh)]

    with pytest.raises(CelebaeError) as from_python:
        train(RunDir(py).resume_settings({"nf": 16, "epochs": 3}), start="resume", progress=False)
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(sh), "--nf", "16", "--epochs", "3", "--quiet"]) == 2
    assert str(from_python.value).replace(str(py), "RUN") in capsys.readouterr().err.replace(str(sh), "RUN")
    with pytest.raises(CelebaeError, match="nothing to resume in .*: no config.json"):
        RunDir(tmp_path / "none").resume_settings({"epochs": 2})
