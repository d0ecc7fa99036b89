"""Share a trained run: a model folder in the Hugging Face Hub's layout with a model card, and its upload.

    celebae export RUN --format hub --out DIR [--with-onnx] [--push-to user/name]

The folder's layout is ``use.hub``'s. The card is written with ``huggingface_hub.ModelCard`` from a template:
its YAML header (library, licence, tags, data, a ``model-index`` with the test MSE, PSNR and SSIM) and the
sections a reader needs (what the model is, how to use it, data and recipe, evaluation against PCA and JPEG
at equal bytes, limitations, figures). ``huggingface_hub`` and Jinja2 come with ``celebae[hub]``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import CelebaeError
from ..models import count_parameters, model_spec
from ..training.checkpoint import read_metadata, save_weights
from ..training.rundir import DETECTOR, RunDir
from ..training.settings import data_name
from ..use import hub
from ..use.anomaly import AnomalyDetector
from ..use.export import check_onnx, export
from ..use.trained import TrainedRun, load
from .rd import markdown_table
from .scoring import evaluate

log = logging.getLogger("celebae")
CELEBA_LICENCE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


def export_hub(
    run: str | Path, out: str | Path, with_onnx: bool = False, evaluation: dict[str, Any] | None = None
) -> list[Path]:
    """Write ``run``'s best weights, config, card and figures to ``out``; returns the files written.

    The card's evaluation is ``evaluation``, else the run's own ``eval-test.json`` where it was scored against
    PCA and JPEG, else scored now (where the run's data is here). Everything is checked first (the extras, the
    target) and written into a temporary folder that becomes ``out`` at the end: a failure leaves nothing.
    What the folder carries has no path of this machine: settings without ``out`` and ``cache_dir``, the data
    named by its folder."""
    check_target(run, out)
    _check_extras(with_onnx)
    trained = load(run, "best", device="cpu")
    evaluation = _portable_evaluation(evaluation or card_evaluation(trained.run))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_folder(trained, staging, evaluation, with_onnx)
        if out.exists():
            out.rmdir()  # empty: check_target said so
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(p for p in out.iterdir() if p.is_file())


def _write_folder(trained: TrainedRun, out: Path, evaluation: dict[str, Any] | None, with_onnx: bool) -> None:
    source, dest = trained.run, RunDir(out)
    settings = trained.settings.portable()
    weights = source.weights("best")
    save_weights(trained.model, out / hub.WEIGHTS, settings.to_dict(), read_metadata(weights)["position"])
    config = hub.model_config(settings, trained.model.code_size, trained.model.image_shape)
    (out / hub.CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    for src, dst in [
        (source.metrics_path, dest.metrics_path),
        (source.reconstructions_png, dest.reconstructions_png),
        (source.loss_png, dest.loss_png),
    ]:
        if src.exists():
            shutil.copyfile(src, dst)
    if (trained.path / DETECTOR).exists():
        shutil.copyfile(trained.path / DETECTOR, out / DETECTOR)  # the threshold travels with the model
    if source.summary is not None:
        summary = {**source.summary, "data": data_name(source.summary.get("data", settings.data))}
        dest.summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    if evaluation is not None:
        dest.eval_path("test").write_text(json.dumps(evaluation, indent=1) + "\n")
    if with_onnx:
        export(trained.path, "onnx", out)
        _drop_path(out / "export.json")
    card = model_card(trained, evaluation, onnx=with_onnx, figures=dest.reconstructions_png.exists())
    card.save(out / hub.CARD)


def card_evaluation(run: RunDir) -> dict[str, Any] | None:
    """The evaluation a model card reports: the run's, against PCA and JPEG; scored now if it has none (and
    its data is here)."""
    recorded = run.evaluation("test")
    methods = recorded.get("methods", []) if recorded else []
    if any(str(m.get("method", "")).startswith("PCA") for m in methods):  # scored against baselines
        return recorded
    try:
        return evaluate(run.path, baselines=("pca", "jpeg"))
    except CelebaeError as err:
        log.warning("the card will have no comparison with PCA and JPEG: %s", err)
        return recorded


def _portable_evaluation(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """An evaluation record without this machine's paths (its data named by its folder)."""
    if evaluation is None or "data" not in evaluation:
        return evaluation
    return {**evaluation, "data": data_name(str(evaluation["data"]))}


