"""What a code knows: linear probes from frozen codes to CelebA's 40 attributes, beside PCA, pixels and chance.

    codes of the labelled faces ──► scaled ──► logistic regression (C by 3-fold CV, balanced classes)
                                               │ train split → test split, where both carry labels;
                                               │ else a seeded stratified k-fold over the labelled faces
                                               ▼
                                out-of-fold probabilities ──► balanced accuracy, AUROC per attribute;
                                                               their mean, 95 % bootstrap intervals over faces

Methods: the run's codes; PCA's with as many numbers (fitted on the training split); the pixels downsampled
to 9×9 (243 numbers); and the majority class (balanced accuracy and AUROC of 0.5 by construction).
Attributes whose rarer class has fewer than ``MIN_CLASS`` labelled faces are left out, by name.
"""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.attributes import Attributes
from ..errors import CelebaeError
from ..quality.figures import plot_probe
from ..quality.metrics import auroc_rows, balanced_rows
from ..use.edits import run_attributes
from ..use.latent import split_images
from ..use.trained import TrainedRun
from .ood import PCACodec

log = logging.getLogger("celebae")
MIN_CLASS = 10
PIXEL_SIDE = 9
RESAMPLES = 1000


def features(trained: TrainedRun, train: np.ndarray, images: np.ndarray) -> dict[str, np.ndarray]:
    """Method → features of ``images``: the run's codes, PCA's (fitted on ``train``), downsampled pixels."""
    pca = PCACodec(train, trained.model.code_size)
    small = torch.nn.functional.interpolate(
        torch.from_numpy(np.asarray(images)).float(), size=PIXEL_SIDE, mode="area"
    ).flatten(1)
    return {
        f"{trained.settings.label} code": trained.encode_batches(images).numpy(),
        f"PCA-{trained.model.code_size}": pca.encode_batches(images).numpy(),
        f"pixels {PIXEL_SIDE}×{PIXEL_SIDE}": small.numpy(),
        "majority class": np.zeros((len(images), 1)),
    }


def _classifier(method: str):
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if method == "majority class":
        return DummyClassifier(strategy="prior")
    lr = LogisticRegressionCV(Cs=4, cv=3, class_weight="balanced", max_iter=2000, tol=1e-3, scoring="roc_auc")
    return make_pipeline(StandardScaler(), lr)


