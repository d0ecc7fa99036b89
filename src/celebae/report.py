"""A sweep's results table, its figures (like the report's), and a written report of what the numbers say.

Everything is read from the run directories (``summary.json``, ``metrics.csv``, checkpoints); nothing
is recomputed that a run already recorded, except the reconstruction figure, which passes the same
test images through every run.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

from .data import load_split
from .plots import plot_losses, save_labelled_grid
from .rundir import RunDir, finished_runs
from .runs import load

TABLE_COLUMNS = [
    ("run", "name"),
    ("model", "model"),
    ("nf", "nf"),
    ("batch size", "batch_size"),
    ("epochs", "epochs"),
    ("steps", "steps"),
    ("params", "params"),
    ("train MSE", "train_mse"),
    ("val MSE", "val_mse"),
    ("test MSE", "test_mse"),
    ("test PSNR (dB)", "test_psnr"),
    ("images/s", "train_images_per_s"),
    ("wall s", "wall_s"),
]
CLEAR = 0.01  # relative differences below 1 % are reported as no clear difference (one seed per point)


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


def write_table(runs: list[RunDir], sweep_dir: Path) -> tuple[Path, Path]:
    """results.csv (full precision) and results.md, one row per run, numbers straight from summary.json."""
    rows = [{key: (r.name if key == "name" else r.summary.get(key)) for _, key in TABLE_COLUMNS} for r in runs]
    with open(sweep_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, [key for _, key in TABLE_COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(h for h, _ in TABLE_COLUMNS) + " |", "|---" * len(TABLE_COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(key, row[key]) for _, key in TABLE_COLUMNS) + " |" for row in rows]
    (sweep_dir / "results.md").write_text("\n".join(lines) + "\n")
    return sweep_dir / "results.csv", sweep_dir / "results.md"


def plot_runs(
    runs: list[RunDir], path: Path, metric: str = "val", x: str = "epoch", smooth: int = 1, title: str | None = None
) -> Path:
    """Loss curves of several runs: ``metric`` val (per epoch) or train (per step); ``x`` epoch, step or images."""
    curves = {}
    for r in runs:
        rows = r.epochs if metric == "val" else r.steps
        key = "val_loss" if metric == "val" else "train_loss"
        curves[r.label] = ([m[x] for m in rows], [m[key] for m in rows])
    xlabel = {"epoch": "epoch", "step": "optimiser step", "images": "training images seen"}[x]
    ylabel = "validation MSE" if metric == "val" else "training MSE"
    return plot_losses(curves, path, xlabel=xlabel, ylabel=ylabel, title=title, smooth=smooth)


def reconstruction_figure(runs: list[RunDir], path: Path, count: int = 8) -> Path:
    """The same test images through every run: inputs on top, one labelled row per run."""
    trained = [load(r, "best", device="cpu") for r in runs]
    images = load_split(trained[0].settings.data_spec(), "test", progress=False).images[:count]
    rows = [images] + [t.reconstruct(images)[1] for t in trained]
    return save_labelled_grid(rows, ["input"] + [r.label for r in runs], path)


def write_tables_and_figures(sweep_dir: str | Path, runs: list[RunDir] | None = None) -> list[Path]:
    """results.csv/.md, val_loss.png (per epoch), val_loss_steps.png, train_loss.png, reconstructions.png
    (of ``runs`` when already read)."""
    sweep_dir = Path(sweep_dir)
    runs = runs or finished_runs(sweep_dir)
    steps = max(len(r.steps) for r in runs)
    return [
        *write_table(runs, sweep_dir),
        plot_runs(runs, sweep_dir / "val_loss.png", "val", "epoch", title="Validation loss per epoch"),
        plot_runs(runs, sweep_dir / "val_loss_steps.png", "val", "step", title="Validation loss per optimiser step"),
        plot_runs(
            runs,
            sweep_dir / "train_loss.png",
            "train",
            "step",
            smooth=max(1, steps // 50),
            title="Training loss per step" + (f" (moving mean of {max(1, steps // 50)})" if steps >= 100 else ""),
        ),
        reconstruction_figure(runs, sweep_dir / "reconstructions.png"),
    ]


# ---- claims --------------------------------------------------------------------------------------------------------


def _compare(a: float, b: float) -> int:
    """-1 if a is clearly lower than b, 1 if clearly higher, 0 if within CLEAR."""
    if abs(a - b) <= CLEAR * max(abs(a), abs(b)):
        return 0
    return -1 if a < b else 1


def _verdict(outcomes: list[int], want: int) -> str:
    if not outcomes:
        return "not testable here"
    if all(o == want for o in outcomes):
        return "**supported**"
    if all(o == -want for o in outcomes):
        return "**contradicted**"
    if all(o == 0 for o in outcomes):
        return "**no clear difference**"
    return "**mixed**"


def _key(r: RunDir, *fields: str) -> tuple:
    return tuple(r.summary[f] for f in fields)


def claim_conv_beats_pool(runs: list[RunDir]) -> list[str]:
    pairs = [
        (c, p)
        for c in runs
        for p in runs
        if c.summary["model"] == "conv"
        and p.summary["model"] == "pool"
        and _key(c, "batch_size", "epochs") == _key(p, "batch_size", "epochs")
    ]
    lines, val_out, speed_out, params_out = [], [], [], []
    for c, p in pairs:
        v = _compare(c.summary["val_mse"], p.summary["val_mse"])
        val_out.append(v)
        speed_out.append(_compare(p.summary["train_images_per_s"], c.summary["train_images_per_s"]))
        params_out.append(_compare(p.summary["params"], c.summary["params"]))
        lines.append(
            f"  - batch {c.summary['batch_size']}: validation MSE conv {c.summary['val_mse']:.5f} vs pool "
            f"{p.summary['val_mse']:.5f}; test PSNR {c.summary['test_psnr']:.2f} vs {p.summary['test_psnr']:.2f}"
            f" dB; {c.summary['train_images_per_s']:.0f} vs {p.summary['train_images_per_s']:.0f} images/s; "
            f"{c.summary['params']:,} vs {p.summary['params']:,} parameters"
        )
    return [
        f"- *Model 1 (conv) beats Model 2 (pool) on validation loss* (equal epochs and, at equal batch size, "
        f"equal steps): {_verdict(val_out, -1)}",
        *lines,
        f"- *Model 2 trains faster with far fewer parameters*: faster {_verdict(speed_out, 1)}, fewer parameters "
        f"{_verdict(params_out, -1)}",
    ]


def _trend(runs: list[RunDir], vary: str, fixed: str, at_equal_steps: bool) -> tuple[list[int], list[str]]:
    """Does validation loss fall as ``vary`` grows, ``fixed`` held? Adjacent pairs of conv runs."""
    outcomes, lines = [], []
    conv = [r for r in runs if r.summary["model"] == "conv"]
    for value in sorted({r.summary[fixed] for r in conv}):
        group = sorted((r for r in conv if r.summary[fixed] == value), key=lambda r: r.summary[vary])
        for small, large in itertools.pairwise(group):
            if at_equal_steps:
                budget = min(small.summary["steps"], large.summary["steps"])
                a, b = small.val_at_step(budget), large.val_at_step(budget)
                if a is None or b is None:
                    continue
                where = f"at ≤ {budget:,} steps (epoch {a[0]} vs {b[0]})"
                va, vb = a[1], b[1]
            else:
                where, va, vb = (
                    f"after {small.summary['epochs']} epochs",
                    small.summary["val_mse"],
                    large.summary["val_mse"],
                )
            outcomes.append(_compare(vb, va))
            lines.append(
                f"  - {fixed} {value}: {vary} {small.summary[vary]} → {large.summary[vary]}, validation MSE "
                f"{va:.5f} → {vb:.5f} {where}"
            )
    return outcomes, lines


def claim_bigger_is_better(runs: list[RunDir]) -> list[str]:
    out = []
    for vary, fixed in (("batch_size", "nf"), ("nf", "batch_size")):
        for equal_steps in (False, True):
            outcomes, lines = _trend(runs, vary, fixed, equal_steps)
            if not outcomes:
                continue
            how = "at equal optimiser steps" if equal_steps else "at equal epochs"
            out += [f"- *Loss falls as {vary.replace('_', ' ')} grows* ({how}): {_verdict(outcomes, -1)}", *lines]
    return out


def claim_larger_runs_beat_baseline(runs: list[RunDir]) -> list[str]:
    base = [r for r in runs if r.summary["model"] == "conv" and _key(r, "batch_size", "nf") == (64, 64)]
    larger = [
        r
        for r in runs
        if r.summary["model"] == "conv" and r not in base and r.summary["batch_size"] >= 64 and r.summary["nf"] >= 64
    ]
    if not base or not larger:
        return []
    b = base[0]
    outcomes, lines = [], []
    for r in larger:
        budget = min(b.summary["steps"], r.summary["steps"])
        at_b, at_r = b.val_at_step(budget), r.val_at_step(budget)
        outcomes.append(_compare(r.summary["val_mse"], b.summary["val_mse"]))
        steps_text = f"; at ≤ {budget:,} steps {at_r[1]:.5f} vs {at_b[1]:.5f}" if at_b and at_r else ""
        lines.append(
            f"  - {r.label}: validation MSE {r.summary['val_mse']:.5f} vs {b.summary['val_mse']:.5f} "
            f"after {r.summary['epochs']} epochs{steps_text}"
        )
    verdict = "**contradicted** (a larger run is clearly lower)" if -1 in outcomes else "**supported**"
    return [f"- *Larger batches and widths do not beat [bs 64, nf 64]* (equal epochs): {verdict}", *lines]


def write_report(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """report.md in the sweep folder: what ran, the table, the figures, and each of the report's claims."""
    sweep_dir = Path(sweep_dir)
    runs = finished_runs(sweep_dir)
    figures = write_tables_and_figures(sweep_dir, runs)
    study = json.loads((sweep_dir / "study.json").read_text()) if (sweep_dir / "study.json").exists() else {}
    failed = []
    if (sweep_dir / "sweep.json").exists():
        failed = [p for p in json.loads((sweep_dir / "sweep.json").read_text())["points"] if p["status"] == "failed"]
    s0 = runs[0].summary
    claims = claim_conv_beats_pool(runs) if any(r.summary["model"] == "pool" for r in runs) else []
    claims += claim_bigger_is_better(runs) + claim_larger_runs_beat_baseline(runs)
    text = [
        f"# {study.get('name', sweep_dir.name)}: {study.get('description', '')}".rstrip(": "),
        "",
        f"{len(runs)} runs on `{s0['data']}` ({s0['splits']['train']:,} training, {s0['splits']['val']:,} validation, "
        f"{s0['splits']['test']:,} test images), on {s0['device']} with {s0['precision']}; one seed per point. "
        "The report trained on all of CelebA (162,770 training images): at a smaller scale the same "
        "comparisons can come out differently, so read each verdict with the sizes above.",
        "",
        (sweep_dir / "results.md").read_text().strip(),
        "",
        "## What the numbers say about the report's claims",
        "",
        f"Differences under {CLEAR:.0%} count as no clear difference. Batch size changes the number of optimiser "
        "steps per epoch, so comparisons are made at equal epochs and, where batch sizes differ, at equal steps.",
        "",
        *(claims or ["- none of the report's comparisons applies to these runs"]),
        "",
        "## Figures",
        "",
        *[f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"],
    ]
    if failed:
        text += ["", "## Failed points", "", *[f"- {p['name']}: {p['error']}" for p in failed]]
    path = Path(out) if out else sweep_dir / "report.md"
    path.write_text("\n".join(text) + "\n")
    return path
