"""The run directory: the one module that knows its layout, its state and its files.

    RUN/config.json              the resolved settings
    RUN/metrics.csv              a row per step (training loss) and per epoch (mean train, full validation)
    RUN/tb/                      TensorBoard event files of the same numbers, every scalar at its optimiser step
                                 (epoch/epoch says which epoch a step ended)
    RUN/checkpoints/last.safetensors, last.state.safetensors, best.safetensors
                                 (with --ema: last.ema.safetensors, and best is the average's)
    RUN/summary.json             final scores, parameters, speed, wall time: the run finished
    RUN/failed.json              why the run's last attempt failed (removed when it starts again)
    RUN/reconstructions.png      fixed test images (above) and their reconstructions (below)
    RUN/loss.png                 training and validation loss curves
    RUN/eval-<split>.json        written by ``celebae evaluate``
    RUN/detector.safetensors     an anomaly detector's statistics and threshold (``celebae anomalies --fpr``)
    RUN/test_errors.npy          per-image test MSE of the final model, in the test split's order
    RUN/val_errors.npy           per-image validation MSE after each epoch (epochs × images; one process only)
    RUN/.lock, RUN/.lock.json    the writer's lock (``claim.RunLock``) and who holds it

``RunDir`` is also the record of a run that sweeps, reports, plots and the demo read. Who may start
writing one, and when, is ``claim``'s concern.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CelebaeError
from ..files import read_json_if_any, regular_file
from .settings import Settings, load_settings

DETECTOR = "detector.safetensors"  # also in a model folder: the threshold travels with the model
METRIC_FIELDS = [
    "kind",
    "epoch",
    "step",
    "images",
    "train_loss",
    "val_loss",
    "images_per_s",
    "wall_s",
    "train_mse",
    "val_mse",
    "lr",
    "raw_val_mse",
]


class RunDir:
    """One run directory: its paths, its state, and (read once, on first use) its summary and metrics."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def default_for(cls, settings: Settings) -> RunDir:
        return cls(settings.out or Path("runs") / settings.run_name())

    # ---- paths ------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def failure_path(self) -> Path:
        return self.path / "failed.json"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    @property
    def lock_holder_path(self) -> Path:
        return self.path / ".lock.json"

    @property
    def tb_dir(self) -> Path:
        return self.path / "tb"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def ema_weights(self, which: str = "last") -> Path:
        """The weight average's copy of ``which`` (with --ema; ``best`` itself is the average then)."""
        return self.checkpoints / f"{which}.ema.safetensors"

    def weights(self, which: str = "last") -> Path:
        """``checkpoints/<which>.safetensors``; ``which`` is best or last."""
        if which not in ("best", "last"):
            raise CelebaeError(f"checkpoint must be best or last, got {which!r}")
        return self.checkpoints / f"{which}.safetensors"

    @property
    def training_state(self) -> Path:
        return self.checkpoints / "last.state.safetensors"

    @property
    def reconstructions_png(self) -> Path:
        return self.path / "reconstructions.png"

    @property
    def loss_png(self) -> Path:
        return self.path / "loss.png"

    def eval_path(self, split: str) -> Path:
        return self.path / f"eval-{split}.json"

    @property
    def test_errors_path(self) -> Path:
        return self.path / "test_errors.npy"

    @property
    def val_errors_path(self) -> Path:
        return self.path / "val_errors.npy"

    # ---- state ------------------------------------------------------------------------------------------------
    def run_files(self) -> list[Path]:
        """The files and folders of a run that are here (none: the directory is free to start a run in)."""
        if not self.path.is_dir():
            return []
        named = [self.config_path, self.summary_path, self.metrics_path, self.failure_path, self.tb_dir]
        named += [self.checkpoints, self.reconstructions_png, self.loss_png, *self.path.glob("eval-*.json")]
        named += [self.test_errors_path, self.val_errors_path]
        return [p for p in named if p.is_file() or (p.is_dir() and any(p.iterdir()))]

    @property
    def state(self) -> str:
        """finished (a summary), failed (its last attempt failed), partial (started, not finished) or new."""
        if self.summary_path.exists():
            return "finished"
        if self.failure_path.exists():
            return "failed"
        return "partial" if self.run_files() else "new"

    @property
    def resumable(self) -> bool:
        return self.weights("last").exists() and self.state != "finished"

    def resume_settings(self, changes: dict[str, Any] | None = None) -> Settings:
        """The settings to resume this run with: the stored ones, with ``changes`` applied (``epochs=16``).

        ``celebae train --resume`` uses it with the flags given; ``celebae.train(settings, start="resume")``
        checks whatever settings it is given against the same rules."""
        if not self.config_path.exists():
            raise CelebaeError(f"nothing to resume in {self.path}: no config.json; drop --resume to start a new run")
        values = {**self.read_config().to_dict(), **(changes or {}), "out": str(self.path)}
        return Settings.from_dict(values, str(self.config_path))

    # ---- files ------------------------------------------------------------------------------------------------
    def read_config(self) -> Settings:
        return load_settings(self.config_path)

    def write_config(self, settings: Settings) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        _write_json(self.config_path, settings.to_dict())

    def write_summary(self, summary: dict[str, Any]) -> None:
        _write_json(self.summary_path, summary)
        self.__dict__["summary"] = summary

    def write_test_errors(self, mse: np.ndarray) -> None:
        _save_npy(self.test_errors_path, mse.astype(np.float32))

    def add_val_errors(self, epochs_before: int, mse: np.ndarray) -> None:
        """Append one epoch's per-image validation errors after the first ``epochs_before`` rows (a resumed
        run replaces any rows a killed attempt wrote past its checkpoint)."""
        rows = _load_npy(self.val_errors_path)
        rows = rows[:epochs_before] if rows is not None else np.empty((0, len(mse)))
        if rows.shape[1:] != mse.shape or len(rows) != epochs_before:
            rows = np.full((epochs_before, len(mse)), np.nan, np.float32)  # unknown epochs (an older run)
        _save_npy(self.val_errors_path, np.vstack([rows, mse[None]]).astype(np.float32))

    def evaluation(self, split: str = "test") -> dict[str, Any] | None:
        """What ``celebae evaluate`` recorded for ``split`` (None where it has not run)."""
        return read_json_if_any(self.eval_path(split), "evaluation record")

    def test_errors(self) -> np.ndarray | None:
        return _load_npy(self.test_errors_path)

    def val_errors(self, epoch: int) -> np.ndarray | None:
        """Per-image validation MSE after ``epoch`` (1-based), where recorded."""
        rows = self.val_error_rows()
        if rows is None:
            return None
        return rows[epoch - 1] if 0 < epoch <= len(rows) and np.isfinite(rows[epoch - 1]).all() else None

    def val_error_rows(self) -> np.ndarray | None:
        """Per-image validation MSE, a row per epoch (NaN where an epoch was not recorded); None without the file."""
        return _load_npy(self.val_errors_path)

    def mark_failed(self, error: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(self.failure_path, {"error": error})

    def clear_failure(self) -> None:
        self.failure_path.unlink(missing_ok=True)

    # ---- the record of a run ----------------------------------------------------------------------------------
    def forget(self) -> None:
        """Drop the summary and metrics read so far (the run's files were removed or rewritten)."""
        self.__dict__.pop("summary", None)
        self.__dict__.pop("metrics", None)

    @cached_property
    def summary(self) -> dict[str, Any] | None:
        return read_json_if_any(self.summary_path, "run summary")

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    @property
    def label(self) -> str:
        return self.summary["label"] if self.summary else self.name

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return [r for r in self.metrics if r["kind"] == "epoch"]

    @property
    def steps(self) -> list[dict[str, Any]]:
        return [r for r in self.metrics if r["kind"] == "step"]


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1) + "\n")


