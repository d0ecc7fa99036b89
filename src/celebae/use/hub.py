"""A model folder in the Hugging Face Hub's layout: the one module that knows it, and how to fetch one.

    DIR/config.json          what rebuilds the model and its preprocessing: model, its arguments, image size,
                             code size, crop recipe, value range; and the run's resolved settings
    DIR/model.safetensors    the weights: the run's checkpoint file itself (its SHA-256 of the data kept)
    DIR/README.md            the model card (``huggingface_hub.ModelCard``: YAML header, then sections)
    DIR/summary.json, metrics.csv, eval-test.json, reconstructions.png, loss.png   the run's record, as the
                             run directory names them (``celebae.load(DIR).summary`` reads them the same way)
    DIR/detector.safetensors an anomaly detector's statistics and threshold, where the run has one
    DIR/encoder.onnx, decoder.onnx, export.json                                    with ``--with-onnx``

The first three are what ``PyTorchModelHubMixin.save_pretrained`` writes, so the Hub and its tools read
the folder as a PyTorch model with a card. Writing one is ``evaluation.share``'s (its card carries the
evaluation); this module reads one, and ``fetch`` downloads a Hub repository (``hf://user/name``) with
``snapshot_download`` first.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import CelebaeError
from ..files import read_json
from ..training.settings import Settings

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"
LIBRARY = "celebae"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_EXTRA = "pip install 'celebae[hub]'"
HUB_PREFIX = "hf://"  # names a Hub repository explicitly: the only way a name is sent to the Hub


def is_hub_folder(path: Path) -> bool:
    return (path / WEIGHTS).exists() or ((path / CONFIG).exists() and (path / CARD).exists())


def weights_path(folder: Path) -> Path:
    path = folder / WEIGHTS
    if not path.exists():
        raise CelebaeError(f"{folder} has no {WEIGHTS}; a celebae model folder holds {CONFIG} and {WEIGHTS}")
    return path


def model_config(settings: Settings, code_size: int, image_shape: tuple[int, ...]) -> dict[str, Any]:
    """config.json: the model and its preprocessing, readable without celebae, and the full settings."""
    return {
        "library_name": LIBRARY,
        "model": settings.model,
        "model_args": settings.model_kwargs(),
        "image_size": image_shape[-1],
        "code_size": code_size,
        "preprocessing": {
            "crop": settings.crop,
            "resize": f"{settings.crop}: see celebae.data.images (shorter side to the size, centre crop)",
            "channels": "RGB, channels first",
            "range": [-1.0, 1.0],
            "from_uint8": "x / 127.5 - 1",
        },
        "settings": settings.to_dict(),
    }


def read_settings(folder: Path) -> Settings:
    """The settings in ``folder``'s config.json, checked: a missing file or a wrong field is one line."""
    path = folder / CONFIG
    try:
        config = read_json(path, "model config")
    except FileNotFoundError:
        raise CelebaeError(f"{folder} has no {CONFIG}; export the run again: celebae export RUN --format hub") from None
    if config.get("library_name") != LIBRARY or not isinstance(config.get("settings"), dict):
        raise CelebaeError(f"{path} is not a celebae model's config (no library_name 'celebae' with its settings)")
    settings = Settings.from_dict(config["settings"], str(path))
    if config.get("model") != settings.model or config.get("model_args", {}) != settings.model_kwargs():
        raise CelebaeError(f"{path}: model and model_args disagree with its settings; export the run again")
    # a folder names no place on this machine: tools never write where a downloaded config points
    settings = settings.replace(out=None, cache_dir=None)
    return settings


def fetch(repo_id: str, revision: str | None = None, cached_only: bool = False) -> Path:
    """A Hub repository's files in the local Hub cache (downloaded once) as a folder to load; with
    ``cached_only``, only what the cache holds already (nothing is sent anywhere)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        if cached_only:  # no Hub library, so no Hub cache either
            raise CelebaeError(
                f"{repo_id} does not exist here (a Hub repository is named {HUB_PREFIX}user/name)"
            ) from None
        raise CelebaeError(f"loading {repo_id} from the Hugging Face Hub needs huggingface_hub: {HUB_EXTRA}") from None
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=cached_only))
    except Exception as err:  # network, authentication, a missing repository: the library's own message
        if cached_only:
            raise CelebaeError(
                f"{repo_id} is not a folder here, nor a Hub repository in the local cache; to download it from the "
                f"Hugging Face Hub, name it {HUB_PREFIX}{repo_id}"
            ) from None
        raise CelebaeError(f"cannot fetch {repo_id} from the Hugging Face Hub: {str(err).splitlines()[0]}") from None


def resolve(run: str | Path) -> Path:
    """Where a model named on the command line or in ``celebae.load`` is, by one rule:

    - ``hf://user/name`` (or ``hf://user/name@revision``): that Hub repository, downloaded once into the Hub's
      cache;
    - a path that exists here: that folder;
    - ``user/name`` that is no path here: that repository only if the Hub cache holds it already; a mistyped
      local path is never sent to the Hub;
    - anything else: the path itself (the caller says it does not exist).
    """
    text = str(run)
    if text.startswith(HUB_PREFIX):
        repo_id, _, revision = text.removeprefix(HUB_PREFIX).partition("@")
        if not REPO_ID.match(repo_id):
            raise CelebaeError(f"{text} does not name a Hub repository; write {HUB_PREFIX}user/name")
        return fetch(repo_id, revision or None)
    path = Path(run)
    if not path.exists() and isinstance(run, str) and REPO_ID.match(run):
        return fetch(run, cached_only=True)
    return path
