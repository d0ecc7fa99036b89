"""Figures like the report's: reconstruction grids (inputs above, outputs below) and loss curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import CelebaeError

MAX_GRID_IMAGES = 64  # images a user may ask for in one row of a figure (a strip, neighbours, extremes)
MAX_COLUMNS = 2 * MAX_GRID_IMAGES  # what any grid draws in a row (a strip adds its two ends)


def picture_path(path: str | Path, plot: Any = None) -> Path:
    """``path`` with a picture format Pillow (or, for a ``plot``, matplotlib) can write, its folder made; a
    one-line error for a name without one."""
    path = Path(path)
    suffix = path.suffix.lower()
    if plot is not None:
        ok = suffix[1:] in plot.canvas.get_supported_filetypes()
    else:
        ok = Image.registered_extensions().get(suffix) in Image.SAVE
    if not ok:
        kinds = ".png, .pdf or .svg" if plot is not None else ".png, .jpg or .webp"
        raise CelebaeError(f"cannot write a picture to {path}: end its name in {kinds}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def image_grid(
    rows: Sequence[np.ndarray | torch.Tensor], pad: int = 2, fill: int = 255, margin: int | None = None
) -> Image.Image:
    """Rows of uint8 N×3×H×W images → one picture, ``pad`` pixels between cells and ``margin`` (default
    ``pad``) around them."""
    rows = [r.cpu().numpy() if torch.is_tensor(r) else np.asarray(r) for r in rows]
    m = pad if margin is None else margin
    cols = max(len(r) for r in rows)
    if cols > MAX_COLUMNS:
        raise CelebaeError(f"a grid row holds at most {MAX_COLUMNS} images, got {cols}; pass fewer")
    _, h, w = rows[0].shape[1:]
    canvas = np.full((len(rows) * (h + pad) - pad + 2 * m, cols * (w + pad) - pad + 2 * m, 3), fill, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = m + i * (h + pad), m + j * (w + pad)
            canvas[y : y + h, x : x + w] = img.transpose(1, 2, 0)
    return Image.fromarray(canvas)


def save_grid(rows: Sequence[np.ndarray | torch.Tensor], path: str | Path) -> Path:
    path = picture_path(path)
    image_grid(rows).save(path)
    return path


def save_labelled_grid(rows: Sequence[np.ndarray | torch.Tensor], labels: Sequence[str], path: str | Path) -> Path:
    """A grid with each row's label in a left margin (for comparing runs on the same images)."""
    from PIL import ImageDraw

    path = picture_path(path)
    grid = image_grid(rows)
    margin = 8 + 6 * max(len(label) for label in labels)
    canvas = Image.new("RGB", (grid.width + margin, grid.height), "white")
    canvas.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    cell = (grid.height - 2) / len(rows)
    for i, label in enumerate(labels):
        draw.text((4, int(2 + i * cell + cell / 2 - 5)), label, fill="black")
    canvas.save(path)
    return path


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    return np.convolve(y, np.ones(window) / window, mode="valid")


def _axes(size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size, dpi=120)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        path = picture_path(path, fig)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_losses(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    xlabel: str,
    ylabel: str = "MSE loss",
    title: str | None = None,
    smooth: int = 1,
    log_y: bool = True,
    bands: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Path:
    """One labelled line per run: ``curves`` maps a label (``conv bs=32 nf=16``) to (x, y); ``bands`` maps a
    label to (low, high) drawn shaded around its line (spread over seeds)."""
    fig, ax = _axes((7, 4.2))
    for label, (x, y) in curves.items():
        x, y = np.asarray(x, float), np.asarray(y, float)
        low_high = [np.asarray(v, float) for v in (bands or {}).get(label, ())]
        if smooth > 1 and len(y) >= smooth:
            y, low_high = _smooth(y, smooth), [_smooth(v, smooth) for v in low_high]
            x = x[smooth - 1 :]
        (line,) = ax.plot(x, y, label=label, marker="o" if len(x) <= 20 else None, markersize=3, linewidth=1.4)
        if low_high:
            ax.fill_between(x, *low_high, color=line.get_color(), alpha=0.2, linewidth=0)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_code_map(
    xy: np.ndarray, colour: np.ndarray, axes: Sequence[str], colour_label: str, title: str, path: str | Path
) -> Path:
    """Codes placed in 2-D, each point coloured by ``colour`` (a reconstruction error, or 0/1 for an attribute)."""
    fig, ax = _axes((6, 5))
    binary = set(np.unique(colour)) <= {0, 1}
    points = ax.scatter(xy[:, 0], xy[:, 1], c=colour, cmap="coolwarm" if binary else "viridis", s=8)
    if binary:
        handles = points.legend_elements()[0]
        ax.legend(handles, [f"not {colour_label}", colour_label][-len(handles) :], fontsize=7)
    else:
        fig.colorbar(points, ax=ax, label=colour_label)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_rate_distortion(
    curves: dict[str, list[tuple[float, float, float]]], path: str | Path, title: str | None = None
) -> Path:
    """PSNR and SSIM against bytes per image (log scale), one line per method: ``curves`` maps a method to
    its (bytes, PSNR, SSIM) points."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120)
    for method, points in curves.items():
        nbytes, psnr, ssim = (np.array(v, float) for v in zip(*points, strict=True))
        style = "--" if "8-bit" in method or "4-bit" in method or "16" in method else "-"
        for ax, y in zip(axes, (psnr, ssim), strict=True):
            ax.plot(nbytes, y, style, marker="o", markersize=3, linewidth=1.3, label=method)
    for ax, ylabel in zip(axes, ("PSNR (dB, 0–255 images)", "SSIM"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("bytes per image")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_probe(rows: list[dict], methods: list[str], path: str | Path) -> Path:
    """AUROC per attribute (rows) and method (bars), with the 95 % intervals."""
    attributes = list(dict.fromkeys(r["attribute"] for r in rows))
    cell = {(r["attribute"], r["method"]): r for r in rows}
    fig, ax = _axes((7, 0.28 * len(attributes) + 1.5))
    height = 0.8 / len(methods)
    for i, method in enumerate(methods):
        y = np.arange(len(attributes)) + i * height
        vals = np.array([[cell[a, method][k] for k in ("auroc", "auroc_lo", "auroc_hi")] for a in attributes])
        ax.barh(y, vals[:, 0], height, xerr=[vals[:, 0] - vals[:, 1], vals[:, 2] - vals[:, 0]], label=method,
                error_kw={"linewidth": 0.6})  # fmt: skip
    ax.set_yticks(np.arange(len(attributes)) + 0.4 - height / 2, attributes, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0.3, 1)
    ax.axvline(0.5, color="grey", linewidth=0.8)
    ax.set_xlabel("AUROC of a linear probe (95 % interval over faces)")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)
