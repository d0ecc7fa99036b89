"""A sweep's results tables, its figures (like the report's), and a written report of what the numbers say.

Everything is read from the run directories (summaries, metrics, per-image errors); nothing is retrained
or re-scored, except the reconstruction figure, which passes the same test images through every point's
first seed. Points with several seeds show the mean and standard deviation over seeds, and curves the
mean with a band.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ..data import load_split
from ..quality.figures import plot_losses, save_labelled_grid
from ..training.rundir import RunDir, SweepDir, finished_runs
from ..training.settings import data_name
from ..use.trained import load
from .budget import write_budget
from .points import Point, group_points
from .stats import METHOD
from .verdicts import all_verdicts

SETTING_COLUMNS = [
    ("run", "name"),
    ("model", "model"),
    ("nf", "nf"),
    ("batch size", "batch_size"),
    ("epochs", "epochs"),
    ("steps", "steps"),
    ("params", "params"),
]
METRIC_COLUMNS = [
    ("train MSE", "train_mse"),
    ("val MSE", "val_mse"),
    ("test MSE", "test_mse"),
    ("test PSNR (dB)", "test_psnr"),
    ("images/s", "train_images_per_s"),
    ("wall s", "wall_s"),
]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key.endswith("mse"):
        return f"{value:.5f}"
    if key == "test_psnr":
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def write_tables(points: list[Point], sweep_dir: Path) -> list[Path]:
    """results.md and results.csv (per point: mean and standard deviation over seeds, and their number) and
    results-runs.csv (one row per run, straight from its summary)."""
    rows = []
    for p in points:
        row = {key: (p.name if key == "name" else p.summary.get(key)) for _, key in SETTING_COLUMNS}
        row["seeds"] = len(p.runs)
        for _, key in METRIC_COLUMNS:
            row[key], row[f"{key}_std"] = p.mean_std(key)
        rows.append(row)
    folder = SweepDir(sweep_dir)
    with open(folder.table("results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(folder.table("results-runs.csv"), "w", newline="") as f:
        keys = [key for _, key in SETTING_COLUMNS] + ["seed"] + [key for _, key in METRIC_COLUMNS]
        writer = csv.DictWriter(f, keys, extrasaction="ignore")
        writer.writeheader()
        for p in points:
            for r in p.runs:
                writer.writerow({**r.summary, "name": p.name, "seed": r.read_config().seed})
    spread = any(len(p.runs) > 1 for p in points)
    header = [h for h, _ in SETTING_COLUMNS] + (["seeds"] if spread else []) + [h for h, _ in METRIC_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        cells = [_cell(key, row[key]) for _, key in SETTING_COLUMNS] + ([str(row["seeds"])] if spread else [])
        for _, key in METRIC_COLUMNS:
            std = row[f"{key}_std"]
            cells.append(_cell(key, row[key]) + (f" ± {_cell(key, std)}" if std is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    note = "\n\nWith several seeds: mean ± standard deviation over seeds; per-run rows in results-runs.csv."
    folder.table("results.md").write_text("\n".join(lines) + (note if spread else "") + "\n")
    return [folder.table(name) for name in ("results.csv", "results-runs.csv", "results.md")]


def _curves(runs: list[RunDir], metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, seeds × values) of one point, cut to the shortest run."""
    key = "val_loss" if metric == "val" else "train_loss"
    rows = [r.epochs if metric == "val" else r.steps for r in runs]
    n = min(len(rs) for rs in rows)
    return np.array([row[x] for row in rows[0][:n]], float), np.array([[row[key] for row in rs[:n]] for rs in rows])


def plot_runs(
    runs: list[RunDir] | list[Point],
    path: Path,
    metric: str = "val",
    x: str = "epoch",
    smooth: int = 1,
    title: str | None = None,
) -> Path:
    """Loss curves of runs or points: ``metric`` val (per epoch) or train (per step); ``x`` epoch, step or
    images. A point with several seeds is drawn as its mean, with a band: min–max over up to three seeds,
    ±1 standard deviation over more."""
    points = [p if isinstance(p, Point) else Point(p.name, [p]) for p in runs]
    curves, bands = {}, {}
    for p in points:
        xs, ys = _curves(p.runs, metric, x)
        curves[p.label] = (xs, ys.mean(0))
        if len(ys) > 1:
            low, high = (ys.min(0), ys.max(0)) if len(ys) <= 3 else (ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0))
            bands[p.label] = (low, high)
    if bands and title:
        few = all(len(p.runs) <= 3 for p in points)
        title += f" (mean over seeds; band: {'min–max' if few else '±1 sd'})"
    xlabel = {"epoch": "epoch", "step": "optimiser step", "images": "training images seen"}[x]
    ylabel = "validation loss" if metric == "val" else "training loss"
    return plot_losses(curves, path, xlabel=xlabel, ylabel=ylabel, title=title, smooth=smooth, bands=bands)


