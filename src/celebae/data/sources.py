"""Where images come from and how they split: a CelebA folder, any image folder, or synthetic faces.

A source only lists items (relative file paths, or face numbers for
``synthetic``) per split; ``prepare`` turns them into pixels.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CelebaeError
from .images import is_image_file

log = logging.getLogger("celebae")

SPLITS = ("train", "val", "test")
_PARTITION_NAMES = {"0": "train", "1": "val", "2": "test"}


@dataclass
class Source:
    """Items per split. ``kind`` is celeba, folder or synthetic; ``root`` is where files are read from."""

    kind: str
    root: Path | None
    splits: dict[str, list[str]]
    missing: int = 0  # named by the partition file but absent from the folder
    seed: int = 0  # synthetic: which faces; folder: the split hash's seed

    def describe(self) -> str:
        sizes = " / ".join(f"{len(self.splits[s]):,} {s}" for s in SPLITS)
        where = f" in {self.root}" if self.root else ""
        text = f"{self.kind}{where}: {sizes}"
        if self.missing:
            text += f" ({self.missing:,} images named by the partition file are not in the folder; using those present)"
        return text


def open_source(
    data: str | os.PathLike, synthetic_size: int = 3000, split_seed: int = 0, follow_links: bool = False
) -> Source:
    """``data`` is ``synthetic``, a CelebA folder (official or Kaggle layout) or any folder of images."""
    if str(data) == "synthetic":
        return synthetic_source(synthetic_size, seed=split_seed)
    root = Path(data).expanduser()
    if not root.exists():
        raise CelebaeError(
            f"data folder {root} does not exist; pass --data synthetic, a CelebA folder or an image folder"
        )
    if not root.is_dir():
        raise CelebaeError(f"--data {root} is a file; pass the folder that holds the images")
    if (root / "img_align_celeba").is_dir() or _partition_file(root):
        return celeba_source(root)
    return folder_source(root, split_seed, follow_links)


def synthetic_source(size: int, seed: int = 0) -> Source:
    """``size`` procedurally drawn faces, split 80/10/10 in order."""
    if size < 10:
        raise CelebaeError(f"synthetic_size must be at least 10 (one face per split), got {size}")
    n_train, n_val = int(size * 0.8), int(size * 0.1)
    ids = [str(i) for i in range(size)]
    splits = {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]}
    return Source("synthetic", None, splits, seed=seed)


def _partition_file(root: Path) -> Path | None:
    for name in ("list_eval_partition.txt", "list_eval_partition.csv"):
        if (root / name).is_file():
            return root / name
    return None


def _read_partition(path: Path) -> list[tuple[str, str]]:
    """(file name, split) pairs from CelebA's txt (``000001.jpg 0``) or Kaggle's csv (``image_id,partition``)."""
    rows: list[tuple[str, str]] = []
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise CelebaeError(
            f"{path} line {line} is not UTF-8 text (byte 0x{err.object[err.start]:02x}); "
            "use CelebA's own list_eval_partition file"
        ) from None
    if path.suffix == ".csv":
        lines = [(i, r) for i, r in enumerate(csv.reader(text.splitlines()), 1) if r]
        if lines and lines[0][1][:1] == ["image_id"]:
            lines = lines[1:]
    else:
        lines = [(i, line.split()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    for lineno, parts in lines:
        parts = [p.strip() for p in parts]
        if len(parts) != 2 or parts[1] not in _PARTITION_NAMES or not is_image_file(parts[0]):
            raise CelebaeError(
                f"{path} line {lineno} is not '<image>.jpg <0|1|2>': {' '.join(parts)[:60]!r}; "
                "use CelebA's own list_eval_partition file"
            )
        rows.append((parts[0], _PARTITION_NAMES[parts[1]]))
    if not rows:
        raise CelebaeError(f"{path} is empty; use CelebA's own list_eval_partition file")
    return rows


def celeba_source(root: Path) -> Source:
    """CelebA as shipped (``img_align_celeba/`` + ``list_eval_partition.txt``) or as Kaggle ships it
    (``img_align_celeba/img_align_celeba/`` + ``list_eval_partition.csv``)."""
    partition = _partition_file(root)
    if partition is None:
        raise CelebaeError(
            f"{root} has img_align_celeba/ but no list_eval_partition.txt or .csv; put CelebA's partition file "
            "there (or point --data at the image folder itself to split it 80/10/10)"
        )
    images = root / "img_align_celeba"
    if (images / "img_align_celeba").is_dir():  # Kaggle nests the folder in itself
        images = images / "img_align_celeba"
    if not images.is_dir():
        raise CelebaeError(f"{partition} found but no image folder {images}; unpack img_align_celeba.zip beside it")
    entries = list(os.scandir(images))
    present = {e.name for e in entries if e.is_file()}
    warn_dangling([Path(e.path) for e in entries if e.is_symlink() and e.name not in present and is_image_file(e.name)])
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    missing = 0
    for name, split in _read_partition(partition):
        if name in present:
            splits[split].append(name)
        else:
            missing += 1
    if not any(splits.values()):
        raise CelebaeError(f"none of the images named in {partition} are in {images}; is the download complete?")
    src = Source("celeba", images, splits, missing=missing)
    if missing:
        log.warning(
            "%s names %d images absent from %s; using the %d present",
            partition.name,
            missing,
            images,
            sum(map(len, splits.values())),
        )
    return src


def _split_of(relpath: str, seed: int) -> str:
    """80/10/10 by a seeded hash of the path: adding images never moves the others."""
    bucket = int.from_bytes(hashlib.sha1(f"{seed}:{relpath}".encode()).digest()[:8], "big") % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


def list_images(root: Path, follow_links: bool = False) -> list[str]:
    """Every image file below ``root`` (relative POSIX paths, sorted), each real file and folder visited once.

    Links are followed inside ``root`` (a loop or a second way to the same folder is visited once, by its
    plain path where it has one); a link leading out of ``root`` is skipped unless ``follow_links``.
    """
    real_root = root.resolve()
    seen_dirs: set[Path] = set()
    seen_files: set[Path] = set()
    files: list[str] = []
    dangling: list[Path] = []
    plain, linked = [root], []  # folders reached without a link go first, so their names are the ones kept
    while plain or linked:
        folder = plain.pop() if plain else linked.pop()
        real = folder.resolve()
        if real in seen_dirs:
            continue
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError as err:
            log.warning("cannot list %s (%s); its images are left out", folder, err.strerror or err)
            continue
        for entry in entries:
            path = Path(entry.path)
            target = path.resolve() if entry.is_symlink() else None
            if target is not None and not target.exists():
                if is_image_file(entry.name):
                    dangling.append(path)
                continue
            if target is not None and not follow_links and not target.is_relative_to(real_root):
                continue
            if entry.is_dir():
                (linked if target is not None else plain).append(path)
            elif is_image_file(entry.name) and not entry.name.startswith("."):
                real_file = target or path.resolve()
                if real_file not in seen_files:
                    seen_files.add(real_file)
                    files.append(path.relative_to(root).as_posix())
    warn_dangling(dangling)
    return sorted(files)


def warn_dangling(links: list[Path]) -> None:
    """Name the links to images that lead nowhere, as skipped corrupt files are named."""
    for link in sorted(links)[:10]:
        log.warning("skipped image %s: a dangling link (to %s, which does not exist)", link, os.readlink(link))
    if len(links) > 10:
        log.warning("skipped %d dangling links to images (the first 10 are named above)", len(links))


def folder_source(root: Path, seed: int = 0, follow_links: bool = False) -> Source:
    """Every jpg/png/webp/bmp below ``root`` (see ``list_images``), split 80/10/10 by a hash of its path."""
    files = list_images(root, follow_links)
    if not files:
        raise CelebaeError(f"no images (jpg, png, webp, bmp) found in {root} or below it")
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for rel in files:
        splits[_split_of(rel, seed)].append(rel)
    return Source("folder", root, splits, seed=seed)
