"""Decode a split once into a uint8 N×3×S×S ``.npy`` (S = 128 by default) (memory-mappable) plus a JSON manifest.

The cache key covers the source (kind, folder, item list, each file's size and
modification time), the crop recipe and the cache format, so a prepared split
is reused until one of them changes. Decoding uses every core.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import multiprocessing as mp
import os
import platform
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from tqdm import tqdm

from ..errors import CelebaeError
from ..files import read_json, regular_file
from .images import CROPS, SIZE, BadImage, load_image
from .sources import Source
from .synthetic import draw_face

log = logging.getLogger("celebae")

CACHE_FORMAT = 1
_CHUNK = 64  # images per worker task


@dataclass
class PreparedSplit:
    images: np.ndarray  # uint8 N×3×S×S, memory-mapped from ``path``
    files: list[str]  # item names, in row order
    path: Path
    manifest: dict


def default_cache_dir() -> Path:
    return Path(os.environ.get("CELEBAE_CACHE") or Path.home() / ".cache" / "celebae")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _fingerprint(source: Source, items: list[str], crop: str, size: int) -> str:
    h = hashlib.sha256()
    head = {
        "format": CACHE_FORMAT,
        "kind": source.kind,
        "seed": source.seed,
        "crop": crop,
        "size": size,
        "root": str(source.root.resolve()) if source.root else None,
    }
    h.update(json.dumps(head, sort_keys=True).encode())
    for item in items:
        h.update(item.encode() + b"\0")
        if source.root is not None:
            try:
                st = os.stat(source.root / item)
                h.update(f"{st.st_size}:{st.st_mtime_ns}\0".encode())
            except OSError:  # a dangling link or a file gone since listing: decoding reports it
                h.update(b"missing\0")
    return h.hexdigest()


def _decode_chunk(task: tuple) -> list[tuple[int, str | None, bool]]:
    """Worker: decode items into rows of the shared memory-mapped array; report failures, don't raise."""
    out_path, start, items, kind, root, seed, crop, size = task
    out = np.load(out_path, mmap_mode="r+")
    report = []
    for i, item in enumerate(items, start):
        try:
            if kind == "synthetic":
                out[i], upscaled = draw_face(int(item), seed, size), False
            else:
                out[i], upscaled = load_image(os.path.join(root, item), crop, size)
            report.append((i, None, upscaled))
        except BadImage as err:
            report.append((i, str(err), False))
        except OSError as err:  # removed after listing, a dangling link, unreadable (permissions)
            reason = "missing or a dangling link" if isinstance(err, FileNotFoundError) else "unreadable"
            report.append((i, f"{reason} ({err.strerror or err})", False))
    # no flush here: the rows are in the shared page cache already, and an msync per chunk stalls the worker
    # on the disk; the main process syncs the file once, before its manifest says it is complete
    return report


@dataclass
class _Decoded:
    """What decoding a split found: failures (item, reason) and upscaled items, in the items' order."""

    bad: list[tuple[str, str]]
    upscaled: list[str]
    workers: int
    seconds: float
    size: int


