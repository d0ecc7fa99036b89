"""How well a detector tells faces from what is not one: labelled out-of-distribution sets built from what is
at hand, AUROC and average precision with bootstrap intervals, for a run and for PCA with as many numbers.

    normal: the test faces                   out of distribution (each set at most ``limit`` images)
    ─────────────────────────                ───────────────────────────────────────────────────────────────
    the run's own test split                 corrupted test faces: occlusion, noise, blur, JPEG, rotation,
                                             inversion (strengths in CORRUPTIONS)
                                             photographs scikit-image ships, cropped and resized as faces are
                                             lfw_subset()'s non-face patches (25×25 grey)
                                             cartoon faces (``--data synthetic``)
                                             constant colours and smooth gradients (the known failure of
                                             reconstruction scores: Nalisnick et al. 2019)

The detector (``use.anomaly``) is fitted on the training faces and calibrated on the validation faces at
``fpr``; the test faces then measure its false-positive rate, and each set its true-positive rate.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from ..data import draw_face
from ..data.images import square
from ..errors import CelebaeError
from ..quality.metrics import auroc_rows
from ..use.anomaly import SCORES, AnomalyDetector
from ..use.latent import split_images
from ..use.trained import TrainedRun
from .baselines import fit_pca, project

PHOTOS = (
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "brick",
    "grass",
    "gravel",
    "camera",
    "moon",
    "page",
    "text",
    "coins",
    "horse",
    "colorwheel",
    "logo",
    "clock",
)  # fmt: skip (not astronaut: it is a portrait)
CROPS_PER_PHOTO = 6
RESAMPLES = 1000  # AUROC's: all in one vectorised call
AP_RESAMPLES = 200  # scikit-learn's average precision, one call per resample (~1 ms)


class PCACodec:
    """PCA as an encoder/decoder (``k`` components fitted on uint8 training images), for ``AnomalyDetector``."""

    def __init__(self, train: np.ndarray, components: int):
        self.shape = train.shape[1:]
        self.mean, self.basis = fit_pca(train, components)

    def encode_batches(self, images: np.ndarray) -> torch.Tensor:
        return project(images, self.mean, self.basis)

    def decode_batches(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes @ self.basis + self.mean).reshape(len(codes), *self.shape)


# ---- the sets -----------------------------------------------------------------------------------------------------
def _each(images: np.ndarray, change: Callable[[Image.Image, np.random.Generator], Image.Image]) -> np.ndarray:
    rng = np.random.default_rng(0)
    out = [np.asarray(change(Image.fromarray(x.transpose(1, 2, 0)), rng)) for x in images]
    return np.stack(out).transpose(0, 3, 1, 2).copy()


def _occlude(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    side = img.width // 4
    x, y = rng.integers(0, img.width - side, 2)
    img = img.copy()
    img.paste(tuple(int(c) for c in rng.integers(0, 256, 3)), (int(x), int(y), int(x) + side, int(y) + side))
    return img


def _noise(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    noisy = np.asarray(img, np.float32) + rng.normal(0, 25.5, (img.height, img.width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8))


def _jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=5)
    return Image.open(buf).convert("RGB")


CORRUPTIONS: dict[str, tuple[str, Callable[[Image.Image, np.random.Generator], Image.Image]]] = {
    "occlusion": ("a square of one random colour, a quarter of the side, at a random place", _occlude),
    "noise": ("Gaussian noise, σ = 10 % of the range", _noise),
    "blur": ("Gaussian blur, radius 2 px at 128 px", lambda im, _: im.filter(ImageFilter.GaussianBlur(im.width / 64))),
    "jpeg": ("JPEG at quality 5", _jpeg),
    "rotation": ("turned by 90°", lambda im, _: im.transpose(Image.Transpose.ROTATE_90)),
    "inversion": ("colours inverted (255 − value)", lambda im, _: Image.eval(im, lambda v: 255 - v)),
}


def photographs(size: int, crop: str, limit: int) -> np.ndarray:
    """scikit-image's photographs: each whole (as a face is cropped) and in random square crops."""
    from skimage import data

    rng, out = np.random.default_rng(0), []
    for name in PHOTOS:
        pixels = np.asarray(getattr(data, name)())
        img = Image.fromarray(pixels.astype(np.uint8) * 255 if pixels.dtype == bool else pixels).convert("RGB")
        out.append(np.asarray(square(img, crop, size)))
        for _ in range(CROPS_PER_PHOTO):
            side = int(min(img.size) * rng.uniform(0.3, 0.9))
            x, y = (int(rng.integers(0, d - side + 1)) for d in img.size)
            out.append(np.asarray(img.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)))
    return _first(np.stack(out).transpose(0, 3, 1, 2), limit)