def _drop_path(path: Path) -> None:
    """export.json names the run's path; a shared folder keeps the rest."""
    record = json.loads(path.read_text())
    record.pop("run", None)
    path.write_text(json.dumps(record, indent=1) + "\n")


def _check_extras(with_onnx: bool) -> None:
    """The extras the folder needs, before anything is written."""
    try:
        import huggingface_hub  # noqa: F401
        import jinja2  # noqa: F401
    except ImportError:
        raise CelebaeError(f"--format hub needs huggingface_hub and Jinja2: {hub.HUB_EXTRA}") from None
    if with_onnx:
        check_onnx()


def check_target(run: str | Path, out: str | Path) -> None:
    """Refuse, before any work, to export a model folder again or into a folder that holds files."""
    if hub.is_hub_folder(Path(run)):
        raise CelebaeError(f"{run} is a model folder already; export a run directory")
    if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
        raise CelebaeError(f"{out} is not an empty folder; choose a new folder for the model")


def push(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload a model folder to the Hub repository ``repo_id`` (created if needed); returns its address."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise CelebaeError(f"--push-to needs huggingface_hub: {hub.HUB_EXTRA}") from None
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="celebae export")
    except Exception as err:  # network, authentication (huggingface-cli login), permissions
        raise CelebaeError(f"cannot upload {folder} to {repo_id}: {str(err).splitlines()[0]}") from None
    return f"https://huggingface.co/{repo_id}"


def model_card(trained: TrainedRun, evaluation: dict[str, Any] | None, onnx: bool, figures: bool) -> Any:
    """The model card: ``huggingface_hub.ModelCard`` filled from the run's record."""
    try:
        from huggingface_hub import EvalResult, ModelCard, ModelCardData
    except ImportError:
        raise CelebaeError(f"--format hub needs huggingface_hub and Jinja2: {hub.HUB_EXTRA}") from None
    s, summary = trained.settings, trained.summary or {}
    celeba = _is_celeba(s.data)
    scores = _scores(evaluation, summary)
    results = [
        EvalResult(
            task_type="image-to-image",
            task_name="Image reconstruction",
            dataset_type="celeba" if celeba else data_name(s.data),
            dataset_name=_dataset_used(s.data, summary, evaluation),
            dataset_split="test",
            dataset_args={"folder": data_name(s.data), "test_images": _test_images(summary, evaluation)},
            metric_type=key,
            metric_name=label,
            metric_value=round(value, 6),
        )
        for key, label, value in scores
    ]
    name = f"celebae-{s.model}-nf{s.width}-{s.size}px"
    data = ModelCardData(
        library_name=hub.LIBRARY,
        license="other" if celeba else "mit",
        license_name="celeba-non-commercial-research" if celeba else None,
        license_link=CELEBA_LICENCE if celeba else None,
        tags=["autoencoder", "image-reconstruction", "dimensionality-reduction", "faces", "pytorch", "celebae"],
        datasets=["celeba"] if celeba else None,
        metrics=[key for key, _, _ in scores],
        model_name=name,
        eval_results=results or None,
    )
    return ModelCard.from_template(data, template_str=CARD_TEMPLATE, **_card_values(trained, evaluation, onnx, figures))


CELEBA_TEST_IMAGES = 19_962  # the official split's test images


def _test_images(summary: dict[str, Any], evaluation: dict[str, Any] | None) -> int | None:
    return evaluation.get("images") if evaluation else summary.get("splits", {}).get("test")


def _dataset_used(data: str, summary: dict[str, Any], evaluation: dict[str, Any] | None) -> str:
    """What the scores were measured on, as the model-index names it: all of CelebA's official test split, or
    the folder and the number of its test images (a partial copy is not "CelebA")."""
    n = _test_images(summary, evaluation)
    if _is_celeba(data) and n == CELEBA_TEST_IMAGES:
        return f"CelebA (official split, {n:,} test images)"
    where = f"{data_name(data)}, a copy of CelebA's layout" if _is_celeba(data) else data_name(data)
    return f"{where} ({n:,} test images)" if n else where


