"""Every registered loss: its two forms agree, it is zero only for a perfect copy, it trains; SSIM matches
the scikit-image SSIM that scores runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny

from celebae import LOSSES, CelebaeError, Settings, read_metrics, train
from celebae.data import draw_face, to_uint8, to_unit_range
from celebae.quality.losses import get_loss
from celebae.quality.metrics import ssim_uint8


def faces(n: int, start: int = 0) -> torch.Tensor:
    return to_unit_range(torch.from_numpy(np.stack([draw_face(i) for i in range(start, start + n)])))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_forms_agree_and_are_differentiable(name: str) -> None:
    loss = get_loss(name)
    x = faces(3)
    y = (x + 0.2 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    per_image = loss.per_image(y, x)
    assert per_image.shape == (3,) and torch.all(per_image > 0)
    torch.testing.assert_close(loss.batch(y, x), per_image.mean(), rtol=1e-5, atol=1e-6)
    assert loss.per_image(x, x).abs().max() < 1e-5
    (grad,) = torch.autograd.grad(loss.batch(y, x), y)
    assert grad.abs().sum() > 0


def test_ssim_loss_matches_the_ssim_that_scores_runs() -> None:
    x = faces(3)
    y = to_unit_range(to_uint8(x + 0.15 * torch.randn_like(x)))  # on the 0–255 grid, as scoring sees it
    ours = 1 - get_loss("ssim").per_image(y, x)
    reference = ssim_uint8(to_uint8(x).numpy(), to_uint8(y).numpy())
    np.testing.assert_allclose(ours.numpy(), reference, atol=2e-3)


def test_unknown_loss_is_a_one_line_error() -> None:
    with pytest.raises(CelebaeError, match="unknown loss 'l3'; choose one of mse, l1, ssim"):
        Settings(loss="l3")


@pytest.mark.parametrize("name", ["l1", "ssim"])
def test_other_losses_train_and_runs_still_report_mse(tmp_path: Path, name: str) -> None:
    summary = train(tiny(tmp_path, loss=name, epochs=6, limit_train=128, lr=2e-3), progress=False)
    rows = read_metrics(tmp_path / "run")
    losses = [r["train_loss"] for r in rows if r["kind"] == "step"]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    mses = [r["train_mse"] for r in rows if r["kind"] == "step"]
    assert all(m is not None and m > 0 for m in mses) and mses[0] != losses[0]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert epochs[-1]["val_loss"] == pytest.approx(summary["val_loss"])
    assert epochs[-1]["val_mse"] == pytest.approx(summary["val_mse"])
    assert summary["loss"] == name and summary["label"].endswith(f"loss={name}")
    assert summary["val_mse"] < epochs[0]["val_mse"] * 1.5 and 5 < summary["test_psnr"] < 60
