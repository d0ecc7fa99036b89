"""Any image size and code size, and the rate–distortion picture."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny
from PIL import Image

import celebae
from celebae import CelebaeError, build_model, count_parameters, read_metrics, train
from celebae.cli import main
from celebae.data import draw_face, open_source, prepare_split
from celebae.evaluation.rd import available_codecs
from celebae.models import IMAGE_SIZES

CASES = [("conv", size, code) for size in IMAGE_SIZES for code in (32, 256)] + [("pool", 128, 256)]


@pytest.mark.parametrize("name,size,code", CASES)
def test_every_size_and_code(name: str, size: int, code: int) -> None:
    model = build_model(name, nf=4 if name == "conv" else 16, image_size=size, code_size=code).eval()
    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (2, code) and model.code_size == code and model.image_shape == (3, size, size)
        assert model.decode(z).shape == x.shape
    stages = int(np.log2(size // 4))
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert name == "pool" or len(convs) == stages + 1  # halvings to 4×4, then the 4×4 code convolution


def test_the_report_sizes_keep_the_report_models() -> None:
    assert count_parameters(build_model("conv", nf=64, image_size=128, code_size=256)) == 30_685_440
    # widths are capped at 16a: a 512-pixel model adds two stages of 16a, not 32a and 64a
    widths = [m.out_channels for m in build_model("conv", nf=4, image_size=512).encoder.modules()
              if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
    assert widths == [4, 8, 16, 32, 64, 64, 64, 256]


def test_bad_sizes_are_one_line_errors() -> None:
    with pytest.raises(CelebaeError, match="image_size must be one of 32, 64, 128, 256, 512, got 100"):
        celebae.Settings(image_size=100)
    with pytest.raises(CelebaeError, match="image_size must be one of 128, got 64: model 'pool' \\(Model 2"):
        build_model("pool", image_size=64)
    with pytest.raises(CelebaeError, match="code of 16·nf numbers"):
        build_model("pool", nf=16, code_size=100)


def test_caches_are_keyed_by_size(tmp_path: Path) -> None:
    source = open_source("synthetic", synthetic_size=100)
    small = prepare_split(source, "test", cache_dir=tmp_path, size=64, progress=False)
    big = prepare_split(source, "test", cache_dir=tmp_path, progress=False)
    assert small.path != big.path and small.images.shape[1:] == (3, 64, 64) and big.images.shape[1:] == (3, 128, 128)
    assert small.manifest["size"] == 64
    np.testing.assert_array_equal(big.images[0], draw_face(90))


@pytest.fixture(scope="module")
def run64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sizes") / "run"
    settings = tiny(out.parent, image_size=64, code_size=128, epochs=4, limit_train=128, lr=2e-3, out=str(out))
    train(settings, progress=False)
    return out


def test_a_64_pixel_run_learns_and_records_its_size(run64: Path) -> None:
    losses = [r["train_loss"] for r in read_metrics(run64) if r["kind"] == "step"]
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5])
    summary = json.loads((run64 / "summary.json").read_text())
    assert summary["image_size"] == 64 and summary["code_size"] == 128 and summary["label"].endswith("size=64 code=128")
    assert summary["compression"]["input_numbers"] == 3 * 64 * 64


def test_a_64_pixel_run_takes_celeba_files(run64: Path, tmp_path: Path, celeba_sample: Path) -> None:
    face = celeba_sample / "img_align_celeba" / "000001.jpg"
    assert Image.open(face).size == (178, 218)
    run = celebae.load(run64)
    inputs, outputs = run.reconstruct(face)
    assert inputs.shape == outputs.shape == (1, 3, 64, 64)
    assert run.encode([face, np.asarray(Image.open(face))]).shape == (2, 128)
    grid = tmp_path / "g.png"
    assert main(["reconstruct", str(run64), str(face), "--out", str(grid)]) == 0
    assert Image.open(grid).size == (66 + 2, 2 * 66 + 2)
    assert main(["export", str(run64), "--format", "torchscript", "--out", str(tmp_path / "x")]) == 0
    assert json.loads((tmp_path / "x" / "export.json").read_text())["input"].startswith("N×3×64×64")


def test_rd_writes_every_method_within_its_budget(run64: Path, tmp_path: Path) -> None:
    assert main(["rd", str(run64), "--out", str(tmp_path), "--limit", "12"]) == 0
    with open(tmp_path / "rd.csv") as f:
        rows = list(csv.DictReader(f))
    methods = {r["method"] for r in rows}
    precisions = ("float32", "float16", "8-bit", "4-bit")
    assert methods == {*(f"conv code ({p})" for p in precisions), "PCA (float32)", "PCA (8-bit)", *available_codecs()}
    code = {r["method"]: float(r["bytes"]) for r in rows if r["method"].startswith("conv")}
    assert code == {
        "conv code (float32)": 512,
        "conv code (float16)": 256,
        "conv code (8-bit)": 128,
        "conv code (4-bit)": 64,
    }
    pca = sorted(float(r["bytes"]) for r in rows if r["method"] == "PCA (float32)")
    assert pca == [64, 128, 256, 512]  # k = 16 … 128: no more components than the 128 training images
    for codec in available_codecs():
        fitted = [r for r in rows if r["method"] == codec and r["bytes"]]
        assert fitted, f"{codec} fits no budget"
        for r in fitted:
            assert int(r["max_bytes"]) <= int(r["config"].split()[1]), r
        missed = [r for r in rows if r["method"] == codec and not r["bytes"]]
        assert all("even the lowest quality takes" in r["note"] for r in missed)
    psnr = {r["method"]: float(r["psnr"]) for r in rows if r["method"].startswith("conv")}
    assert psnr["conv code (4-bit)"] > 5 and abs(psnr["conv code (8-bit)"] - psnr["conv code (float32)"]) < 0.5
    assert Image.open(tmp_path / "rd.png").size[0] > 800


def test_rd_names_its_data_by_a_short_name(run64: Path, tmp_path: Path, monkeypatch) -> None:
    import celebae.evaluation.rd as rd

    folder = tmp_path / "my-faces"  # an absolute path, as users give it: the figure names the folder only
    folder.mkdir()
    for i in range(60):
        Image.fromarray(draw_face(i, 5).transpose(1, 2, 0)).save(folder / f"f{i:02d}.png")
    titles = []
    monkeypatch.setattr(rd, "plot_rate_distortion", lambda curves, path, title: titles.append(title) or path)
    assert main(["rd", str(run64), "--data", str(folder), "--out", str(tmp_path / "rd"), "--limit", "4"]) == 0
    assert titles and "my-faces" in titles[0] and str(tmp_path) not in titles[0], titles
