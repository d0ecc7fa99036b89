"""Images in, uint8 tensors out: sources (CelebA, image folder, synthetic), preparation, batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .batches import Batches, place, to_uint8, to_unit_range
from .images import BadImage, load_image
from .prepare import PreparedSplit, prepare_split
from .sources import SPLITS, Source, open_source
from .synthetic import draw_face

if TYPE_CHECKING:
    from ..settings import Settings


def load_split(settings: Settings, split: str, progress: bool = True, source: Source | None = None) -> PreparedSplit:
    """The prepared ``split`` of the data ``settings`` name, with its ``limit_<split>`` applied."""
    source = source or open_source(settings.data, settings.synthetic_size, settings.split_seed)
    limit = {"train": settings.limit_train, "val": settings.limit_val, "test": settings.limit_test}[split]
    return prepare_split(
        source, split, settings.crop, limit, settings.cache_dir, strict=settings.strict_images, progress=progress
    )


__all__ = [
    "SPLITS",
    "BadImage",
    "Batches",
    "PreparedSplit",
    "Source",
    "draw_face",
    "load_image",
    "load_split",
    "open_source",
    "place",
    "prepare_split",
    "to_uint8",
    "to_unit_range",
]
