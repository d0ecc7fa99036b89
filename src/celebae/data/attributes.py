"""CelebA's 40 attribute labels, from the official ``list_attr_celeba.txt`` or Kaggle's ``list_attr_celeba.csv``.

    list_attr_celeba.txt                         list_attr_celeba.csv
    202599                                       image_id,5_o_Clock_Shadow,…,Young
    5_o_Clock_Shadow Arched_Eyebrows … Young     000001.jpg,-1,1,…,1
    000001.jpg -1  1 … 1

The files sit beside ``list_eval_partition``. Values are 1 (has it) and -1 (not). The lines are read as they
are: a public copy that stops early (the sample's stops after 020000.jpg) labels only the images it names, and
every tool says how many images of its split carry labels.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CelebaeError
from ..files import regular_file

FILES = ("list_attr_celeba.txt", "list_attr_celeba.csv")
MAX_ATTRIBUTE_BYTES = 64 * 2**20  # the full official file is 26 MB


@dataclass
class Attributes:
    """Labels of the images a file names: ``names`` (40 attribute names) and file name → row of ±1."""

    names: list[str]
    labels: dict[str, np.ndarray]
    source: Path

    def column(self, name: str) -> int:
        if name not in self.names:
            close = [n for n in self.names if n.lower() == name.lower()]
            hint = f"did you mean {close[0]}?" if close else f"attributes are {', '.join(self.names)}"
            raise CelebaeError(f"{self.source.name} has no attribute {name!r}; {hint}")
        return self.names.index(name)

    def of(self, files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(indices into ``files`` of the labelled ones, their labels as 0/1, shape n × attributes)."""
        found = [(i, self.labels[Path(f).name]) for i, f in enumerate(files) if Path(f).name in self.labels]
        if not found:
            return np.empty(0, np.int64), np.empty((0, len(self.names)), np.int8)
        index, rows = zip(*found, strict=True)
        return np.array(index), (np.stack(rows) > 0).astype(np.int8)


def attribute_file(root: str | Path) -> Path | None:
    """The attribute file of a CelebA folder, if it has one."""
    for name in FILES:
        if (Path(root) / name).exists():
            return Path(root) / name
    return None


def read_attributes(path: str | Path) -> Attributes:
    """The labels of every image ``path`` names (official txt or Kaggle csv); a malformed line is an error
    naming the file and the line."""
    path = regular_file(Path(path), "attribute file")
    if path.stat().st_size > MAX_ATTRIBUTE_BYTES:
        raise CelebaeError(f"attribute file {path} is larger than CelebA's own ({MAX_ATTRIBUTE_BYTES >> 20} MB)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise CelebaeError(f"attribute file {path} is not text; use CelebA's list_attr_celeba.txt") from None
    if path.suffix == ".csv":
        rows = list(csv.reader(lines))
        header, body = (rows[0][1:], rows[1:]) if rows else ([], [])
    else:
        header, body = (lines[1].split(), [line.split() for line in lines[2:]]) if len(lines) > 1 else ([], [])
    if not header:
        raise CelebaeError(f"attribute file {path} has no header of attribute names; use CelebA's list_attr_celeba")
    labels = {}
    for number, row in enumerate(body, start=3 if path.suffix == ".txt" else 2):
        if not row:
            continue
        values = row[1:]
        if len(values) != len(header) or any(v not in ("1", "-1") for v in values):
            raise CelebaeError(
                f"{path}, line {number}: expected a file name and {len(header)} values of 1 or -1, got {len(values)} "
                "values; is the file complete and in CelebA's format?"
            )
        labels[row[0]] = np.array(values, dtype=np.int8)
    return Attributes(header, labels, path)