def lfw_patches(size: int, limit: int) -> np.ndarray:
    """lfw_subset()'s 100 non-face patches (its second half), grey, resized to the model's size."""
    from skimage import data

    patches = (data.lfw_subset()[100:] * 255).round().astype(np.uint8)
    out = [np.asarray(Image.fromarray(p).resize((size, size), Image.BICUBIC).convert("RGB")) for p in patches]
    return _first(np.stack(out).transpose(0, 3, 1, 2), limit)


def flat_images(size: int, limit: int, smooth: bool) -> np.ndarray:
    """One random colour each, or (``smooth``) a straight gradient between two random colours at a random angle."""
    rng = np.random.default_rng(1 if smooth else 2)
    a, b = rng.integers(0, 256, (2, limit, 3, 1, 1))
    if not smooth:
        return np.broadcast_to(a, (limit, 3, size, size)).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    angle = rng.uniform(0, 2 * np.pi, (limit, 1, 1, 1))
    t = np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5) + 0.5
    return np.clip(a + (b - a) * t, 0, 255).round().astype(np.uint8)


def _first(images: np.ndarray, limit: int) -> np.ndarray:
    return images[np.random.default_rng(3).permutation(len(images))[:limit]]


def ood_sets(test: np.ndarray, crop: str, limit: int) -> dict[str, tuple[str, np.ndarray]]:
    """Name → (what it is, uint8 images) of every out-of-distribution set, at the test faces' size."""
    size, faces = test.shape[-1], np.asarray(test[:limit])
    sets = {name: (what, _each(faces, change)) for name, (what, change) in CORRUPTIONS.items()}
    sets["photographs"] = ("scikit-image's photographs, whole and in square crops", photographs(size, crop, limit))
    sets["lfw non-faces"] = ("lfw_subset()'s non-face patches, grey, upscaled from 25 px", lfw_patches(size, limit))
    cartoons = np.stack([draw_face(i, seed=7, size=size) for i in range(limit)])
    sets["cartoon faces"] = ("celebae's synthetic faces", cartoons)
    sets["constant"] = ("one random colour", flat_images(size, limit, smooth=False))
    sets["smooth"] = ("a gradient between two random colours", flat_images(size, limit, smooth=True))
    return sets


# ---- the measure --------------------------------------------------------------------------------------------------
def auroc_ap(normal: np.ndarray, odd: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, float]:
    """AUROC and average precision (out-of-distribution is positive) with 95 % bootstrap intervals, resampling
    the normal and the odd images separately. AUROC for all ``resamples`` at once (``auroc_rows``); AP is
    scikit-learn's, over the first ``AP_RESAMPLES`` of them."""
    from sklearn.metrics import average_precision_score

    labels = np.r_[np.zeros(len(normal)), np.ones(len(odd))]
    rng = np.random.default_rng(seed)
    a = normal[rng.integers(0, len(normal), (resamples, len(normal)))]
    b = odd[rng.integers(0, len(odd), (resamples, len(odd)))]
    both = np.c_[a, b]
    aurocs = auroc_rows(both, np.broadcast_to(labels, both.shape))
    aps = [average_precision_score(labels, row) for row in both[:AP_RESAMPLES]]
    lo, hi = np.c_[np.percentile(aurocs, [2.5, 97.5]), np.percentile(aps, [2.5, 97.5])]
    scores = np.r_[normal, odd]
    auroc = auroc_rows(scores[None], labels[None])[0]
    result = {"auroc": float(auroc), "ap": float(average_precision_score(labels, scores))}
    return result | {"auroc_lo": float(lo[0]), "auroc_hi": float(hi[0]), "ap_lo": float(lo[1]), "ap_hi": float(hi[1])}


