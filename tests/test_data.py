"""Data sources, splits, preprocessing, preparation cache, bad input, batches."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from celebae import CelebaeError
from celebae.data import Batches, draw_face, load_image, open_source, prepare_split
from celebae.data.batches import epoch_permutation
from celebae.data.images import square
from celebae.data.sources import _read_partition

# ---- CelebA ------------------------------------------------------------------------------------------------------


def test_official_partition_file_has_the_official_split(celeba_sample: Path) -> None:
    rows = _read_partition(celeba_sample / "list_eval_partition.txt")
    counts = {s: sum(1 for _, split in rows if split == s) for s in ("train", "val", "test")}
    assert counts == {"train": 162_770, "val": 19_867, "test": 19_962}
    assert len(rows) == 202_599


def test_sample_folder_uses_present_images_and_counts_missing(celeba_sample: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="celebae"):
        source = open_source(celeba_sample)
    assert source.kind == "celeba"
    assert {s: len(v) for s, v in source.splits.items()} == {"train": 1560, "val": 780, "test": 660}
    assert source.missing == 202_599 - 3000
    assert "199599 images absent" in caplog.text
    assert source.splits["train"][:2] == ["000001.jpg", "000002.jpg"]
    assert source.splits["test"][0] == "182739.jpg"


def _link_images(src: Path, dst: Path, names: list[str]) -> None:
    dst.mkdir(parents=True)
    for n in names:
        os.symlink(src / n, dst / n)


def test_kaggle_layout(celeba_sample: Path, tmp_path: Path) -> None:
    names = ["000001.jpg", "000002.jpg", "162862.jpg", "182739.jpg"]
    _link_images(celeba_sample / "img_align_celeba", tmp_path / "img_align_celeba" / "img_align_celeba", names)
    (tmp_path / "list_eval_partition.csv").write_text(
        "image_id,partition\n000001.jpg,0\n000002.jpg,0\n162862.jpg,1\n182739.jpg,2\n999999.jpg,2\n"
    )
    source = open_source(tmp_path)
    assert source.kind == "celeba"
    assert source.root == tmp_path / "img_align_celeba" / "img_align_celeba"
    assert source.splits == {"train": names[:2], "val": [names[2]], "test": [names[3]]}
    assert source.missing == 1


def test_partition_file_errors(tmp_path: Path) -> None:
    (tmp_path / "img_align_celeba").mkdir()
    Image.new("RGB", (178, 218)).save(tmp_path / "img_align_celeba" / "000001.jpg")
    with pytest.raises(CelebaeError, match="no list_eval_partition.txt or .csv"):
        open_source(tmp_path)
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg seven\n")
    with pytest.raises(CelebaeError, match=r"list_eval_partition.txt line 2 is not"):
        open_source(tmp_path)
    (tmp_path / "list_eval_partition.txt").write_text("")
    with pytest.raises(CelebaeError, match="is empty"):
        open_source(tmp_path)
    (tmp_path / "list_eval_partition.txt").write_text("000009.jpg 0\r\n")
    with pytest.raises(CelebaeError, match="none of the images named"):
        open_source(tmp_path)


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(CelebaeError, match="does not exist"):
        open_source(tmp_path / "nope")
    with pytest.raises(CelebaeError, match="no images"):
        open_source(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CelebaeError, match="is a file"):
        open_source(tmp_path / "notes.txt")


# ---- any folder --------------------------------------------------------------------------------------------------


def _faces(folder: Path, n: int, ext: str = "png", start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        p = folder / f"face{i:04d}.{ext}"
        Image.fromarray(draw_face(i).transpose(1, 2, 0)).save(p)
        paths.append(p)
    return paths


def test_folder_split_is_recursive_deterministic_and_stable(tmp_path: Path) -> None:
    _faces(tmp_path / "a", 30, "png")
    _faces(tmp_path / "b" / "c", 30, "jpg", start=30)
    (tmp_path / "b" / "readme.md").write_text("not an image")
    first = open_source(tmp_path)
    assert first.kind == "folder"
    assert sum(map(len, first.splits.values())) == 60
    assert all(len(v) > 0 for v in first.splits.values())
    assert open_source(tmp_path).splits == first.splits
    _faces(tmp_path / "d", 40, "webp", start=60)  # adding images moves none of the old ones
    second = open_source(tmp_path)
    for split, items in first.splits.items():
        assert set(items) <= set(second.splits[split])
    assert sum(map(len, second.splits.values())) == 100
    assert open_source(tmp_path, split_seed=1).splits != second.splits


def test_synthetic_faces_are_seeded_and_varied() -> None:
    a, b = draw_face(3, seed=0), draw_face(3, seed=0)
    assert a.shape == (3, 128, 128) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, draw_face(4, seed=0))
    assert not np.array_equal(a, draw_face(3, seed=1))
    assert 20 < a.std() < 120  # a picture, not a flat colour
    source = open_source("synthetic", synthetic_size=100)
    assert {s: len(v) for s, v in source.splits.items()} == {"train": 80, "val": 10, "test": 10}


# ---- preprocessing -----------------------------------------------------------------------------------------------


def _gradient(w: int, h: int) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    return Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8))


def test_resize_crop_is_the_authors_recipe() -> None:
    img = _gradient(178, 218)
    out = square(img, "resize-crop")
    # torchvision Resize(128) → 128×156 (int(128·218/178)), CenterCrop(128) → rows 14..141
    ref = img.resize((128, 156), Image.BILINEAR).crop((0, 14, 128, 142))
    assert out.size == (128, 128)
    assert np.array_equal(np.asarray(out), np.asarray(ref))
    other = square(img, "crop-resize")  # centre 178×178, then resize
    ref2 = img.crop((0, 20, 178, 198)).resize((128, 128), Image.BILINEAR)
    assert np.array_equal(np.asarray(other), np.asarray(ref2))


def test_load_image_on_a_real_celeba_file(celeba_sample: Path) -> None:
    arr, upscaled = load_image(celeba_sample / "img_align_celeba" / "000001.jpg")
    assert arr.shape == (3, 128, 128) and arr.dtype == np.uint8 and not upscaled
    ref = np.asarray(
        Image.open(celeba_sample / "img_align_celeba" / "000001.jpg")
        .convert("RGB")
        .resize((128, 156), Image.BILINEAR)
        .crop((0, 14, 128, 142))
    ).transpose(2, 0, 1)
    assert np.array_equal(arr, ref)


def test_odd_modes_are_converted(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.new("L", (150, 150), 100).save(grey)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (150, 150), (255, 0, 0, 0)).save(rgba)  # fully transparent → white
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (150, 150), (0, 255, 255, 0)).save(cmyk)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((150, 150), 65535 // 2, np.uint16)).save(deep)
    palette = tmp_path / "palette.bmp"
    indexed = Image.new("P", (150, 150), 3)
    indexed.putpalette(list(range(256)) * 3)  # a full palette: Pillow 12's BMP writer truncates the default one
    indexed.save(palette)
    assert np.all(load_image(grey)[0] == 100)
    assert np.all(load_image(rgba)[0] == 255)
    red = load_image(cmyk)[0]
    assert red[0].mean() > 200 and red[1].mean() < 60
    assert np.all(np.abs(load_image(deep)[0].astype(int) - 127) <= 1)  # 16-bit rescaled, not clipped
    assert load_image(palette)[0].shape == (3, 128, 128)


# ---- preparation and bad files -----------------------------------------------------------------------------------


def test_prepare_caches_and_reuses(tmp_path: Path, monkeypatch) -> None:
    _faces(tmp_path / "imgs", 40)
    source = open_source(tmp_path / "imgs")
    cache = tmp_path / "cache"
    first = prepare_split(source, "train", cache_dir=cache, workers=2, progress=False)
    assert first.images.shape == (len(source.splits["train"]), 3, 128, 128)
    assert first.images.dtype == np.uint8 and isinstance(first.images, np.memmap)
    assert first.files == source.splits["train"]
    assert first.manifest["crop"] == "resize-crop" and "pillow" in first.manifest["versions"]
    row = source.splits["train"].index(first.files[5])
    assert np.array_equal(first.images[row], load_image(source.root / first.files[5])[0])

    import celebae.data.prepare as prep

    def no_decoding(task):
        raise AssertionError("a valid cache must not be decoded again")

    monkeypatch.setattr(prep, "_decode_chunk", no_decoding)
    again = prepare_split(source, "train", cache_dir=cache, workers=1, progress=False)
    assert again.path == first.path
    monkeypatch.undo()
    recrop = prepare_split(source, "train", crop="crop-resize", cache_dir=cache, progress=False)
    assert recrop.path != first.path  # a new recipe is a new cache
    os.utime(source.root / first.files[0], ns=(0, 0))  # the source changed
    assert prepare_split(source, "train", cache_dir=cache, progress=False).path != first.path


def test_bad_images_are_skipped_with_names_or_fatal(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "imgs"
    good = _faces(folder, 12)
    (folder / "corrupt.jpg").write_bytes(b"this is not a jpeg")
    Image.open(good[1]).save(folder / "truncated.jpg")
    (folder / "truncated.jpg").write_bytes((folder / "truncated.jpg").read_bytes()[:600])
    Image.new("RGB", (20, 20)).save(folder / "tiny.png")
    Image.new("RGB", (64, 80), (10, 200, 10)).save(folder / "small.png")
    source = open_source(folder)
    source.splits["train"] = sorted(sum(source.splits.values(), []))  # everything in one split
    with caplog.at_level(logging.WARNING, logger="celebae"):
        prepared = prepare_split(source, "train", cache_dir=tmp_path / "c", workers=2, progress=False)
    assert len(prepared.files) == 13 and prepared.images.shape[0] == 13  # 12 faces + the upscaled small one
    for name in ("corrupt.jpg", "truncated.jpg", "tiny.png"):
        assert name not in prepared.files
        assert f"skipped image {folder / name}" in caplog.text
    assert "skipped 3 unreadable image(s) of 16" in caplog.text
    assert "1 image(s) smaller than 128 px were upscaled" in caplog.text
    assert {s["file"] for s in prepared.manifest["skipped"]} == {"corrupt.jpg", "truncated.jpg", "tiny.png"}
    small = prepared.images[prepared.files.index("small.png")]
    assert small[1].mean() > 190
    with pytest.raises(CelebaeError, match="corrupt.jpg is unreadable or corrupt"):
        prepare_split(source, "train", cache_dir=tmp_path / "c2", strict=True, workers=1, progress=False)


def test_a_split_of_only_bad_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    source = open_source(tmp_path)
    source.splits = {"train": ["broken.png"], "val": [], "test": []}
    with pytest.raises(CelebaeError, match="no readable images"):
        prepare_split(source, "train", cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(CelebaeError, match="split .* is empty"):
        prepare_split(source, "val", cache_dir=tmp_path / "c", progress=False)


def test_real_sample_prepares_with_limits(celeba_sample: Path, tmp_path: Path) -> None:
    source = open_source(celeba_sample)
    prepared = prepare_split(source, "val", limit=50, cache_dir=tmp_path, progress=False)
    assert prepared.images.shape == (50, 3, 128, 128)
    assert prepared.files == source.splits["val"][:50]


# ---- batches -----------------------------------------------------------------------------------------------------


def test_batches_convert_shuffle_and_shard() -> None:
    data = torch.arange(10, dtype=torch.uint8).repeat_interleave(3 * 128 * 128).reshape(10, 3, 128, 128)
    b = Batches(data, 4, torch.device("cpu"), shuffle=True, seed=1, drop_last=True)
    assert len(b) == 2
    batches = list(b.epoch(0))
    assert [x.shape[0] for x in batches] == [4, 4]
    assert batches[0].dtype == torch.float32 and batches[0].min() >= -1 and batches[0].max() <= 1
    ids = [int(round((v + 1) * 127.5)) for x in batches for v in x[:, 0, 0, 0].tolist()]
    assert ids == epoch_permutation(10, 1, 0)[:8].tolist()
    assert not torch.equal(epoch_permutation(10, 1, 0), epoch_permutation(10, 1, 1))
    assert torch.equal(next(b.epoch(1, start=1)), list(b.epoch(1))[1])  # resuming mid-epoch replays the order
    # two ranks split each global batch of 4 in halves, together the single-process batch
    r0, r1 = (list(Batches(data, 4, torch.device("cpu"), True, 1, True, rank=r, world=2).epoch(0)) for r in (0, 1))
    for whole, a, c in zip(batches, r0, r1, strict=True):
        assert torch.equal(torch.cat([a, c]), whole)
    evaluation = list(Batches(data, 4, torch.device("cpu")).epoch(0))
    assert [x.shape[0] for x in evaluation] == [4, 4, 2]
