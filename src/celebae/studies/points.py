"""Groups of runs that differ only in their seed (a study's points), and their errors at a stated footing.

A footing says what two configurations are compared at: the same number of epochs (what the report's
authors did), the same number of optimiser steps, or the same training compute (FLOPs per image × images
seen). At equal epochs the errors are each run's final per-image test errors; at equal steps or compute,
each run's per-image validation errors after its last epoch within the budget (the smaller of the two
configurations' totals).
"""

from __future__ import annotations

import functools
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CelebaeError
from ..models import build_model
from ..training.flops import training_flops_per_image
from ..training.rundir import RunDir

FOOTINGS = {
    "epochs": "equal epochs",
    "steps": "equal optimiser steps",
    "compute": "equal training compute",
}


@dataclass
class Point:
    """One configuration: its runs, one per seed (seed order)."""

    name: str
    runs: list[RunDir]

    @property
    def summary(self) -> dict[str, Any]:
        return self.runs[0].summary

    @property
    def label(self) -> str:
        return self.runs[0].label

    def values(self, key: str) -> list[float]:
        return [r.summary[key] for r in self.runs if r.summary.get(key) is not None]

    def mean_std(self, key: str) -> tuple[float | None, float | None]:
        values = self.values(key)
        if not values:
            return None, None
        return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)

    @functools.cached_property
    def flops_per_image(self) -> float:
        settings = self.runs[0].read_config()
        with torch.device("meta"):  # shapes only: no memory for nf 128's 106 M weights
            return training_flops_per_image(build_model(settings.model, **settings.model_kwargs()))

    def total(self, footing: str) -> float:
        """What the whole run spent, in the footing's unit (the runs of a point spend the same)."""
        if footing == "steps":
            return self.summary["steps"]
        if footing == "compute":
            return self.flops_per_image * self.summary["images_seen"]
        return self.summary["epochs"]

    def errors(self, footing: str, budget: float) -> tuple[np.ndarray, str] | None:
        """(seeds × images per-image MSE, where they come from) at ``budget`` of ``footing``; None where a run
        has no such record."""
        if footing == "epochs":
            rows = [r.test_errors() for r in self.runs]
            epochs = self.summary["epochs"]
            where = f"after {epochs} epoch{'s' if epochs != 1 else ''}, test images"
        else:
            epochs = [self._last_epoch_within(r, footing, budget) for r in self.runs]
            if None in epochs:
                return None
            rows = [r.val_errors(e) for r, e in zip(self.runs, epochs, strict=True)]
            where = f"epoch {epochs[0]}, validation images"
        if any(row is None for row in rows) or len({len(row) for row in rows}) != 1:
            return None
        return np.stack(rows), where

    def _last_epoch_within(self, run: RunDir, footing: str, budget: float) -> int | None:
        cost = (lambda row: row["step"]) if footing == "steps" else (lambda row: self.flops_per_image * row["images"])
        within = [int(row["epoch"]) for row in run.epochs if cost(row) <= budget * (1 + 1e-9)]
        return within[-1] if within else None


def group_points(runs: dict[str, RunDir]) -> list[Point]:
    """Runs named ``POINT`` or ``POINT/seed-K`` (as ``rundir.finished_runs`` gives them) grouped by point."""
    groups: dict[str, list[RunDir]] = {}
    for name, run in runs.items():
        groups.setdefault(name.split("/seed-")[0], []).append(run)
    return [Point(name, sorted(rs, key=lambda r: r.read_config().seed)) for name, rs in groups.items()]


def expand_runs(patterns: list[str]) -> list[RunDir]:
    """Run directories from paths or globs; a point folder stands for its ``seed-*`` runs."""
    runs: list[RunDir] = []
    for pattern in patterns:
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not paths:
            raise CelebaeError(f"{pattern} matches no run directory")
        for path in map(Path, paths):
            found = [path] if RunDir(path).state == "finished" else sorted(path.glob("seed-*"))
            found = [p for p in found if RunDir(p).state == "finished"]
            if not found:
                raise CelebaeError(f"{path} is neither a finished run nor a folder of finished seed-* runs")
            runs += [RunDir(p) for p in found]
    return runs
