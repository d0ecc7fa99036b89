"""An anomaly detector on an autoencoder (or on PCA): scores, a threshold from a false-positive rate, p-values.

    fit(train)                 infer_threshold(val, fpr)          predict(images)
    ───────────                ─────────────────────────          ──────────────────────────────────────────
    codes' mean, shrunk        the (1 − fpr) quantile of the      instance_score, p_value, is_outlier,
    covariance (Mahalanobis),  validation scores (alibi-detect's  threshold (alibi-detect's names), and
    log-score statistics       infer_threshold)                   every score of every image

Scores, higher is more unusual:
    mse          reconstruction error (mean squared, images in [-1, 1])
    ssim         1 − SSIM of the reconstruction (pytorch-msssim, 11-px Gaussian window)
    mahalanobis  distance of the code to the training codes (Ledoit–Wolf covariance; Denouden et al. 2018)
    combined     the mean of log(mse) and log(mahalanobis), each standardised on the training images

A p-value is conformal: (1 + #validation scores ≥ s) / (n + 1), exact for an image drawn like the validation
images. The detector is saved beside the model (``detector.safetensors``): ``AnomalyDetector.load(run)`` flags
new images without the data it was fitted on. Anything with ``encode_batches`` and ``decode_batches`` (a
trained run; ``evaluation.ood.PCACodec``) can be the codec.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pytorch_msssim import ssim

from ..data import to_uint8, to_unit_range
from ..errors import CelebaeError
from ..training.checkpoint import load_tensors, save_tensors
from ..training.rundir import DETECTOR
from .latent import Images, split_images
from .trained import ImageLike, TrainedRun

SCORES = ("mse", "ssim", "mahalanobis", "combined")
DEFAULT_SCORE = "mse"  # the best mean AUROC over the OOD sets on the sample (docs/applications.md)
MIN_FIT_IMAGES = 10  # a covariance of fewer codes says nothing


class Codec(Protocol):
    def encode_batches(self, images: np.ndarray) -> torch.Tensor: ...
    def decode_batches(self, codes: torch.Tensor) -> torch.Tensor: ...


@dataclass
class AnomalyDetector:
    """Scores images against the faces a codec was trained on; ``fit`` and ``infer_threshold`` before
    ``predict``. ``score`` names the score that flags (one of ``SCORES``)."""

    codec: Codec
    score: str = DEFAULT_SCORE
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # mean, precision, log-score means and spreads
    val_scores: dict[str, np.ndarray] = field(default_factory=dict)
    fpr: float | None = None
    record: dict[str, Any] = field(default_factory=dict)  # what it was fitted and calibrated on

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise CelebaeError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")

    def fit(self, train: np.ndarray, name: str = "the training images") -> AnomalyDetector:
        """The codes' mean and Ledoit–Wolf covariance, and the log-score statistics, from uint8 images."""
        from sklearn.covariance import LedoitWolf

        if len(train) < MIN_FIT_IMAGES:
            raise CelebaeError(f"{name} hold {len(train)} images; a detector needs at least {MIN_FIT_IMAGES}")
        codes, errors = self._reconstruct(train, with_ssim=False)
        lw = LedoitWolf().fit(codes.double().numpy())
        self.stats = {"mean": torch.from_numpy(lw.location_), "precision": torch.from_numpy(lw.precision_)}
        logs = {"mse": errors["mse"].log(), "mahalanobis": self._mahalanobis(codes).log()}
        for key, value in logs.items():
            self.stats[f"log_{key}"] = torch.stack([value.mean(), value.std().clamp_min(1e-12)])
        self.record |= {"fitted_on": name, "fit_images": len(train), "shrinkage": float(lw.shrinkage_)}
        return self

    def scores(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every score of every image (uint8 N×3×S×S), a batch at a time."""
        if not self.stats:
            raise CelebaeError("the detector is not fitted; call fit(training images) first")
        codes, errors = self._reconstruct(images)
        errors["mahalanobis"] = self._mahalanobis(codes)
        z = [(errors[k].log() - self.stats[f"log_{k}"][0]) / self.stats[f"log_{k}"][1] for k in ("mse", "mahalanobis")]
        errors["combined"] = (z[0] + z[1]) / 2
        return {k: v.numpy() for k, v in errors.items()}

    def infer_threshold(self, val: np.ndarray, fpr: float, name: str = "the validation images") -> AnomalyDetector:
        """Threshold every score at the (1 − ``fpr``) quantile of its scores on ``val`` (normal images)."""
        if not 0 < fpr < 1:
            raise CelebaeError(f"fpr is a false-positive rate between 0 and 1, got {fpr}")
        if fpr * len(val) < 1:
            raise CelebaeError(
                f"a false-positive rate of {fpr} needs at least {int(np.ceil(1 / fpr)):,} validation images; "
                f"{name} hold {len(val):,}: raise --fpr or calibrate on more images"
            )
        self.val_scores = {k: np.sort(v) for k, v in self.scores(val).items()}
        self.fpr = fpr
        self.record |= {"calibrated_on": name, "calibration_images": len(val), "fpr": fpr}
        return self

    @property
    def thresholds(self) -> dict[str, float]:
        if self.fpr is None:
            raise CelebaeError("the detector has no threshold; call infer_threshold(validation images, fpr) first")
        return {k: float(np.quantile(v, 1 - self.fpr, method="higher")) for k, v in self.val_scores.items()}

    def p_values(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Conformal p-values of each score against the validation scores."""
        n = {k: len(v) for k, v in self.val_scores.items()}
        return {k: (1 + n[k] - np.searchsorted(self.val_scores[k], s, "left")) / (n[k] + 1) for k, s in scores.items()}

    def predict(self, images: np.ndarray | ImageLike) -> dict[str, Any]:
        """alibi-detect's answer: ``instance_score``, ``p_value``, ``is_outlier`` (of the detector's score),
        ``threshold``, and ``scores`` (every kind). Images: uint8 N×3×S×S, or anything ``TrainedRun.images``
        takes when the codec is a trained run."""
        threshold = self.thresholds[self.score]
        scores = self.scores(self._pixels(images))
        return {
            "instance_score": scores[self.score],
            "p_value": self.p_values({self.score: scores[self.score]})[self.score],
            "is_outlier": scores[self.score] > threshold,
            "threshold": threshold,
            "scores": scores,
        }

    # ---- saved beside the model ---------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / DETECTOR
        vals = {f"val_{k}": torch.from_numpy(v.astype(np.float64)) for k, v in self.val_scores.items()}
        save_tensors({**self.stats, **vals}, path, {**self.record, "score": self.score, "fpr": self.fpr})
        return path

    @classmethod
    def load(cls, trained: TrainedRun, score: str | None = None) -> AnomalyDetector:
        """The detector saved with a run or model folder (``celebae anomalies RUN --fpr``)."""
        path = trained.path / DETECTOR
        if not path.exists():
            raise CelebaeError(
                f"{trained.path} has no anomaly detector; run `celebae anomalies {trained.path} --out DIR --fpr 0.01`"
            )
        tensors, record = load_tensors(path, "anomaly detector")
        vals = {k.removeprefix("val_"): v.numpy() for k, v in tensors.items() if k.startswith("val_")}
        stats = {k: v for k, v in tensors.items() if not k.startswith("val_")}
        return cls(trained, score or record["score"], stats, vals, record.get("fpr"), record)

    # ---- the scores' parts --------------------------------------------------------------------------------------
    def _pixels(self, images: np.ndarray | ImageLike) -> np.ndarray:
        if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 and images.shape[1] == 3:
            return images
        if not isinstance(self.codec, TrainedRun):
            raise CelebaeError("this detector scores uint8 N×3×S×S arrays")
        return to_uint8(self.codec.images(images)).cpu().numpy()

    def _reconstruct(
        self, images: np.ndarray, with_ssim: bool = True, batch: int = 256
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Codes and per-image reconstruction errors; SSIM (about half the time on a CPU) only where asked."""
        codes, mse, dissim = [], [], []
        for i in range(0, len(images), batch):
            x = to_unit_range(torch.from_numpy(np.array(images[i : i + batch])))
            z = self.codec.encode_batches(images[i : i + batch]).cpu()
            y = self.codec.decode_batches(z).cpu().clamp(-1, 1)
            codes.append(z)
            mse.append((x - y).pow(2).flatten(1).mean(1).clamp_min(1e-12))
            if with_ssim:
                dissim.append((1 - ssim((x + 1) / 2, (y + 1) / 2, data_range=1, size_average=False)).clamp_min(1e-12))
        if not codes:
            raise CelebaeError("no images to score")
        errors = {"mse": torch.cat(mse).double()}
        return torch.cat(codes), errors | ({"ssim": torch.cat(dissim).double()} if with_ssim else {})

    def _mahalanobis(self, codes: torch.Tensor) -> torch.Tensor:
        d = codes.double() - self.stats["mean"]
        return ((d @ self.stats["precision"]) * d).sum(1).clamp_min(1e-12).sqrt()


def calibrate(
    trained: TrainedRun, fpr: float, score: str = DEFAULT_SCORE, data: str | None = None, limit: int | None = None
) -> AnomalyDetector:
    """A detector fitted on the training split of the run's data (or ``data``), its threshold set on the
    validation split at ``fpr``, and saved beside the model."""
    train, val = (split_images(trained, data, s, limit) for s in ("train", "val"))
    detector = AnomalyDetector(trained, score).fit(train.pixels, f"the training split of {_data_name(trained, data)}")
    detector.infer_threshold(val.pixels, fpr, f"the validation split of {_data_name(trained, data)}")
    detector.save(trained.path)
    return detector


def flag(detector: AnomalyDetector, images: Images, out: str | Path) -> tuple[Path, int]:
    """``scores.csv`` in ``out``: every image's scores, the p-value of the detector's score and its flag;
    returns the file and the number flagged."""
    found = detector.predict(images.pixels)
    path = Path(out) / "scores.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *SCORES, "score", "threshold", "p_value", "is_outlier"])
        for i, name in enumerate(images.files):
            values = [f"{found['scores'][k][i]:.6g}" for k in SCORES]
            p_value, flagged = f"{found['p_value'][i]:.4g}", int(found["is_outlier"][i])
            writer.writerow([name, *values, detector.score, f"{found['threshold']:.6g}", p_value, flagged])
    return path, int(found["is_outlier"].sum())


def _data_name(trained: TrainedRun, data: str | None) -> str:
    return Path(trained.settings.data_spec(data).data).name
