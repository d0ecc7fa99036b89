"""Putting a trained encoder to work: codes of a data set, anomalies, interpolation, neighbours, a 2-D map.

Every tool takes a loaded run (``celebae.load``) and the images it works on, as the explorer does::

    run = celebae.load("runs/r1")
    images = split_images(run, data=None, split="test", limit=500)   # the run's own data by default
    anomalies(run, images, "out/anomalies", top=8)

``split_images`` reads the run's data or any other source (a CelebA folder, an image folder or
``synthetic``); ``split`` is train, val, test or ``all``. The run's ``--limit-*`` settings are not applied
here: a tool sees the whole split unless ``limit`` says otherwise. Counts drawn in a figure (``top``, ``k``,
``steps``) are bounded by what one row shows.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..data import SPLITS, load_split, to_uint8, to_unit_range
from ..errors import CelebaeError
from ..models.registry import available_memory
from ..quality.figures import MAX_GRID_IMAGES, plot_code_map, save_labelled_grid
from ..quality.metrics import per_image_errors
from .trained import ImageLike, TrainedRun


@dataclass
class Images:
    """Images a tool works on: uint8 N×3×S×S (a memory map where it comes from one split) and their files."""

    pixels: np.ndarray
    files: list[str]
    name: str = "the images"  # "the test split of DATA", for messages and titles


def split_images(trained: TrainedRun, data: str | None = None, split: str = "test", limit: int | None = None) -> Images:
    """A split (or ``all``) of ``data`` (default: the run's own), prepared with the run's crop."""
    if split not in (*SPLITS, "all"):
        raise CelebaeError(f"split must be train, val, test or all, got {split!r}")
    spec = replace(trained.settings.data_spec(data), limits=dict.fromkeys(SPLITS, limit))
    source = spec.open()
    parts = [load_split(spec, s, source=source) for s in (SPLITS if split == "all" else (split,)) if source.splits[s]]
    name = f"the {split} split"
    if not parts:
        raise CelebaeError(f"the {split} split of {spec.data} has no images; choose another --split or --data")
    if len(parts) == 1:  # the memory map itself, nothing copied
        return Images(parts[0].images[:limit], parts[0].files[:limit], name)
    count = min(sum(len(p.files) for p in parts), limit or math.inf)
    need, have = count * math.prod(parts[0].images.shape[1:]), available_memory()
    if need > have // 2:
        raise CelebaeError(
            f"all splits of {spec.data} hold {need / 2**30:.1f} GiB of pixels, more than half the memory available "
            f"({have / 2**30:.1f} GiB); pass --limit or choose one --split"
        )
    pixels = np.concatenate([np.asarray(p.images[:limit]) for p in parts])[:limit]
    files = [f for p in parts for f in p.files][:limit]
    return Images(pixels, files, name)


def reconstruction_errors(trained: TrainedRun, pixels: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, ...]:
    """(codes, per-image MSE on [-1, 1], per-image PSNR) of a uint8 array, a batch at a time (memory: the
    codes and one batch, whatever the number of images)."""
    codes, mse, psnr = [], [], []
    for i in range(0, len(pixels), batch_size):
        x = to_unit_range(torch.from_numpy(np.array(pixels[i : i + batch_size])))
        z = trained.encode_tensor(x.to(trained.device))
        errors = per_image_errors(x, trained.decode(z).cpu())
        codes.append(z.cpu())
        mse.append(errors[0])
        psnr.append(errors[1])
    if not codes:
        return np.empty((0, trained.model.code_size), np.float32), np.empty(0), np.empty(0)
    return torch.cat(codes).numpy(), torch.cat(mse).numpy(), torch.cat(psnr).numpy()


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


def encode(trained: TrainedRun, images: Images, out: str | Path) -> tuple[Path, Path]:
    """Codes of ``images`` to ``out`` (.npy, N×code_size float32) and their file names in the same order (.csv)."""
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


def anomalies(trained: TrainedRun, images: Images, out_dir: str | Path, top: int = 8) -> list[dict]:
    """Rank ``images`` by reconstruction error (highest first): ``ranking.csv`` and ``anomalies.png`` (the
    ``top`` most and least typical images, each above its reconstruction)."""
    check_count("top", top, 1)
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


def interpolate(trained: TrainedRun, a: ImageLike, b: ImageLike, out: str | Path, steps: int = 8) -> Path:
    """A strip: image A, the decoded straight-line mixes of the two codes from A to B (``steps`` of them,
    both ends included), image B."""
    check_count("steps", steps, 2)
    x = trained.images([a, b])
    z = trained.encode_tensor(x)
    mixes = to_uint8(trained.decode(code_mixes(z[0], z[1], torch.linspace(0, 1, steps))))
    ends = to_uint8(x)
    return save_labelled_grid([torch.cat([ends[:1], mixes, ends[1:]])], ["A → B"], out)


def neighbours(
    trained: TrainedRun, images: Images, query: ImageLike, out: str | Path, k: int = 8, metric: str = "cosine"
) -> list[tuple[str, float]]:
    """The ``k`` of ``images`` nearest to ``query`` in code space (cosine or euclidean distance), as a grid
    (the query first); returns (file, distance) pairs, nearest first."""
    if metric not in METRICS:
        raise CelebaeError(f"metric must be cosine or euclidean, got {metric!r}")
    check_count("k", k, 1)
    codes = trained.encode_batches(images.pixels)
    x = trained.images(query)
    dist = code_distances(codes, trained.encode_tensor(x).cpu(), metric)
    order = torch.argsort(dist)[:k].numpy()
    save_labelled_grid([to_uint8(x).cpu(), images.pixels[order]], ["query", f"{k} nearest"], out)
    return [(images.files[i], float(dist[i])) for i in order]


MAP_METHODS = ("pca", "tsne")
TRUST_NEIGHBOURS = 5  # scikit-learn's default for trustworthiness


def code_map(
    trained: TrainedRun,
    images: Images,
    out: str | Path,
    method: str = "pca",
    colour: np.ndarray | None = None,
    colour_label: str = "reconstruction MSE",
) -> tuple[Path, float]:
    """The codes of ``images`` placed in 2-D by PCA or t-SNE (scikit-learn), each point coloured by its
    reconstruction error or by ``colour`` (one value per image: an attribute's 0/1 labels, NaN where unlabelled,
    drawn only where labelled). Returns the picture and the map's trustworthiness (scikit-learn's, 5
    neighbours: 1 when every point's nearest neighbours on the map are near in code space too)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE, trustworthiness

    if method not in MAP_METHODS:
        raise CelebaeError(f"method must be pca or tsne, got {method!r}")
    keep = np.isfinite(colour) if colour is not None else np.ones(len(images.files), bool)
    if keep.sum() <= 2 * TRUST_NEIGHBOURS:  # trustworthiness needs more than twice its neighbours
        labelled = " labelled" if colour is not None else ""
        need, have = 2 * TRUST_NEIGHBOURS, int(keep.sum())
        raise CelebaeError(f"a map needs more than {need}{labelled} images; {images.name} has {have}")
    codes, mse, _ = reconstruction_errors(trained, images.pixels)
    codes, values = codes[keep], (colour[keep] if colour is not None else mse)
    if method == "pca":
        pca = PCA(2).fit(codes)
        xy = pca.transform(codes)
        axes = [f"code PC {i + 1} ({v:.0%} of variance)" for i, v in enumerate(pca.explained_variance_ratio_)]
    else:
        xy = TSNE(2, perplexity=min(30.0, (len(codes) - 1) / 3), init="pca", random_state=0).fit_transform(codes)
        axes = ["t-SNE 1", "t-SNE 2"]
    trust = float(trustworthiness(codes, xy, n_neighbors=TRUST_NEIGHBOURS))
    title = f"{trained.settings.label}: {len(codes):,} codes of {images.name}\n{method}, trustworthiness {trust:.3f}"
    return plot_code_map(xy, values, axes, colour_label, title, out), trust


def check_count(name: str, value: int, low: int, high: int = MAX_GRID_IMAGES) -> None:
    """A count a user gives for a figure: from ``low`` to what one row of a figure can show."""
    if not low <= int(value) <= high:
        raise CelebaeError(f"{name} must be {low} to {high} (what one row of a figure shows), got {value}")
