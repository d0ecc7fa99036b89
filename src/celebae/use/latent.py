"""Putting a trained encoder to work: codes of a data set, anomalies, interpolation, neighbours, a 2-D map.

Every tool reads a run directory (``celebae.load``) and images from the run's data or any other
source (``data``: a CelebA folder, an image folder or ``synthetic``); ``split`` is train, val, test or
``all``. The run's ``--limit-*`` settings are not applied here: a tool sees the whole split unless
``limit`` says otherwise.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..data import SPLITS, load_split, to_uint8, to_unit_range
from ..errors import CelebaeError
from ..quality.figures import plot_code_map, save_labelled_grid
from ..quality.metrics import per_image_errors
from .trained import ImageLike, TrainedRun, load


@dataclass
class Images:
    pixels: np.ndarray  # uint8 N×3×S×S
    files: list[str]


def split_images(trained: TrainedRun, data: str | None = None, split: str = "test", limit: int | None = None) -> Images:
    """A split (or ``all``) of ``data`` (default: the run's own), prepared with the run's crop."""
    if split not in (*SPLITS, "all"):
        raise CelebaeError(f"split must be train, val, test or all, got {split!r}")
    spec = replace(trained.settings.data_spec(data), limits=dict.fromkeys(SPLITS, limit))
    source = spec.open()
    parts = [load_split(spec, s, source=source) for s in (SPLITS if split == "all" else (split,)) if source.splits[s]]
    if not parts:
        raise CelebaeError(f"the {split} split of {spec.data} has no images; choose another --split or --data")
    pixels = np.concatenate([np.asarray(p.images) for p in parts])[:limit]
    files = [f for p in parts for f in p.files][:limit]
    return Images(pixels, files)


def open_split(
    run: str | Path, data: str | None, split: str, limit: int | None, device: str
) -> tuple[TrainedRun, Images]:
    """The trained run and the images a tool works on (how every split-reading tool starts)."""
    trained = load(run, device=device)
    return trained, split_images(trained, data, split, limit)


def reconstruction_errors(trained: TrainedRun, pixels: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, ...]:
    """(codes, per-image MSE on [-1, 1], per-image PSNR) of a uint8 array."""
    codes = trained.encode_batches(pixels, batch_size)
    x = to_unit_range(torch.from_numpy(np.array(pixels)))
    mse, psnr = per_image_errors(x, trained.decode_batches(codes, batch_size))
    return codes.numpy(), mse.numpy(), psnr.numpy()


METRICS = ("cosine", "euclidean")


def code_distances(codes: torch.Tensor, query: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Distance of each code (N×K) to ``query`` (1×K): cosine (1 − similarity) or euclidean."""
    if metric == "cosine":
        return 1 - torch.nn.functional.cosine_similarity(codes, query, dim=1)
    return (codes - query).norm(dim=1)


def code_mixes(za: torch.Tensor, zb: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The straight line between two codes: one mix (1 − w)·a + w·b per weight."""
    w = weights.to(za.device, za.dtype)[:, None]
    return (1 - w) * za + w * zb


def rank_by_error(mse: np.ndarray) -> np.ndarray:
    """Image indices from the highest reconstruction error (the most unusual) to the lowest (stable)."""
    return np.argsort(-mse, kind="stable")


def encode(
    run: str | Path,
    out: str | Path,
    data: str | None = None,
    split: str = "test",
    limit: int | None = None,
    device: str = "auto",
) -> tuple[Path, Path]:
    """Codes of a split to ``out`` (.npy, N×code_size float32) and the file names in the same order (.csv)."""
    trained, images = open_split(run, data, split, limit, device)
    codes = trained.encode_batches(images.pixels).numpy()
    out = Path(out).with_suffix(".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, codes)
    names = out.with_suffix(".csv")
    with open(names, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "file"])
        writer.writerows(enumerate(images.files))
    return out, names


def anomalies(
    run: str | Path,
    out_dir: str | Path,
    data: str | None = None,
    split: str = "test",
    top: int = 8,
    limit: int | None = None,
    device: str = "auto",
) -> list[dict]:
    """Rank images by reconstruction error (highest first): ``ranking.csv`` and ``anomalies.png`` (the most
    and the least typical images, each above its reconstruction)."""
    trained, images = open_split(run, data, split, limit, device)
    codes, mse, psnr = reconstruction_errors(trained, images.pixels)
    order = rank_by_error(mse)
    ranking = [
        {"rank": r + 1, "file": images.files[i], "mse": float(mse[i]), "psnr": float(psnr[i])}
        for r, i in enumerate(order)
    ]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "ranking.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["rank", "file", "mse", "psnr"])
        writer.writeheader()
        writer.writerows(ranking)
    k = min(top, len(order))
    worst, best = order[:k], order[::-1][:k]
    recon = to_uint8(trained.decode_batches(torch.from_numpy(codes[np.concatenate([worst, best])])))
    save_labelled_grid(
        [images.pixels[worst], recon[:k], images.pixels[best], recon[k:]],
        ["most unusual", "reconstructed", "most typical", "reconstructed"],
        out_dir / "anomalies.png",
    )
    return ranking


def interpolate(
    run: str | Path, a: ImageLike, b: ImageLike, out: str | Path, steps: int = 8, device: str = "auto"
) -> Path:
    """A strip: image A, the decoded straight-line mixes of the two codes from A to B (``steps`` of them,
    both ends included), image B."""
    if steps < 2:
        raise CelebaeError(f"--steps must be at least 2 (the two ends), got {steps}")
    trained = load(run, device=device)
    x = trained.images([a, b])
    z = trained.encode_tensor(x)
    mixes = to_uint8(trained.decode(code_mixes(z[0], z[1], torch.linspace(0, 1, steps))))
    ends = to_uint8(x)
    return save_labelled_grid([torch.cat([ends[:1], mixes, ends[1:]])], ["A → B"], out)


def neighbours(
    run: str | Path,
    query: ImageLike,
    out: str | Path,
    data: str | None = None,
    split: str = "test",
    k: int = 8,
    metric: str = "cosine",
    limit: int | None = None,
    device: str = "auto",
) -> list[tuple[str, float]]:
    """The ``k`` images of a split nearest to ``query`` in code space (cosine or euclidean distance), as a grid
    (the query first); returns (file, distance) pairs, nearest first."""
    if metric not in METRICS:
        raise CelebaeError(f"metric must be cosine or euclidean, got {metric!r}")
    trained, images = open_split(run, data, split, limit, device)
    codes = trained.encode_batches(images.pixels)
    x = trained.images(query)
    dist = code_distances(codes, trained.encode_tensor(x).cpu(), metric)
    order = torch.argsort(dist)[:k].numpy()
    save_labelled_grid([to_uint8(x).cpu(), images.pixels[order]], ["query", f"{k} nearest"], out)
    return [(images.files[i], float(dist[i])) for i in order]


def code_map(
    run: str | Path,
    out: str | Path,
    data: str | None = None,
    split: str = "test",
    limit: int | None = None,
    device: str = "auto",
) -> Path:
    """A split's codes projected to 2-D by PCA, each point coloured by its reconstruction error."""
    trained, images = open_split(run, data, split, limit, device)
    if len(images.files) < 2:
        raise CelebaeError(f"a map needs at least 2 images; the {split} split has {len(images.files)}")
    codes, mse, _ = reconstruction_errors(trained, images.pixels)
    centred = torch.from_numpy(codes).double()
    centred -= centred.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    xy = (centred @ v[:2].T).numpy()
    explained = (s[:2] ** 2 / (s**2).sum()).tolist()
    title = f"{trained.settings.label}: {len(codes):,} {split} codes"
    return plot_code_map(xy, mse, explained, title, out)
