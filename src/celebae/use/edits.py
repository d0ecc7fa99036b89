"""Attribute directions in code space, and a face edited along one (DFC-VAE's recipe).

    v = mean code of the labelled faces with the attribute − mean code of those without
    strip: the face, then decode(z + t·v) for each amount t   (t = 0 is the plain reconstruction)

Labels come from the attribute file beside the run's data (``data.attributes``); a file that labels only
some faces is used for those, and the count is returned with the direction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import to_uint8
from ..data.attributes import Attributes, attribute_file, read_attributes
from ..errors import CelebaeError
from ..quality.figures import save_labelled_grid
from .latent import check_count, split_images
from .trained import ImageLike, TrainedRun

MIN_LABELLED = 5  # faces of each class a mean code needs
MAX_AMOUNT = 10.0


def run_attributes(trained: TrainedRun, data: str | None = None) -> Attributes:
    """The attribute labels of the run's data (or ``data``): a one-line error where the folder has none."""
    folder = trained.settings.data_spec(data).data
    path = attribute_file(folder) if folder != "synthetic" else None
    if path is None:
        raise CelebaeError(
            f"{folder} has no list_attr_celeba.txt or .csv; put CelebA's attribute file beside list_eval_partition"
        )
    return read_attributes(path)


def attribute_direction(
    trained: TrainedRun,
    attributes: Attributes,
    name: str,
    data: str | None = None,
    split: str = "train",
    limit: int | None = None,
) -> tuple[torch.Tensor, dict[str, int]]:
    """(the direction of ``name`` in code space, the counts of labelled faces with and without it), from the
    labelled faces among the split's first ``limit``."""
    column = attributes.column(name)
    images = split_images(trained, data, split, limit)
    index, labels = attributes.of(images.files)
    has = labels[:, column].astype(bool) if len(index) else np.zeros(0, bool)
    counts = {"with": int(has.sum()), "without": int((~has).sum()), "unlabelled": len(images.files) - len(index)}
    if min(counts["with"], counts["without"]) < MIN_LABELLED:
        raise CelebaeError(
            f"{name}: {counts['with']} labelled faces with it and {counts['without']} without in the {split} split "
            f"of {attributes.source.parent}; a direction needs {MIN_LABELLED} of each (choose another --split)"
        )
    codes = trained.encode_batches(images.pixels[index])
    return codes[has].mean(0) - codes[~has].mean(0), counts


def edit(
    trained: TrainedRun,
    image: ImageLike,
    name: str,
    amounts: list[float],
    out: str | Path,
    data: str | None = None,
    split: str = "train",
) -> tuple[Path, dict[str, int]]:
    """A strip: ``image``, then its code moved by each amount along ``name``'s direction, decoded."""
    check_count("amounts", len(amounts), 1)
    if any(not abs(t) <= MAX_AMOUNT for t in amounts):
        raise CelebaeError(f"amounts must lie within ±{MAX_AMOUNT:g} (multiples of the direction), got {amounts}")
    direction, counts = attribute_direction(trained, run_attributes(trained, data), name, data, split)
    x = trained.images(image)[:1]
    z = trained.encode_tensor(x).cpu()
    moved = torch.cat([z + t * direction for t in amounts])
    strip = torch.cat([to_uint8(x).cpu(), to_uint8(trained.decode_batches(moved))])
    label = f"{name} {amounts[0]:+g} … {amounts[-1]:+g}"
    return save_labelled_grid([strip], [label], out), counts