def reconstruction_figure(points: list[Point], path: Path, count: int = 8) -> Path:
    """The same test images through every point (its first seed): inputs on top, one labelled row each."""
    trained = [load(p.runs[0], "best", device="cpu") for p in points]
    images = load_split(trained[0].settings.data_spec(), "test", progress=False).images[:count]
    rows = [images] + [t.reconstruct(images)[1] for t in trained]
    return save_labelled_grid(rows, ["input"] + [p.label for p in points], path)


def write_tables_and_figures(sweep_dir: str | Path, points: list[Point] | None = None) -> list[Path]:
    """The tables, val_loss.png (per epoch), val_loss_steps.png, train_loss.png and reconstructions.png."""
    sweep_dir = Path(sweep_dir)
    points = points or group_points(finished_runs(sweep_dir))
    steps = max(len(r.steps) for p in points for r in p.runs)
    smooth = max(1, steps // 50)
    return [
        *write_tables(points, sweep_dir),
        plot_runs(points, sweep_dir / "val_loss.png", "val", "epoch", title="Validation loss per epoch"),
        plot_runs(points, sweep_dir / "val_loss_steps.png", "val", "step", title="Validation loss per optimiser step"),
        plot_runs(
            points,
            sweep_dir / "train_loss.png",
            "train",
            "step",
            smooth=smooth,
            title="Training loss per step" + (f" (moving mean of {smooth})" if steps >= 100 else ""),
        ),
        reconstruction_figure(points, sweep_dir / "reconstructions.png"),
    ]


BUDGET_NOTE = (
    "Validation PSNR (mean over the validation faces of 10·log10(4 / MSE) of the float reconstruction) after "
    "each epoch, the mean over seeds (band: lowest to highest seed), against optimiser steps and against each "
    "run's minutes of training and validation on its machine; PCA is fitted on the same training faces and "
    "scored the same way."
)


def write_report(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """report.md in the sweep folder: what ran, the table, the figures, and each of the report's claims."""
    sweep_dir = Path(sweep_dir)
    points = group_points(finished_runs(sweep_dir))
    figures = write_tables_and_figures(sweep_dir, points)
    folder = SweepDir(sweep_dir)
    study = folder.study()
    failed = [p for p in folder.record().get("points", []) if isinstance(p, dict) and p.get("status") == "failed"]
    s0, seeds = points[0].summary, sorted({len(p.runs) for p in points})
    overrides = ", ".join(f"{k} = {v}" for k, v in study.get("overrides", {}).items() if k != "data")
    text = [
        f"# {study.get('name', sweep_dir.name)}: {study.get('description', '')}".rstrip(": "),
        "",
        f"{sum(len(p.runs) for p in points)} runs of {len(points)} points on `{data_name(s0['data'])}` "
        f"({s0['splits']['train']:,} training, {s0['splits']['val']:,} validation, {s0['splits']['test']:,} test "
        f"images), on {s0['device']} with {s0['precision']}; {'/'.join(map(str, seeds))} seed(s) per point. "
        "The report trained on all of CelebA (162,770 training images): at a smaller scale the same "
        "comparisons can come out differently, so read each verdict with the sizes above."
        + (f" Settings given on the command line for every run: {overrides}." if overrides else ""),
        "",
        folder.table("results.md").read_text().strip(),
        "",
        "## What the numbers say about the report's claims",
        "",
        f"Decision rule: {METHOD}. A claim is **supported** only when the interval of its effect excludes zero "
        "in the claimed direction, **contradicted** when it excludes zero the other way, and **inconclusive** "
        "otherwise. Effects are in dB of PSNR (positive: the first configuration has the lower MSE) and as "
        "relative MSE. Each comparison is made at equal epochs (the report's authors' footing), at equal "
        "optimiser steps and at equal training compute (FLOPs per image × images seen); the last two use the "
        "validation images after each run's last epoch within the smaller budget.",
        "",
        *all_verdicts(points),
        "",
        "## Figures",
        "",
        *[f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"],
    ]
    if study.get("pca"):
        budget_figures, lines = write_budget(points, sweep_dir)
        text += ["", "## Against PCA with as many numbers", "", f"{BUDGET_NOTE}", "", *lines, ""]
        text += [f"![{p.stem}]({p.name})" for p in budget_figures]
    if failed:
        text += ["", "## Failed points", "", *[f"- {p['name']}: {p['error']}" for p in failed]]
    path = Path(out) if out else folder.report_path
    path.write_text("\n".join(text) + "\n")
    return path
