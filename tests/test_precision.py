"""The default fast path (bf16 autocast + channels_last where the machine supports it) learns like fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from celebae import Settings, read_metrics, train
from celebae.training.device import default_precision, tune_allocator

# Stated tolerance: over 48 steps on real faces, each epoch's validation loss within 6 % of fp32's and the
# per-step training losses within 5 % on average.
VAL_RTOL, STEP_RTOL = 0.06, 0.05


def test_default_path_matches_fp32_on_real_faces(celeba_sample: Path, tmp_path: Path) -> None:
    base = dict(
        data=str(celeba_sample),
        nf=16,
        batch_size=16,
        epochs=3,
        lr=2e-3,
        limit_train=256,
        limit_val=64,
        limit_test=32,
        log_every=4,
    )
    runs = {}
    for name, precision in (("fp32", "fp32"), ("default", "auto")):
        train(Settings(**base, precision=precision, out=str(tmp_path / name)), progress=False)
        runs[name] = read_metrics(tmp_path / name)
    steps = {k: np.array([r["train_loss"] for r in v if r["kind"] == "step"]) for k, v in runs.items()}
    vals = {k: np.array([r["val_loss"] for r in v if r["kind"] == "epoch"]) for k, v in runs.items()}
    assert len(steps["fp32"]) == len(steps["default"]) == 48
    np.testing.assert_allclose(vals["default"], vals["fp32"], rtol=VAL_RTOL)
    assert np.mean(np.abs(steps["default"] / steps["fp32"] - 1)) < STEP_RTOL
    assert vals["default"][-1] < vals["default"][0]  # and it learns


def test_defaults_follow_the_hardware() -> None:
    assert default_precision(torch.device("cpu")) in ("fp32", "bf16")
    assert default_precision(torch.device("meta")) == "fp32"
    assert tune_allocator() in (True, False)
    settings = Settings()
    assert settings.precision == "auto" and settings.channels_last is None
