"""The budget report: validation PSNR against steps and minutes beside PCA with as many numbers, and where a
curve crosses it; and the built-in budget study as it ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import flags

from celebae.cli import main
from celebae.studies.budget import Curve, psnr_of_mse
from celebae.studies.sweep import expand, load_study


def test_psnr_of_mse_is_psnr_on_0_255_pixels() -> None:
    # an error of 1 grey level everywhere: MSE on [-1, 1] is (1 / 127.5)², PSNR 20·log10(255) = 48.13 dB
    assert psnr_of_mse(np.array([(1 / 127.5) ** 2]))[0] == pytest.approx(48.1308, abs=1e-3)


def test_a_curve_crosses_where_its_mean_first_rises_above_the_line() -> None:
    c = Curve("x", 32, np.array([10, 20, 30, 40]), np.array([1.0, 2.0, 3.0, 4.0]), np.array([[18, 19, 21, 22.0]]))
    assert c.crossing(20.0, "steps") == 30 and c.crossing(20.0, "minutes") == 3.0
    assert c.crossing(25.0, "steps") is None


def test_a_study_with_pca_reports_steps_minutes_and_the_lines(tmp_path: Path, capsys) -> None:
    study = tmp_path / "b.toml"
    study.write_text(
        'name = "b"\npca = true\n[settings]\nnf = 4\nbatch_size = 16\nepochs = 3\ncode_size = 32\n'
        '[grid]\nmodel = ["conv", "lincode"]\n'
    )
    out = tmp_path / "sweep"
    values = flags(data="synthetic", synthetic_size=400, limit_train=64, limit_val=32, limit_test=16)
    assert main(["sweep", str(study), "--out", str(out), *values]) == 0
    assert main(["report", str(out)]) == 0, capsys.readouterr().err
    text = (out / "report.md").read_text()
    assert "## Against PCA with as many numbers" in text and "- PCA with 32 components: " in text
    for label in ("conv bs=16 nf=4 code=32", "lincode bs=16 nf=4 code=32"):
        line = next(li for li in text.splitlines() if li.startswith(f"- {label}:"))
        assert "best" in line and ("crosses PCA-32 after" in line or "below PCA-32" in line)
    assert (out / "budget_steps.png").stat().st_size > 0 and (out / "budget_minutes.png").stat().st_size > 0


def test_the_budget_study_as_it_ships() -> None:
    study = load_study("budget")
    assert study.pca and study.seeds == [0, 1, 2]
    runs = expand(study, Path("/tmp/budget"))
    assert len(runs) == 12 and {(s.model, s.code_size) for s in runs} == {
        (m, k) for m in ("conv", "lincode") for k in (32, 256)
    }
    s = runs[0]
    assert s.epochs * (1560 // s.batch_size) >= 20_000  # the sample's 1,560 training faces: ≥ 20,000 steps
    assert (s.augment, s.lr_schedule, s.ema) == ("flip-shift", "cosine", 0.999)
