"""Putting a trained autoencoder to work: evaluation against baselines, latent-space tools, export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import celebae
from celebae.cli import main
from celebae.data import draw_face, open_source, prepare_split
from celebae.evaluation.baselines import codec_at_budget, pca_baseline


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small conv model trained long enough on synthetic faces to know what a face looks like."""
    out = tmp_path_factory.mktemp("use") / "run"
    celebae.train(
        celebae.Settings(
            data="synthetic",
            synthetic_size=1000,
            nf=16,
            batch_size=16,
            epochs=5,
            lr=5e-4,
            limit_val=64,
            limit_test=48,
            out=str(out),
        ),
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """41 ordinary faces, one of pure noise and one of the faces upside down."""
    folder = tmp_path_factory.mktemp("odd")
    for i in range(2000, 2040):
        Image.fromarray(draw_face(i).transpose(1, 2, 0)).save(folder / f"face{i}.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(folder / "noise.png")
    Image.fromarray(draw_face(2100).transpose(1, 2, 0)).save(folder / "face2100.png")
    Image.fromarray(draw_face(2100).transpose(1, 2, 0)[::-1].copy()).save(folder / "upside_down.png")
    return folder


def test_evaluate_with_baselines(run: Path, tmp_path: Path, capsys) -> None:
    per_image = tmp_path / "scores.csv"
    assert main(["evaluate", str(run), "--baselines", "pca,jpeg", "--per-image", str(per_image)]) == 0
    out = capsys.readouterr().out
    assert "| method | bytes per image | MSE | PSNR (dB) | SSIM |" in out and "the report states 95.31 %" in out
    result = json.loads((run / "eval-test.json").read_text())
    methods = {f"{m['method']}, {m['config']}": m for m in result["methods"]}  # rd's labels
    assert result["images"] == 48 and result["compression"]["reduction_percent"] == pytest.approx(99.4792)
    model = methods["conv code (float32), 256 numbers, run"]
    assert model["bytes"] == 1024 and methods["conv code (float16), 256 numbers, run"]["bytes"] == 512
    assert methods["conv code (8-bit), 256 numbers, run"]["bytes"] == 256
    # quantising the code costs little: the 8-bit code is within 5 % of the float code's MSE
    assert methods["conv code (8-bit), 256 numbers, run"]["mse"] == pytest.approx(model["mse"], rel=0.05)
    summary = json.loads((run / "summary.json").read_text())
    assert model["mse"] == pytest.approx(summary["test_mse"], rel=1e-4)  # the best epoch is the last here
    assert 0 < model["ssim"] < 1 and 0 < methods["JPEG, ≤ 1024 bytes"]["ssim"] <= 1
    assert methods["JPEG, ≤ 1024 bytes"]["max_bytes"] <= 1024
    assert "PCA (float32), 256 components" in methods
    with open(per_image) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48 and np.mean([float(r["mse"]) for r in rows]) == pytest.approx(model["mse"], rel=1e-5)


def test_pca_beats_a_shuffled_pixel_control(tmp_path: Path) -> None:
    source = open_source("synthetic", synthetic_size=400)
    train = prepare_split(source, "train", cache_dir=tmp_path, progress=False).images
    test = np.asarray(prepare_split(source, "test", cache_dir=tmp_path, progress=False).images)
    flat = test.reshape(len(test), -1)
    shuffled = np.stack([np.random.default_rng(i).permutation(row) for i, row in enumerate(flat)]).reshape(test.shape)

    def mse(images: np.ndarray) -> float:
        recon = pca_baseline(train, images, 64)
        return float((recon - (torch.from_numpy(np.array(images)).float() / 127.5 - 1)).pow(2).mean())

    assert mse(test) < 0.5 * mse(shuffled)  # PCA learnt the structure of faces, not just their colours


def test_jpeg_baseline_stays_within_its_budget() -> None:
    images = np.stack([draw_face(i) for i in range(6)])
    decoded, sizes = codec_at_budget(images, 1024, "JPEG")
    assert decoded.shape == images.shape and decoded.dtype == np.uint8
    assert sizes.max() <= 1024 and sizes.min() > 300
    none, floor = codec_at_budget(images, 100, "JPEG")  # below any JPEG's headers
    assert none is None and floor.min() > 100


def test_encode_a_folder(run: Path, odd_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "codes.npy"
    assert main(["encode", str(run), "--data", str(odd_folder), "--split", "all", "--out", str(out)]) == 0
    codes = np.load(out)
    with open(out.with_suffix(".csv")) as f:
        names = [r["file"] for r in csv.DictReader(f)]
    assert codes.shape == (43, 256) and codes.dtype == np.float32
    assert sorted(names) == sorted(p.name for p in odd_folder.iterdir())
    i = names.index("face2000.png")
    expected = celebae.load(run).encode(odd_folder / "face2000.png")[0].cpu().numpy()
    np.testing.assert_allclose(codes[i], expected, rtol=1e-4, atol=1e-4)


def test_anomalies_put_the_corrupted_images_on_top(run: Path, odd_folder: Path, tmp_path: Path) -> None:
    assert main(["anomalies", str(run), "--data", str(odd_folder), "--split", "all", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "ranking.csv") as f:
        rows = list(csv.DictReader(f))
    ranking = [r["file"] for r in rows]
    mse = {r["file"]: float(r["mse"]) for r in rows}
    assert ranking[0] == "noise.png"
    # A small model trained for seconds: the flipped face is among the top 5 of 43, and its error is well
    # above its upright twin's (1.56× when written)
    assert ranking.index("upside_down.png") < 5
    assert mse["upside_down.png"] > 1.3 * mse["face2100.png"]
    assert Image.open(tmp_path / "anomalies.png").height == 4 * 130 + 2


def test_interpolation_ends_reconstruct_their_inputs(run: Path, odd_folder: Path, tmp_path: Path) -> None:
    a, b = odd_folder / "face2001.png", odd_folder / "face2002.png"
    strip = tmp_path / "strip.png"
    assert main(["interpolate", str(run), str(a), str(b), "--steps", "5", "--out", str(strip)]) == 0
    picture = np.asarray(Image.open(strip))
    margin = picture.shape[1] - (7 * 130 + 2)  # the label's margin on the left
    cells = [picture[2:130, margin + 2 + j * 130 : margin + 130 + j * 130].transpose(2, 0, 1) for j in range(7)]
    trained = celebae.load(run)
    _, recon = trained.reconstruct([a, b])
    # t = 0 is A's reconstruction, t = 1 is B's: equal up to a grey level where the batch of 5 mixes rounds
    # differently from the batch of 2 (matrix products are not batch-size invariant in their last bit)
    for cell, image in ((cells[1], recon[0]), (cells[5], recon[1])):
        diff = np.abs(cell.astype(int) - image.cpu().numpy().astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    assert not np.array_equal(cells[3], cells[1])


def test_neighbours_find_the_query_itself(run: Path, odd_folder: Path, tmp_path: Path, capsys) -> None:
    query = odd_folder / "face2010.png"
    for metric in ("cosine", "euclidean"):
        assert (
            main(
                [
                    "neighbours",
                    str(run),
                    str(query),
                    "--data",
                    str(odd_folder),
                    "--split",
                    "all",
                    "--k",
                    "3",
                    "--metric",
                    metric,
                    "--out",
                    str(tmp_path / f"{metric}.png"),
                ]
            )
            == 0
        )
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].endswith("face2010.png") and float(lines[0].split()[0]) < 1e-4
        assert len(lines) == 4


def test_code_map(run: Path, tmp_path: Path) -> None:
    assert main(["map", str(run), "--out", str(tmp_path / "map.png")]) == 0
    assert Image.open(tmp_path / "map.png").size[0] > 500


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch(run: Path, tmp_path: Path, fmt: str) -> None:
    assert main(["export", str(run), "--format", fmt, "--out", str(tmp_path)]) == 0
    model = celebae.load(run, device="cpu").model.float()
    x = torch.rand(3, 3, 128, 128) * 2 - 1  # a batch size other than the export's example
    with torch.no_grad():
        z, y = model.encode(x), model.decode(model.encode(x))
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        enc = ort.InferenceSession(str(tmp_path / "encoder.onnx"))
        dec = ort.InferenceSession(str(tmp_path / "decoder.onnx"))
        z2 = enc.run(None, {"images": x.numpy()})[0]
        y2 = dec.run(None, {"code": z2})[0]
    else:
        z2 = torch.jit.load(str(tmp_path / "encoder.pt"))(x).detach().numpy()
        y2 = torch.jit.load(str(tmp_path / "decoder.pt"))(torch.from_numpy(z2)).detach().numpy()
    np.testing.assert_allclose(z2, z.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(y2, y.numpy(), atol=1e-4, rtol=1e-4)
    assert json.loads((tmp_path / "export.json").read_text())["code_size"] == 256


def test_api_accepts_paths_pil_and_tensors(run: Path, odd_folder: Path) -> None:
    trained = celebae.load(run)
    path = odd_folder / "face2003.png"
    pil = Image.open(path)
    tensor = torch.from_numpy(np.asarray(pil).transpose(2, 0, 1).copy())
    x = trained.images([path, pil, tensor])
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # the same pixels, to the bit
    codes = trained.encode([path, pil, tensor])
    assert codes.shape == (3, 256)
    # the rows of one batch may take different kernels (a batch's tail) that sum in another order: equal up
    # to float32 rounding, not to allclose's default atol of 1e-8 (torch 2.4.1 failed that on one CPU)
    torch.testing.assert_close(codes[0], codes[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(codes[1], codes[2], rtol=1e-4, atol=1e-5)


def test_every_tool_on_the_real_sample(celeba_sample: Path, tmp_path: Path, capsys) -> None:
    """The same commands on real CelebA faces: a small model, the official split, images of the real layout."""
    run = tmp_path / "real"
    celebae.train(
        celebae.Settings(
            data=str(celeba_sample),
            nf=8,
            batch_size=32,
            epochs=1,
            limit_train=256,
            limit_val=64,
            limit_test=40,
            out=str(run),
        ),
        progress=False,
    )
    assert main(["evaluate", str(run), "--baselines", "pca,jpeg"]) == 0
    methods = {f"{m['method']}, {m['config']}": m for m in json.loads((run / "eval-test.json").read_text())["methods"]}
    assert methods["JPEG, ≤ 1024 bytes"]["max_bytes"] <= 1024
    source = open_source(celeba_sample)
    test = np.asarray(prepare_split(source, "test", limit=40, cache_dir=tmp_path / "c", progress=False).images)
    train = prepare_split(source, "train", limit=256, cache_dir=tmp_path / "c", progress=False).images
    shuffled = np.stack([np.random.default_rng(i).permutation(t.ravel()) for i, t in enumerate(test)])
    pca_mse = methods["PCA (float32), 256 components"]["mse"]
    control = pca_baseline(train, shuffled.reshape(test.shape), 256) - torch.from_numpy(shuffled).reshape(
        test.shape
    ).float().div(127.5).sub(1)
    assert pca_mse < 0.5 * float(control.pow(2).mean())  # held-out faces, not just any pixels
    faces = source.root
    assert main(["encode", str(run), "--split", "test", "--limit", "30", "--out", str(tmp_path / "c.npy")]) == 0
    assert np.load(tmp_path / "c.npy").shape == (30, 256)
    assert (
        main(["anomalies", str(run), "--split", "test", "--limit", "30", "--top", "4", "--out", str(tmp_path / "odd")])
        == 0
    )
    with open(tmp_path / "odd" / "ranking.csv") as f:
        mse = [float(r["mse"]) for r in csv.DictReader(f)]
    assert len(mse) == 30 and mse == sorted(mse, reverse=True)
    a, b = (faces / name for name in source.splits["test"][:2])
    assert main(["interpolate", str(run), str(a), str(b), "--steps", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (
        main(
            [
                "neighbours",
                str(run),
                str(a),
                "--split",
                "test",
                "--limit",
                "30",
                "--k",
                "2",
                "--out",
                str(tmp_path / "n.png"),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines()[-3].endswith(a.name)  # the query is in the test split
    assert main(["map", str(run), "--limit", "30", "--out", str(tmp_path / "m.png")]) == 0
    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "ts")]) == 0
    code = torch.jit.load(str(tmp_path / "ts" / "encoder.pt"))(celebae.load(run).images(a).cpu())
    torch.testing.assert_close(code, celebae.load(run).encode(a).cpu(), atol=1e-4, rtol=1e-4)