def detectors(trained: TrainedRun, train: np.ndarray, val: np.ndarray, fpr: float) -> dict[str, AnomalyDetector]:
    """The run's detector and PCA's with as many components, both fitted on ``train`` and calibrated on ``val``."""
    pca = PCACodec(train, trained.model.code_size)
    return {
        name: AnomalyDetector(codec).fit(train).infer_threshold(val, fpr)
        for name, codec in ((trained.settings.label, trained), (f"PCA-{trained.model.code_size}", pca))
    }


def measure_ood(
    trained: TrainedRun, out: str | Path, data: str | None = None, limit: int = 200, fpr: float = 0.05
) -> list[dict[str, Any]]:
    """Every set × detector × score: AUROC, AP (95 % intervals) and the share flagged at the threshold that
    lets ``fpr`` of the validation faces through; ``ood.csv`` and ``ood.md`` in ``out``."""
    parts = {s: split_images(trained, data, s).pixels for s in ("train", "val", "test")}
    test = parts["test"]
    if len(test) < 20:
        raise CelebaeError(f"the test split has {len(test)} images; measuring a detector needs at least 20")
    found = detectors(trained, parts["train"], parts["val"], fpr)
    sets = ood_sets(test, trained.settings.crop, limit)
    rows = []
    for method, det in found.items():
        normal, flags = det.scores(test), det.thresholds
        rows += [_row("test faces (normal)", "", method, k, len(test), None, normal[k] > flags[k]) for k in SCORES]
        for name, (what, images) in sets.items():
            odd = det.scores(images)
            rows += [_row(name, what, method, k, len(images), auroc_ap(normal[k], odd[k]), odd[k] > flags[k])
                     for k in SCORES]  # fmt: skip
    _write(rows, Path(out), fpr)
    return rows


def _row(name: str, what: str, method: str, score: str, n: int, measured: dict | None, flagged: np.ndarray) -> dict:
    return {"set": name, "what": what, "method": method, "score": score, "images": n, **(measured or {}),
            "flagged": float(flagged.mean())}  # fmt: skip


def _write(rows: list[dict[str, Any]], out: Path, fpr: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = ["set", "what", "method", "score", "images", "auroc", "auroc_lo", "auroc_hi", "ap", "ap_lo", "ap_hi",
              "flagged"]  # fmt: skip
    with open(out / "ood.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    (out / "ood.md").write_text(markdown(rows, fpr))


def markdown(rows: list[dict[str, Any]], fpr: float) -> str:
    """AUROC [95 % interval] per set (rows) and detector × score (columns); then the share each flags."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cols = [(m, s) for m in methods for s in SCORES]
    head = "| set | " + " | ".join(f"{m}: {s}" for m, s in cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    cell = {(r["set"], r["method"], r["score"]): r for r in rows}
    sets = list(dict.fromkeys(r["set"] for r in rows))
    auroc = "".join(f"| {s} | " + " | ".join(_auroc(cell[s, m, k]) for m, k in cols) + " |\n" for s in sets[1:])
    flagged = "".join(
        f"| {s} | " + " | ".join(f"{cell[s, m, k]['flagged']:.0%}" for m, k in cols) + " |\n" for s in sets
    )
    return (
        f"AUROC [95 % bootstrap interval over images], out-of-distribution positive:\n\n{head}{auroc}\n"
        f"Share flagged at the threshold that passes {1 - fpr:.0%} of the validation faces (the test faces' share is "
        f"the false-positive rate on faces not used to set it):\n\n{head}{flagged}"
    )


def _auroc(r: dict[str, Any]) -> str:
    return f"{r['auroc']:.3f} [{r['auroc_lo']:.3f}, {r['auroc_hi']:.3f}]"
