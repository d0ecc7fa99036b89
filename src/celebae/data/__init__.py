"""Images in, uint8 tensors out: sources (CelebA, image folder, synthetic), preparation, batches.

Imports only from itself and ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .batches import Batches, place, to_uint8, to_unit_range
from .images import BadImage, load_image
from .prepare import PreparedSplit, prepare_split
from .sources import SPLITS, Source, open_source
from .synthetic import draw_face


@dataclass(frozen=True)
class DataSpec:
    """Which images, prepared how: the data part of a run's settings."""

    data: str = "synthetic"
    synthetic_size: int = 3000
    split_seed: int = 0
    crop: str = "resize-crop"
    limits: dict[str, int | None] = field(default_factory=dict)  # split → first N items
    cache_dir: str | None = None
    strict_images: bool = False
    follow_links: bool = False
    size: int = 128  # images are size×size

    def open(self) -> Source:
        return open_source(self.data, self.synthetic_size, self.split_seed, self.follow_links)


def load_split(spec: DataSpec, split: str, progress: bool = True, source: Source | None = None) -> PreparedSplit:
    """The prepared ``split`` of the data ``spec`` names, with its limit applied."""
    return prepare_split(
        source or spec.open(),
        split,
        spec.crop,
        spec.limits.get(split),
        spec.cache_dir,
        strict=spec.strict_images,
        progress=progress,
        size=spec.size,
    )


__all__ = [
    "SPLITS",
    "BadImage",
    "Batches",
    "DataSpec",
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
