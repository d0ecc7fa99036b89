"""How long a model must train to beat PCA with as many numbers: a sweep's validation PSNR against optimiser
steps and against minutes of training, beside PCA at each code size, and where each curve crosses it.

A study asks for this with ``pca = true`` (``studies/builtin/budget.toml``). PSNR here is the mean over the
validation images of 10·log10(4 / MSE), the MSE of each float reconstruction on [-1, 1] (that is, PSNR on
0–255 pixels without rounding the output), read from each run's per-epoch ``val_errors.npy``; PCA is fitted
on the same training faces (the streamed randomized SVD of ``evaluation.baselines``) and scored the same way
on the same validation faces. Curves are means over seeds; minutes are each run's own wall clock (training
and validation), so they say what this machine did, and a run that shared its cores ran slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import load_split, to_unit_range
from ..evaluation.baselines import fit_pca, project
from ..quality.figures import plot_losses
from .points import Point


def psnr_of_mse(mse: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB, peak 255) of per-image MSE on [-1, 1] (a range of 2: peak² = 4)."""
    return 10 * np.log10(4 / np.maximum(mse, 1e-12))


@dataclass
class Curve:
    """One point's mean validation PSNR after each epoch, with its steps and minutes."""

    label: str
    code_size: int
    steps: np.ndarray
    minutes: np.ndarray
    psnr: np.ndarray  # seeds × epochs

    def crossing(self, line: float, axis: str) -> float | None:
        """The first step (or minute) after which the mean curve is above ``line``; None if it never is."""
        above = np.flatnonzero(self.psnr.mean(0) > line)
        return None if not len(above) else float((self.steps if axis == "steps" else self.minutes)[above[0]])


def curve(point: Point) -> Curve | None:
    """The point's curve over the epochs every seed has recorded (None where a run has no per-epoch errors)."""
    runs = point.runs
    epochs = min(len(r.epochs) for r in runs)
    errors = [r.val_error_rows() for r in runs]  # each run's file read once
    if not epochs or any(e is None or len(e) < epochs or not np.isfinite(e[:epochs]).all() for e in errors):
        return None
    psnr = np.array([psnr_of_mse(e[:epochs]).mean(1) for e in errors])
    first = runs[0].epochs[:epochs]
    minutes = np.mean([[row["wall_s"] / 60 for row in r.epochs[:epochs]] for r in runs], axis=0)
    return Curve(point.label, point.summary["code_size"], np.array([row["step"] for row in first]), minutes, psnr)


def pca_lines(point: Point, code_sizes: list[int]) -> dict[int, float]:
    """PCA's mean validation PSNR with k components, for each code size k, fitted on the runs' training faces."""
    spec = point.runs[0].read_config().data_spec()
    train = load_split(spec, "train", progress=False).images
    val = np.array(load_split(spec, "val", progress=False).images)  # a private, writable copy
    mean, basis = fit_pca(train, max(code_sizes))
    coeffs = project(val, mean, basis)
    x = to_unit_range(torch.from_numpy(val)).reshape(len(val), -1)
    lines = {}
    for k in code_sizes:
        decoded = (coeffs[:, :k] @ basis[:k] + mean).clamp(-1, 1)
        lines[k] = float(psnr_of_mse(((decoded - x) ** 2).mean(1).numpy()).mean())
    return lines


def write_budget(points: list[Point], sweep_dir: Path) -> tuple[list[Path], list[str]]:
    """budget_steps.png and budget_minutes.png, and the report's lines: PCA per code size and each crossing."""
    curves = [c for c in map(curve, points) if c is not None]
    if not curves:
        return [], ["No run recorded per-image validation errors; nothing to draw against PCA."]
    lines = pca_lines(points[0], sorted({c.code_size for c in curves}))
    figures = []
    for axis, xlabel in (("steps", "optimiser steps"), ("minutes", "minutes of training (this machine)")):
        data = {c.label: (getattr(c, axis), c.psnr.mean(0)) for c in curves}
        bands = {c.label: (c.psnr.min(0), c.psnr.max(0)) for c in curves if len(c.psnr) > 1}
        for k, value in lines.items():
            x = [0, max(float(getattr(c, axis)[-1]) for c in curves)]
            data[f"PCA, {k} components"] = (x, [value, value])
        path = sweep_dir / f"budget_{axis}.png"
        plot_losses(data, path, xlabel, "validation PSNR (dB)", "Validation PSNR against PCA", log_y=False, bands=bands)
        figures.append(path)
    text = [f"- PCA with {k} components: {v:.2f} dB on the validation faces" for k, v in lines.items()]
    for c in curves:
        best, line = c.psnr.mean(0).max(), lines[c.code_size]
        at_step, at_minute = c.crossing(line, "steps"), c.crossing(line, "minutes")
        where = (
            f"crosses PCA-{c.code_size} after {at_step:,.0f} steps ({at_minute:.1f} min)"
            if at_step is not None
            else f"stays {line - best:.2f} dB below PCA-{c.code_size}"
        )
        seeds = f", {len(c.psnr)} seeds" if len(c.psnr) > 1 else ", 1 seed"
        text.append(
            f"- {c.label}: best {best:.2f} dB after {c.steps[c.psnr.mean(0).argmax()]:,.0f} steps{seeds}; {where}; "
            f"last 10 % of epochs: {_trend(c):+.3f} dB per 1,000 steps"
        )
    return figures, text


def _trend(c: Curve) -> float:
    """Slope of the mean curve over its last tenth of epochs, in dB per 1,000 steps (is it still rising?)."""
    tail = max(2, len(c.steps) // 10)
    steps, psnr = c.steps[-tail:].astype(float), c.psnr.mean(0)[-tail:]
    return float(np.polyfit(steps / 1000, psnr, 1)[0]) if len(steps) > 1 and np.ptp(steps) > 0 else 0.0