def prepare_split(
    source: Source,
    split: str,
    crop: str = "resize-crop",
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    strict: bool = False,
    progress: bool = True,
    size: int = SIZE,
) -> PreparedSplit:
    """The ``split`` of ``source`` as a prepared uint8 N×3×size×size array, decoding it only if no valid cache
    exists (the cache is keyed by the source, the crop and the size).

    ``limit`` keeps the first N items. Unreadable images are skipped with a warning naming each,
    or raise when ``strict``.
    """
    if crop not in CROPS:
        raise CelebaeError(f"unknown crop {crop!r}; choose one of {', '.join(CROPS)}")
    items = source.splits[split][: limit if limit is not None else None]
    if not items:
        raise CelebaeError(
            f"the {split} split of {source.kind} data {source.root or ''} is empty; "
            "use a source with images in every split"
        )
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _fingerprint(source, items, crop, size)
    stem = cache / f"{source.kind}-{split}-{len(items)}-{key[:16]}"
    cached = _read_cache(stem, key)
    if cached is not None:
        return cached
    tmp = stem.with_name(f"{stem.name}.tmp{os.getpid()}.npy")
    kept = tmp.with_name(tmp.name.replace(".npy", ".kept.npy"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        decoded = _decode(source, split, items, (crop, size), tmp, workers, strict, progress)
        files = _keep_good_rows(tmp, kept, items, decoded, source, split)
        os.replace(kept, stem.with_suffix(".npy"))
        manifest = _write_manifest(stem, key, source, split, (crop, size), files, decoded)
    except OSError as err:
        raise CelebaeError(
            f"cannot write the prepared {split} split at {getattr(err, 'filename', None) or cache}: "
            f"{err.strerror or err}; point --cache-dir (or CELEBAE_CACHE) at a writable folder with room"
        ) from None
    finally:
        for leftover in (tmp, kept):
            with contextlib.suppress(OSError):  # absent, or a read-only folder where it never was
                leftover.unlink(missing_ok=True)
    return PreparedSplit(np.load(stem.with_suffix(".npy"), mmap_mode="r"), files, stem.with_suffix(".npy"), manifest)


def _write_manifest(
    stem: Path, key: str, source: Source, split: str, recipe: tuple[str, int], files: list[str], decoded: _Decoded
) -> dict:
    """``<stem>.json``, written last and atomically: its key makes the array beside it a valid cache."""
    manifest = {
        "key": key,
        "format": CACHE_FORMAT,
        "source": source.kind,
        "root": str(source.root.resolve()) if source.root else None,
        "seed": source.seed,
        "split": split,
        "crop": recipe[0],
        "size": recipe[1],
        "count": len(files),
        "files": files,
        "skipped": [{"file": n, "reason": e} for n, e in decoded.bad],
        "upscaled": decoded.upscaled,
        "seconds": round(decoded.seconds, 3),
        "workers": decoded.workers,
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "pillow": PIL.__version__},
    }
    manifest_path = stem.with_suffix(".json")
    manifest_tmp = manifest_path.with_name(manifest_path.name + f".tmp{os.getpid()}")
    try:
        manifest_tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(manifest_tmp, manifest_path)
    finally:
        manifest_tmp.unlink(missing_ok=True)
    return manifest


def _read_cache(stem: Path, key: str) -> PreparedSplit | None:
    """The prepared split at ``stem`` if its manifest carries ``key``."""
    npy, manifest_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if not (manifest_path.exists() and npy.exists()):
        return None
    try:
        manifest = read_json(manifest_path, "cache manifest")
    except CelebaeError:  # a damaged manifest: the split is prepared again, as if it were not there
        return None
    if manifest.get("key") != key or not isinstance(manifest.get("files"), list):
        return None
    return PreparedSplit(np.load(regular_file(npy, "cache"), mmap_mode="r"), manifest["files"], npy, manifest)


def _decode(
    source: Source,
    split: str,
    items: list[str],
    recipe: tuple[str, int],
    out: Path,
    workers: int | None,
    strict: bool,
    progress: bool,
) -> _Decoded:
    """Decode ``items`` with ``recipe`` (crop, size) into rows of a new memory-mapped array at ``out``, on
    every core."""
    t0 = time.perf_counter()
    _allocate(out, len(items), split, recipe[1])
    root = str(source.root) if source.root else ""
    tasks = [
        (str(out), s, items[s : s + _CHUNK], source.kind, root, source.seed, *recipe)
        for s in range(0, len(items), _CHUNK)
    ]
    workers = max(1, min(workers or available_cores(), len(tasks)))
    decoded = _Decoded([], [], workers, 0.0, recipe[1])
    bar = tqdm(total=len(items), unit="img", desc=f"prepare {split}", disable=None if progress else True, leave=False)
    try:
        for report in _run_tasks(tasks, workers, split):
            for i, error, up in report:
                if error is not None:
                    decoded.bad.append((items[i], error))
                    if strict:
                        raise CelebaeError(
                            f"image {_where(source, items[i])} is {error}; fix or remove it "
                            "(or drop --strict-images to skip bad images)"
                        )
                elif up:
                    decoded.upscaled.append(items[i])
            bar.update(len(report))
    finally:
        bar.close()
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    decoded.seconds = time.perf_counter() - t0
    return decoded


def _run_tasks(tasks: list[tuple], workers: int, split: str):
    """Each task's report as it completes; in this process for one worker, else in a pool whose worker dying
    (a signal, the kernel's OOM killer) fails the preparation instead of hanging it."""
    if workers == 1:
        yield from map(_decode_chunk, tasks)
        return
    # fork: workers inherit the imports; they use Pillow and NumPy only, never torch.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    try:
        for future in as_completed([pool.submit(_decode_chunk, t) for t in tasks]):
            yield future.result()
    except BrokenProcessPool:
        raise CelebaeError(
            f"a worker preparing the {split} split died; run `celebae prepare` again, and if it dies again, "
            "check memory and the cache disk"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _allocate(path: Path, count: int, split: str, size: int) -> None:
    """Create the uint8 array file for ``count`` images with all its blocks reserved on disk: a full disk is
    a clear error here, never a worker killed by SIGBUS while writing into a sparse memory map."""
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, 3, size, size)).flush()  # sparse
    need = count * 3 * size * size
    _need_space(path.parent, need + (1 << 20), f"the {split} split ({count:,} images × 3×{size}×{size} bytes)")
    if hasattr(os, "posix_fallocate"):
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, path.stat().st_size)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without fallocate: space checked
                raise
        finally:
            os.close(fd)


def _need_space(folder: Path, need: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < need:
        raise CelebaeError(
            f"the cache {folder} has {free / 2**20:,.1f} MiB free, but {what} needs {need / 2**20:,.1f} MiB; "
            "free space there or point --cache-dir (or CELEBAE_CACHE) at a disk with room"
        )


def _keep_good_rows(tmp: Path, npy: Path, items: list[str], decoded: _Decoded, source: Source, split: str) -> list[str]:
    """The decoded array at ``npy`` without the rows of images that failed; returns the kept items."""
    bad_names = {name for name, _ in decoded.bad}
    files = [item for item in items if item not in bad_names]
    for name, error in decoded.bad[:10]:
        log.warning("skipped image %s: %s", _where(source, name), error)
    if decoded.bad:
        log.warning("skipped %d unreadable image(s) of %d in the %s split", len(decoded.bad), len(items), split)
    if decoded.upscaled:
        log.warning(
            "%d image(s) smaller than %d px were upscaled to %d×%d (first: %s)",
            len(decoded.upscaled),
            *(decoded.size,) * 3,
            _where(source, decoded.upscaled[0]),
        )
    if not files:
        raise CelebaeError(f"no readable images in the {split} split of {source.root}; every file failed to decode")
    if not decoded.bad:
        os.replace(tmp, npy)
        return files
    keep = np.array([i for i, item in enumerate(items) if item not in bad_names])
    full = np.load(tmp, mmap_mode="r")
    _allocate(npy, len(keep), split, decoded.size)
    kept = np.load(npy, mmap_mode="r+")
    for s in range(0, len(keep), 1024):
        kept[s : s + 1024] = full[keep[s : s + 1024]]
    kept.flush()
    del full, kept
    return files


def _where(source: Source, item: str) -> str:
    return str(source.root / item) if source.root else f"synthetic face {item}"