def _load_npy(path: Path) -> np.ndarray | None:
    """A run's per-image error file, or None where it has none."""
    try:
        return np.load(regular_file(path, "error file"))
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise CelebaeError(f"error file {path} is damaged ({err}); train the run again") from None


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """``metrics.csv`` as dicts, numbers parsed (blank → None)."""
    path = RunDir(run).metrics_path
    if not path.exists():
        raise CelebaeError(f"{path} does not exist; is {run} a celebae run directory?")
    try:
        with open(regular_file(path, "metrics file"), newline="") as f:
            return [
                {k: (v if k == "kind" else (float(v) if v else None)) for k, v in r.items()} for r in csv.DictReader(f)
            ]
    except (ValueError, csv.Error) as err:
        raise CelebaeError(f"metrics file {path} is damaged ({err}); it is not a celebae metrics log") from None


class SweepDir:
    """A sweep folder: its runs (``POINT`` or ``POINT/seed-K``, each a ``RunDir``) and the files about them.

    SWEEP/study.json            the study and the overrides it ran with
    SWEEP/sweep.json            each run's status after the last pass (written under .sweep.lock)
    SWEEP/results.csv, results-runs.csv, results.md   the tables (per point, per run)
    SWEEP/*.png, report.md      the figures and the report (``celebae report``)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def run(self, point: str, seed: int | None = None) -> RunDir:
        """The run directory of ``point`` (``POINT/seed-K`` where the study has seeds)."""
        return RunDir(self.path / point if seed is None else self.path / point / f"seed-{seed}")

    @property
    def study_path(self) -> Path:
        return self.path / "study.json"

    @property
    def record_path(self) -> Path:
        return self.path / "sweep.json"

    @property
    def lock_path(self) -> Path:
        return self.path / ".sweep.lock"

    def table(self, name: str) -> Path:
        """``results.csv``, ``results-runs.csv``, ``results.md``: the sweep's tables."""
        return self.path / name

    @property
    def report_path(self) -> Path:
        return self.path / "report.md"

    def study(self) -> dict[str, Any]:
        return read_json_if_any(self.study_path, "study record", {})

    def record(self) -> dict[str, Any]:
        """``sweep.json`` (empty where no pass has finished)."""
        return read_json_if_any(self.record_path, "sweep record", {})


