"""A trained run shared the ecosystem's way: a Hub-layout model folder with a card, loaded back bit for bit,
taken by every tool, fetched and pushed through huggingface_hub (everything up to the network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny

import celebae
from celebae import CelebaeError
from celebae.cli import main

hub = pytest.importorskip("huggingface_hub", reason="needs celebae[hub]")
FACES = [celebae.data.draw_face(i, 0) for i in range(3)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("share")
    celebae.train(tiny(tmp, out=str(tmp / "run"), limit_test=16), progress=False)
    return tmp / "run"


@pytest.fixture(scope="module")
def folder(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hub") / "model"
    assert main(["export", str(run), "--format", "hub", "--out", str(out), "--with-onnx"]) == 0
    return out


def test_the_folder_has_the_hub_layout_and_a_card(folder: Path, run: Path) -> None:
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "encoder.onnx", "decoder.onnx"} <= names
    assert {"reconstructions.png", "loss.png", "summary.json", "metrics.csv", "eval-test.json"} <= names
    from safetensors.torch import load_file

    ours, theirs = load_file(folder / "model.safetensors"), load_file(run / "checkpoints" / "best.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    config = json.loads((folder / "config.json").read_text())
    assert config["library_name"] == "celebae" and config["model"] == "conv" and config["model_args"]["nf"] == 8
    assert config["image_size"] == 128 and config["code_size"] == 256 and config["preprocessing"]["crop"]
    card = hub.ModelCard.load(folder / "README.md")
    assert card.data.library_name == "celebae" and "autoencoder" in card.data.tags
    evaluation = json.loads((folder / "eval-test.json").read_text())
    index = card.data.to_dict()["model-index"][0]["results"][0]
    assert {m["type"]: m["value"] for m in index["metrics"]} == {
        k: pytest.approx(evaluation[k], abs=1e-6) for k in ("mse", "psnr", "ssim")
    }
    for section in (
        "## How to use",
        "## Training data and recipe",
        "## Evaluation",
        "## Limitations",
        "| PCA (float32), 64 components |",  # the 64 training images allow no more
    ):
        assert section in card.text, section
    assert "onnxruntime.InferenceSession" in card.text and "![reconstructions](reconstructions.png)" in card.text


def test_the_folder_loads_and_reconstructs_bit_identically(folder: Path, run: Path) -> None:
    a, b = celebae.load(run), celebae.load(folder)
    assert a.settings.portable() == b.settings  # the same settings, without this machine's paths
    (xa, ya), (xb, yb) = a.reconstruct(FACES), b.reconstruct(FACES)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert b.summary == {**a.summary, "data": "synthetic"} and len(b.metrics()) == len(a.metrics())


def test_the_onnx_files_reproduce_the_model(folder: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    trained = celebae.load(folder)
    x = trained.images(FACES)
    (code,) = ort.InferenceSession(str(folder / "encoder.onnx")).run(None, {"images": x.numpy()})
    np.testing.assert_allclose(code, trained.encode_tensor(x).numpy(), atol=1e-4)


def test_the_card_s_onnx_recipe_gives_celebae_s_codes(folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from PIL import Image

    face = tmp_path / "face.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (218, 178, 3), np.uint8)).save(face)  # CelebA's shape
    text = (folder / "README.md").read_text()
    snippet = text.split("onnxruntime alone")[1].split("```python\n")[1].split("```")[0]
    names: dict = {}
    exec(snippet.replace('"face.jpg"', repr(str(face))).replace('"encoder.onnx"', repr(str(folder / "encoder.onnx")))
         .replace('"decoder.onnx"', repr(str(folder / "decoder.onnx"))), names)  # fmt: skip
    trained = celebae.load(folder)
    np.testing.assert_array_equal(names["x"], trained.images(face).numpy())  # the same pixels, to the bit
    np.testing.assert_allclose(names["code"], trained.encode(face).numpy(), atol=1e-4)


def test_every_tool_takes_the_folder(folder: Path, tmp_path: Path) -> None:
    face = tmp_path / "face.png"
    from PIL import Image

    Image.fromarray(FACES[0].transpose(1, 2, 0)).save(face)
    for args in (
        ["encode", str(folder), "--out", str(tmp_path / "codes.npy"), "--limit", "8"],
        ["reconstruct", str(folder), str(face), "--out", str(tmp_path / "r.png")],
        ["interpolate", str(folder), str(face), str(face), "--out", str(tmp_path / "i.png")],
        ["neighbours", str(folder), str(face), "--out", str(tmp_path / "n.png"), "--limit", "8"],
        ["anomalies", str(folder), "--out", str(tmp_path / "a"), "--limit", "8"],
        ["map", str(folder), "--out", str(tmp_path / "m.png"), "--limit", "16"],
        ["evaluate", str(folder)],
        ["export", str(folder), "--format", "torchscript", "--out", str(tmp_path / "ts")],
    ):
        assert main(args) == 0, args


def test_a_broken_folder_is_one_line_naming_the_file(folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CelebaeError, match=r"config.json is not valid JSON"):
        celebae.load(broken)
    (broken / "config.json").write_text(json.dumps({"library_name": "timm"}))
    with pytest.raises(CelebaeError, match=r"config.json is not a celebae model's config"):
        celebae.load(broken)
    config = json.loads((folder / "config.json").read_text())
    config["settings"]["nf"] = 32
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CelebaeError, match="disagree with its settings"):
        celebae.load(broken)
    shutil.copy(folder / "config.json", broken / "config.json")
    (broken / "model.safetensors").unlink()
    with pytest.raises(CelebaeError, match=r"has no model.safetensors"):
        celebae.load(broken)
    with pytest.raises(CelebaeError, match="one set of weights"):
        celebae.load(folder, checkpoint="last")
    assert main(["export", str(folder), "--format", "hub", "--out", str(tmp_path / "again")]) == 2


def test_a_hub_repository_is_fetched_then_loaded(folder: Path, monkeypatch) -> None:
    asked = []

    def snapshot_download(repo_id: str, revision: str | None = None, local_files_only: bool = False) -> str:
        asked.append((repo_id, revision, local_files_only))
        if local_files_only and repo_id != "someone/cached":
            raise FileNotFoundError("not in the cache")
        return str(folder)  # what the Hub's cache would hold after the download

    monkeypatch.setattr(hub, "snapshot_download", snapshot_download)
    trained = celebae.load("hf://someone/celebae-conv")
    assert asked == [("someone/celebae-conv", None, False)]
    assert torch.equal(trained.reconstruct(FACES)[1], celebae.load(folder).reconstruct(FACES)[1])
    celebae.load("hf://someone/celebae-conv@v2")
    assert asked[-1] == ("someone/celebae-conv", "v2", False)
    celebae.load("someone/cached")  # a bare name: the cache only
    assert asked[-1] == ("someone/cached", None, True)
    # a mistyped local path is never sent to the Hub: one line that says how to name a Hub repository
    with pytest.raises(CelebaeError, match=r"runs/nonexist is not a folder here.*name it hf://runs/nonexist"):
        celebae.load("runs/nonexist")
    assert asked[-1] == ("runs/nonexist", None, True)

    def offline(repo_id: str, revision: str | None = None, local_files_only: bool = False) -> str:
        raise OSError("We couldn't connect to the Hub\nmore")

    monkeypatch.setattr(hub, "snapshot_download", offline)
    with pytest.raises(CelebaeError, match=r"^cannot fetch someone/other from the Hugging Face Hub: We couldn't"):
        celebae.load("hf://someone/other")


def test_push_uploads_the_folder(folder: Path, run: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id)))
    monkeypatch.setattr(
        hub.HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw["repo_id"], kw["folder_path"]))
    )
    out = tmp_path / "pushed"
    assert main(["export", str(run), "--format", "hub", "--out", str(out), "--push-to", "me/celebae-tiny"]) == 0
    assert calls == [("create", "me/celebae-tiny"), ("upload", "me/celebae-tiny", str(out))]


def test_the_folder_carries_no_path_of_this_machine(folder: Path, run: Path, tmp_path: Path) -> None:
    machine = str(run.parent)
    for path in folder.iterdir():
        if path.suffix in (".json", ".md", ".csv"):
            assert machine not in path.read_text(), path.name
    settings = celebae.training.checkpoint.read_metadata(folder / "model.safetensors")["settings"]
    assert settings["out"] is None and settings["cache_dir"] is None and machine not in json.dumps(settings)
    # a folder whose config names a cache: never written to
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    config = json.loads((tampered / "config.json").read_text())
    config["settings"]["cache_dir"] = str(tmp_path / "elsewhere")
    (tampered / "config.json").write_text(json.dumps(config))
    assert celebae.load(tampered).settings.cache_dir is None
    assert main(["encode", str(tampered), "--out", str(tmp_path / "codes.npy"), "--limit", "4"]) == 0
    assert not (tmp_path / "elsewhere").exists()


def test_the_model_index_says_what_was_measured(folder: Path) -> None:
    card = hub.ModelCard.load(folder / "README.md")
    dataset = card.data.to_dict()["model-index"][0]["results"][0]["dataset"]
    assert dataset["name"] == "synthetic (16 test images)" and dataset["args"]["test_images"] == 16


def test_a_missing_extra_leaves_nothing_and_the_retry_works(run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import sys

    out = tmp_path / "model"
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if celebae[hub] were not installed
    assert main(["export", str(run), "--format", "hub", "--out", str(out)]) == 2
    assert "pip install 'celebae[hub]'" in capsys.readouterr().err and not out.exists()
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 2
    assert "celebae[onnx]" in capsys.readouterr().err and not (tmp_path / "onnx").exists()
    monkeypatch.undo()
    assert main(["export", str(run), "--format", "hub", "--out", str(out)]) == 0  # the retry, once installed
    assert (out / "README.md").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]


def test_export_hub_from_python_scores_the_card_like_the_command(run: Path, tmp_path: Path) -> None:
    from celebae.evaluation.share import export_hub

    fresh = tmp_path / "run"
    shutil.copytree(run, fresh)
    (fresh / "eval-test.json").unlink(missing_ok=True)  # never scored: export_hub scores it, as the command does
    export_hub(fresh, tmp_path / "py")
    assert (
        "| PCA (float32), 64 components |" in (tmp_path / "py" / "README.md").read_text()
        and (fresh / "eval-test.json").exists()
    )