def _is_celeba(data: str) -> bool:
    """Trained on a CelebA folder (the card then carries CelebA's licence and limits)."""
    return data != "synthetic" and Path(data).name.lower().startswith("celeba")


def _scores(evaluation: dict[str, Any] | None, summary: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(metric, label, value) on the test split: the evaluation's (best weights), else the summary's."""
    source = evaluation or {"mse": summary.get("test_mse"), "psnr": summary.get("test_psnr")}
    labels = {"mse": "MSE (pixels in [-1, 1])", "psnr": "PSNR (dB)", "ssim": "SSIM"}
    return [(k, label, float(source[k])) for k, label in labels.items() if source.get(k) is not None]


def _card_values(trained: TrainedRun, evaluation: dict[str, Any] | None, onnx: bool, figures: bool) -> dict:
    s, summary, model = trained.settings, trained.summary or {}, trained.model
    numbers = math.prod(model.image_shape)
    rows = evaluation["methods"] if evaluation else []
    return {
        "title": f"celebae {s.model} (nf {s.width}, {s.size}×{s.size}, {model.code_size}-number code)",
        "model": s.model,
        "model_label": model_spec(s.model).description,
        "params": f"{count_parameters(model):,}",
        "code_size": model.code_size,
        "numbers": f"{numbers:,}",
        "kept": f"{100 * model.code_size / numbers:.2f}",
        "size": s.size,
        "crop": s.crop,
        "onnx": onnx,
        "preprocess": PREPROCESS[s.crop].format(size=s.size),
        "figures": figures,
        "data": "synthetic faces" if s.data == "synthetic" else data_name(s.data),  # no machine's path
        "splits": {k: f"{v:,}" for k, v in summary.get("splits", {}).items()},
        "recipe": _recipe(s, summary),
        "evaluation": markdown_table(rows)[2:],  # the rows of celebae evaluate's table
        "eval_images": evaluation.get("images") if evaluation else None,
        "test_mse": summary.get("test_mse"),
        "test_psnr": summary.get("test_psnr"),
        "celeba": _is_celeba(s.data),
        "detector": _detector(trained),
    }


def _detector(trained: TrainedRun) -> dict[str, Any] | None:
    """What the card says of the run's anomaly detector, where it has one."""
    if not (trained.path / DETECTOR).exists():
        return None
    detector = AnomalyDetector.load(trained)
    threshold = detector.thresholds[detector.score]
    return {**detector.record, "score": detector.score, "threshold": threshold, "file": DETECTOR}


def _recipe(s: Any, summary: dict[str, Any]) -> list[tuple[str, str]]:
    wall = summary.get("wall_s")
    return [
        ("loss", s.loss),
        ("optimiser", f"Adam, learning rate {s.lr:g}"),
        ("epochs", str(summary.get("epochs", s.epochs))),
        ("optimiser steps", f"{summary.get('steps', 0):,}"),
        ("batch size", str(s.batch_size)),
        ("precision", str(summary.get("precision", s.precision))),
        ("seed", str(s.seed)),
        ("wall time", (f"{wall / 60:.1f} min" if wall >= 60 else f"{wall:.0f} s") if wall else "–"),
        (
            "hardware",
            f"{summary.get('device', '?')} × {summary.get('world_size', 1)}, torch {summary.get('torch', '?')}",
        ),
    ]


# celebae.data.images.square, spelled out for readers without celebae (the card's test runs it)
PREPROCESS = {
    "resize-crop": """w, h = img.size; short, long = min(w, h), max(w, h)   # shorter side to {size}, centre crop
new = ({size}, int({size} * long / short)) if w <= h else (int({size} * long / short), {size})
img = img.resize(new, Image.BILINEAR) if new != img.size else img
top, left = round((img.height - {size}) / 2), round((img.width - {size}) / 2)
img = img.crop((left, top, left + {size}, top + {size}))""",
    "crop-resize": """w, h = img.size; side = min(w, h)                      # centre square, then {size}×{size}
top, left = round((h - side) / 2), round((w - side) / 2)
img = img.crop((left, top, left + side, top + side))
img = img.resize(({size}, {size}), Image.BILINEAR) if side != {size} else img""",
}

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A deep convolutional autoencoder for faces, trained with celebae: the
report's **{{ model_label }}** (`{{ model }}`), {{ params }} parameters. It compresses a 3×{{ size }}×{{ size }}
face ({{ numbers }} numbers) into a code of **{{ code_size }} numbers** ({{ kept }} % of the input) and back.
Uses: dimensionality reduction, feature extraction, anomaly detection (reconstruction error).

## How to use

```python
import celebae                      # pip install 'celebae[hub]'
run = celebae.load("this/folder")   # a local folder, or the Hub repository's name
codes = run.encode(["face.jpg"])    # N×{{ code_size }}; run.reconstruct("face.jpg") gives (inputs, outputs)
```

Images are prepared as in training: RGB, {{ crop }} to {{ size }}×{{ size }} (shorter side to {{ size }}, centre
crop), values `x / 127.5 - 1` in [-1, 1], channels first.
{% if onnx %}
Without celebae or PyTorch, with onnxruntime alone (`encoder.onnx`, `decoder.onnx`), preparing the image
exactly as celebae does:

```python
import numpy as np, onnxruntime
from PIL import Image
img = Image.open("face.jpg").convert("RGB")
{{ preprocess }}
x = (np.asarray(img, np.float32) / 127.5 - 1).transpose(2, 0, 1)[None]                # 1×3×{{ size }}×{{ size }}
code = onnxruntime.InferenceSession("encoder.onnx").run(None, {"images": x})[0]       # 1×{{ code_size }}
faces = onnxruntime.InferenceSession("decoder.onnx").run(None, {"code": code})[0]     # 1×3×{{ size }}×{{ size }}
```
{% endif %}
## Training data and recipe

Data: `{{ data }}`{% if celeba %} (CelebA's layout and official split){% endif %}{% if splits %}:
{{ splits.get("train", 0) }} train / {{ splits.get("val", 0) }} validation /
{{ splits.get("test", 0) }} test images{% endif %}.

| setting | value |
|---|---|
{% for key, value in recipe %}| {{ key }} | {{ value }} |
{% endfor %}
## Evaluation
{% if evaluation %}
On {{ eval_images }} test images, the model's code against PCA and JPEG at the same number of bytes per image
(`celebae evaluate RUN --baselines pca,jpeg`; MSE on pixels in [-1, 1]):

| method | bytes per image | MSE | PSNR (dB) | SSIM |
|---|---|---|---|---|
{% for row in evaluation %}{{ row }}
{% endfor %}{% else %}
Test MSE {{ "%.5f"|format(test_mse) if test_mse is not none else "–" }}, PSNR
{{ "%.2f"|format(test_psnr) if test_psnr is not none else "–" }} dB (the final model, from training). No comparison
with baselines was recorded: run `celebae evaluate RUN --baselines pca,jpeg` before exporting.
{% endif %}{% if detector %}
## Anomaly detection

`{{ detector.file }}` flags unusual images without the data: `AnomalyDetector.load(celebae.load(DIR))`
then `.predict(images)` gives each image's score, p-value and flag. Score: **{{ detector.score }}**;
threshold **{{ "%.4g"|format(detector.threshold) }}**, the {{ "%g"|format(100 * (1 - detector.fpr)) }}th
percentile of its scores on {{ detector.calibration_images }} validation images (false-positive rate
{{ detector.fpr }} on faces like them); fitted on {{ detector.fit_images }} training images.
{% endif %}
## Limitations
{% if celeba %}
Trained on CelebA: aligned, frontal faces of celebrities, mostly young and light-skinned; it reconstructs other
faces, poses and crops worse, and its reconstruction error reflects that skew as much as anything anomalous.
CelebA's licence allows non-commercial research only, and so do these weights.
{% else %}
Trained on `{{ data }}`, not on CelebA: its quality on real faces is not measured here.
{% endif %}The code is not a generative latent space (no prior is fitted): decoding arbitrary codes gives blurry
or meaningless images.
{% if figures %}
## Figures

Test images (top) and their reconstructions (bottom):

![reconstructions](reconstructions.png)

Loss curves:

![loss](loss.png)
{% endif %}"""