def finished_runs(sweep_dir: str | Path) -> dict[str, RunDir]:
    """The finished runs in a sweep folder by their path there (``POINT`` or ``POINT/seed-K``), in the order
    its ``sweep.json`` gives (then by name)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise CelebaeError(f"sweep folder {sweep_dir} does not exist")
    found = [p.parent for p in (*sweep_dir.glob("*/summary.json"), *sweep_dir.glob("*/seed-*/summary.json"))]
    runs = {p.relative_to(sweep_dir).as_posix(): RunDir(p) for p in sorted(found)}
    order = [p.get("name") for p in SweepDir(sweep_dir).record().get("points", []) if isinstance(p, dict)]
    names = [n for n in order if n in runs] + [n for n in runs if n not in order]
    if not names:
        raise CelebaeError(f"{sweep_dir} holds no finished runs (no */summary.json); run `celebae sweep` first")
    return {n: runs[n] for n in names}


class MetricsLog:
    """``metrics.csv`` (and TensorBoard), append-only; a resumed run first drops the rows past its checkpoint:
    step rows after its step, and epoch rows of epochs it has not completed (a kill may land between an
    epoch's row and the checkpoint that ends the epoch, which a mid-epoch save at the epoch's last step
    precedes: that epoch is validated and its row written again)."""

    def __init__(self, run: RunDir, resume_at: tuple[int, int] | None):
        """``resume_at``: (optimiser steps, completed epochs) of the checkpoint resumed from; None: a new run."""
        from tensorboardX import SummaryWriter

        self.path = run.metrics_path
        rows = []
        if resume_at is not None and self.path.exists():
            step, epochs = resume_at
            with open(regular_file(self.path, "metrics file"), newline="") as f:
                rows = [
                    r
                    for r in csv.DictReader(f)
                    if int(r["step"]) <= step and (r["kind"] != "epoch" or int(float(r["epoch"])) <= epochs)
                ]
        self._write(rows, "w")
        # TensorBoard reads every event file in the folder: one stream, rewritten from the kept rows, so a
        # killed attempt's events never overlap the resumed ones
        shutil.rmtree(run.tb_dir, ignore_errors=True)
        self.tb = SummaryWriter(str(run.tb_dir))
        self._events([{k: (v if k == "kind" else float(v) if v else None) for k, v in r.items()} for r in rows])

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        with open(self.path, mode, newline="") as f:
            writer = csv.DictWriter(f, METRIC_FIELDS, extrasaction="ignore")
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self._write([{k: _fmt(r.get(k)) for k in METRIC_FIELDS} for r in rows], "a")
        self._events(rows)

    def _events(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            if r["kind"] == "step":
                self.tb.add_scalar("train/loss_step", r["train_loss"], int(r["step"]))
                if r.get("lr") is not None:
                    self.tb.add_scalar("train/lr", r["lr"], int(r["step"]))
            else:  # on the same axis as the steps' (the optimiser step that ended the epoch), so they share a plot
                step = int(r["step"])
                self.tb.add_scalar("epoch/epoch", int(r["epoch"]), step)
                for key in ("train_loss", "val_loss", "val_mse", "raw_val_mse"):
                    if r.get(key) is not None:
                        self.tb.add_scalar(f"epoch/{key}", r[key], step)
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.8g}"
    return "" if value is None else value
