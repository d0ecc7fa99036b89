"""Beyond the report's recipe: learning-rate schedules, augmentation, a weight average, AdamW, gradient
clipping; each checked for what it does, and all of them together for an exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny
from safetensors.torch import load_file

import celebae
from celebae import CelebaeError, Settings, read_metrics, train
from celebae.data.augment import augment, batch_generator
from celebae.training.schedule import WARMUP_START, Schedule

EVERYTHING = dict(
    lr_schedule="cosine",
    schedule_epochs=2,  # the run's schedule, whether it is trained in one go or one epoch at a time
    warmup_steps=3,
    lr_min=1e-5,
    augment="flip-shift",
    shift_px=3,
    ema=0.9,
    weight_decay=0.05,
    grad_clip=1.0,
)


def _lrs(settings: Settings, steps_per_epoch: int, val_losses: list[float] | None = None) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([p], lr=settings.lr)
    schedule, out = Schedule(optimizer, settings, steps_per_epoch), []
    for epoch in range(settings.epochs):
        for _ in range(steps_per_epoch):
            out.append(schedule.lr)
            optimizer.step()
            schedule.after_step()
        if val_losses:
            schedule.after_epoch(val_losses[epoch])
    return out


def test_the_schedules_follow_their_formulas() -> None:
    base = dict(lr=1e-3, epochs=4)
    assert _lrs(Settings(**base), 5) == [1e-3] * 20  # the report's: constant
    cosine = _lrs(Settings(**base, lr_schedule="cosine", lr_min=1e-5), 5)
    expected = [1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * k / 20)) / 2 for k in range(20)]
    np.testing.assert_allclose(cosine, expected, rtol=1e-6)
    warm = _lrs(Settings(**base, lr_schedule="cosine", warmup_steps=4), 5)
    np.testing.assert_allclose(warm[:4], [1e-3 * (WARMUP_START + (1 - WARMUP_START) * k / 4) for k in range(4)])
    assert warm[4] == pytest.approx(1e-3) and warm[-1] < 1e-4  # then the cosine from the top
    step = _lrs(Settings(**base, lr_schedule="step", lr_step_epochs=2, lr_gamma=0.5), 5)
    np.testing.assert_allclose(step, [1e-3] * 10 + [5e-4] * 10)
    plateau = _lrs(Settings(**base, lr_schedule="plateau", lr_patience=1, lr_gamma=0.5), 2, [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(plateau, [1e-3] * 6 + [5e-4] * 2)  # two epochs without improvement, then ×0.5


def test_flips_and_shifts_are_seeded_and_exact() -> None:
    x = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).reshape(4, 3, 8, 8)
    gen = batch_generator(torch.device("cpu"), 0, 0, 0, 0)
    flipped = augment(x, "flip", 0, gen)
    for a, b in zip(x, flipped, strict=True):
        assert torch.equal(b, a) or torch.equal(b, a.flip(-1))
    again = augment(x, "flip", 0, batch_generator(torch.device("cpu"), 0, 0, 0, 0))
    assert torch.equal(flipped, again)  # the same (seed, epoch, batch, rank): the same draw
    flips = [
        not torch.equal(augment(x, "flip", 0, batch_generator(torch.device("cpu"), 0, 0, b, 0))[i], x[i])
        for b in range(50)
        for i in range(4)
    ]
    assert 0.35 < np.mean(flips) < 0.65
    shifted = augment(x, "flip-shift", 2, batch_generator(torch.device("cpu"), 1, 2, 3, 0))
    assert shifted.shape == x.shape
    assert set(shifted.unique().tolist()) <= set(x.unique().tolist())  # pixels moved, never invented
    assert torch.equal(augment(x, "none", 0, gen), x)


def test_validation_and_test_batches_are_never_augmented(tmp_path: Path) -> None:
    from celebae.training.distributed import Processes
    from celebae.training.loop import load_data

    settings = tiny(tmp_path, augment="flip-shift", shift_px=2)
    data = load_data(settings, torch.device("cpu"), Processes(), progress=False)
    assert data.train.augment == ("flip-shift", 2) and data.val.augment is None and data.test.augment is None
    plain = torch.cat(list(data.val.epoch(0)))
    assert torch.equal(plain, torch.cat(list(data.val.epoch(0))))
    raw = next(data.train.__class__(data.train.data, 16, torch.device("cpu"), shuffle=True, drop_last=True).epoch(0))
    assert not torch.equal(next(data.train.epoch(0)), raw)  # training batches are augmented, in the same order


def test_ema_is_validated_checkpointed_and_loaded(tmp_path: Path) -> None:
    run = tmp_path / "run"
    summary = train(tiny(tmp_path, out=str(run), epochs=3, ema=0.8, lr=2e-3), progress=False)
    epochs = [r for r in read_metrics(run) if r["kind"] == "epoch"]
    assert all(r["raw_val_mse"] is not None and r["raw_val_mse"] != r["val_mse"] for r in epochs)
    assert summary["raw_test_mse"] != summary["test_mse"]
    best_epoch = min(epochs, key=lambda r: r["val_loss"])["epoch"]
    assert summary["best_epoch"] == best_epoch  # best chosen by the average's validation loss
    ema_last = load_file(run / "checkpoints" / "last.ema.safetensors")
    raw_last = load_file(run / "checkpoints" / "last.safetensors")
    loaded = celebae.load(run, "last").model.state_dict()
    assert all(torch.equal(loaded[k], ema_last[k]) for k in ema_last)
    assert any(not torch.equal(ema_last[k], raw_last[k]) for k in raw_last if raw_last[k].is_floating_point())
    raw = celebae.load(run, "last", ema=False).model.state_dict()
    assert all(torch.equal(raw[k], raw_last[k]) for k in raw_last)


def test_every_option_resumes_exactly(tmp_path: Path) -> None:
    straight = tiny(tmp_path, out=str(tmp_path / "straight"), **EVERYTHING)
    train(straight, progress=False)
    split = tiny(tmp_path, out=str(tmp_path / "split"), **EVERYTHING)
    train(split.replace(epochs=1), progress=False)
    train(split, start="resume", progress=False)
    for name in ("last.safetensors", "last.ema.safetensors", "best.safetensors"):
        a, b = (load_file(tmp_path / r / "checkpoints" / name) for r in ("straight", "split"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    ra, rb = (read_metrics(tmp_path / r) for r in ("straight", "split"))
    keys = ("kind", "step", "train_loss", "val_loss", "lr", "raw_val_mse")
    assert [tuple(r[k] for k in keys) for r in ra] == [tuple(r[k] for k in keys) for r in rb]
    lrs = [r["lr"] for r in ra if r["kind"] == "step"]
    assert lrs[0] == pytest.approx(2e-4 * WARMUP_START) and lrs[3] == pytest.approx(2e-4) and lrs[-1] < lrs[3]


def test_adamw_and_clipping_change_the_steps(tmp_path: Path) -> None:
    base = tiny(tmp_path, out=str(tmp_path / "base"), epochs=1)
    train(base, progress=False)
    base_w = load_file(tmp_path / "base" / "checkpoints" / "last.safetensors")
    for name, change in (("wd", {"weight_decay": 0.5}), ("clip", {"grad_clip": 1e-3})):
        train(base.replace(out=str(tmp_path / name), **change), progress=False)
        w = load_file(tmp_path / name / "checkpoints" / "last.safetensors")
        assert any(not torch.equal(w[k], base_w[k]) for k in w if w[k].is_floating_point()), name
    from safetensors import safe_open

    with safe_open(str(tmp_path / "wd" / "checkpoints" / "last.state.safetensors"), "pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    assert groups[0]["weight_decay"] == 0.5  # AdamW's decoupled decay, in the optimiser that ran


def test_bad_recipe_settings_are_one_line() -> None:
    for change, message in (
        ({"lr_schedule": "linear"}, "lr_schedule must be one of constant, cosine, step, plateau"),
        ({"augment": "rotate"}, "augment must be one of none, flip, flip-shift"),
        ({"ema": 1.5}, "ema is a decay in"),
        ({"grad_clip": 0}, "grad_clip must be positive"),
        ({"lr_gamma": 2.0}, "lr_gamma is a factor"),
        ({"warmup_steps": -1}, "warmup_steps must be at least 0"),
    ):
        with pytest.raises(CelebaeError, match=message):
            Settings(**change)