def out_of_fold(x: np.ndarray, y: np.ndarray, method: str, folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each labelled face's probability of the attribute from a probe that did not see it."""
    p = np.full(len(y), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.8's notices of its next defaults
        for fit, held in folds:
            p[held] = _classifier(method).fit(x[fit], y[fit]).predict_proba(x[held])[:, 1]
    return p


def plan(trained: TrainedRun, attributes: Attributes, data: str | None, split: str, k: int, seed: int) -> dict:
    """Which faces train and test the probes: train → test where both splits carry labels, else a seeded
    stratified k-fold over the labelled faces of ``split``. Returns the images, labels, folds and a sentence."""
    splits = {s: split_images(trained, data, s) for s in ("train", "test")}
    labelled = {s: attributes.of(images.files) for s, images in splits.items()}
    counts = {s: len(index) for s, (index, _) in labelled.items()}
    if counts["train"] >= 2 * MIN_CLASS and counts["test"] >= 2 * MIN_CLASS:
        (i_tr, y_tr), (i_te, y_te) = labelled["train"], labelled["test"]
        images = np.concatenate([splits["train"].pixels[i_tr], splits["test"].pixels[i_te]])
        folds = [(np.arange(len(i_tr)), np.arange(len(i_tr), len(images)))]
        how = f"trained on the {len(i_tr):,} labelled training faces, tested on the {len(i_te):,} labelled test faces"
        return {"images": images, "labels": np.concatenate([y_tr, y_te]), "folds": folds, "how": how,
                "train": splits["train"].pixels}  # fmt: skip
    chosen = splits[split] if split in splits else split_images(trained, data, split)
    index, labels = attributes.of(chosen.files)
    if len(index) < 2 * MIN_CLASS:
        raise CelebaeError(
            f"{len(index)} of the {len(chosen.files):,} faces in the {split} split carry labels in "
            f"{attributes.source.name}; probes need at least {2 * MIN_CLASS}: choose the split they label (--split)"
        )
    how = (f"{k}-fold cross-validation (stratified, seed {seed}) over the {len(index):,} labelled faces of the "
           f"{split} split ({len(chosen.files) - len(index):,} of its faces carry no labels)")  # fmt: skip
    return {"images": chosen.pixels[index], "labels": labels, "k": k, "seed": seed, "how": how,
            "train": splits["train"].pixels}  # fmt: skip


def probe(
    trained: TrainedRun,
    out: str | Path,
    data: str | None = None,
    split: str = "train",
    k: int = 5,
    seed: int = 0,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Probe every attribute (or ``only`` those named) from every method; ``probe.csv`` (per attribute),
    ``probe.md`` and ``probe.png`` in ``out``. Returns the plan's sentence, the rows and the means with their
    intervals."""
    from sklearn.model_selection import StratifiedKFold

    attributes = run_attributes(trained, data)
    chosen = plan(trained, attributes, data, split, k, seed)
    x_by_method = features(trained, chosen["train"], chosen["images"])
    labels, skipped = chosen["labels"], []
    probs: dict[str, dict[str, np.ndarray]] = {m: {} for m in x_by_method}
    chosen_names = only or attributes.names
    for j, name in ((attributes.column(n), n) for n in chosen_names):
        y = labels[:, j]
        if min(y.sum(), len(y) - y.sum()) < MIN_CLASS:
            skipped.append(name)
            continue
        folds = chosen.get("folds") or list(StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y))
        test = np.concatenate([held for _, held in folds])
        for method, x in x_by_method.items():
            probs[method][name] = (out_of_fold(x, y, method, folds)[test], y[test])
    if not probs[next(iter(probs))]:
        raise CelebaeError(f"no attribute has {MIN_CLASS} labelled faces of each class here; label more faces")
    if skipped:
        log.info("left out (fewer than %d labelled faces of one class): %s", MIN_CLASS, ", ".join(skipped))
    result = _score(probs, seed)
    result |= {"how": chosen["how"], "skipped": skipped, "attributes_file": attributes.source.name}
    _write(result, Path(out))
    return result


def _score(probs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], seed: int) -> dict[str, Any]:
    """Per-attribute and mean balanced accuracy and AUROC, with 95 % intervals from one set of resampled faces."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(next(iter(probs.values())).values()))[1])
    draws = rng.integers(0, n, (RESAMPLES, n))
    rows, means = [], {}
    for method, by_attribute in probs.items():
        boot = {"balanced_accuracy": [], "auroc": []}
        for name, (p, y) in by_attribute.items():
            row = {"attribute": name, "method": method, "faces": n, "positive": int(y.sum())}
            for metric, rows_fn in (("balanced_accuracy", balanced_rows), ("auroc", auroc_rows)):
                point = float(rows_fn(p[None], y[None])[0])
                samples = rows_fn(p[draws], y[draws])
                boot[metric].append(samples)
                lo, hi = np.percentile(samples, [2.5, 97.5])
                row |= {metric: point, f"{metric}_lo": float(lo), f"{metric}_hi": float(hi)}
            rows.append(row)
        for metric, samples in boot.items():
            point = float(np.mean([r[metric] for r in rows if r["method"] == method]))
            lo, hi = np.percentile(np.mean(samples, axis=0), [2.5, 97.5])
            means[method, metric] = (point, float(lo), float(hi))
    return {"rows": rows, "means": means}


def _write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    with open(out / "probe.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [f"Linear probes on {result['attributes_file']}: {result['how']}.", ""]
    lines += ["| method | mean balanced accuracy | mean AUROC |", "|---|---|---|"]
    for m in methods:
        cells = [f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in (result["means"][m, k] for k in
                 ("balanced_accuracy", "auroc"))]  # fmt: skip
        lines.append(f"| {m} | {cells[0]} | {cells[1]} |")
    if result["skipped"]:
        lines += ["", f"Left out (fewer than {MIN_CLASS} labelled faces of one class): {', '.join(result['skipped'])}."]
    (out / "probe.md").write_text("\n".join(lines) + "\n")
    plot_probe(rows, methods, out / "probe.png")
