"""The ``celebae`` command: every subcommand, the Python API it wraps, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import flags
from PIL import Image

import celebae
from celebae.cli import build_parser, main
from celebae.data import draw_face

COMMANDS = ["train", "evaluate", "reconstruct", "prepare", "demo"]
TINY = [
    *flags(
        data="synthetic",
        synthetic_size=200,
        nf=8,
        batch_size=16,
        epochs=1,
        limit_train=64,
        limit_val=16,
        limit_test=16,
    ),
    "--quiet",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: celebae " + command in capsys.readouterr().out


def test_parser_lists_every_command() -> None:
    text = build_parser().format_help()
    assert all(c in text for c in COMMANDS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    return run


def test_train_evaluate_reconstruct(trained: Path, tmp_path: Path, capsys) -> None:
    assert main(["evaluate", str(trained), "--split", "test"]) == 0
    out = capsys.readouterr().out
    result = json.loads((trained / "eval-test.json").read_text())
    assert f"MSE {result['mse']:.6f}" in out and result["images"] == 16
    summary = json.loads((trained / "summary.json").read_text())
    # the run's only epoch is its best: the same model scores the same test set the same
    assert result["mse"] == pytest.approx(summary["test_mse"], rel=1e-5)
    assert result["psnr"] == pytest.approx(summary["test_psnr"], rel=1e-5)

    files = []
    for i, size in enumerate([(178, 218), (300, 200)]):
        p = tmp_path / f"face{i}.png"
        Image.fromarray(draw_face(i).transpose(1, 2, 0)).resize(size).save(p)
        files.append(str(p))
    grid = tmp_path / "grid.png"
    assert main(["reconstruct", str(trained), *files, "--out", str(grid)]) == 0
    assert Image.open(grid).size == (2 * 130 + 2, 2 * 130 + 2)


def test_config_file_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'model = "pool"\nbatch_size = 16\nepochs = 1\nlimit_train = 32\nlimit_val = 16\n'
        "limit_test = 16\nsynthetic_size = 200\n"
    )
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--batch-size", "8", "--quiet", "--out", str(run)]) == 0
    stored = json.loads((run / "config.json").read_text())
    assert stored["model"] == "pool" and stored["batch_size"] == 8 and stored["nf"] is None
    assert json.loads((run / "summary.json").read_text())["params"] == 83_776


def test_python_api_load_encode_decode(trained: Path) -> None:
    run = celebae.load(trained)
    assert run.settings.nf == 8 and run.summary["params"] > 0
    face = draw_face(0)
    pil = Image.fromarray(face.transpose(1, 2, 0))
    z = run.encode([pil, face, torch.from_numpy(face)])
    assert z.shape == (3, 256)
    assert torch.allclose(z[0], z[1]) and torch.allclose(z[1], z[2])
    y = run.decode(z)
    assert y.shape == (3, 3, 128, 128) and y.min() >= -1 and y.max() <= 1
    inputs, outputs = run.reconstruct(face)
    assert inputs.dtype == torch.uint8 and np.array_equal(inputs[0].numpy(), face)
    assert len(run.metrics()) > 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--data", "/no/such/folder", "--quiet"], "data folder /no/such/folder does not exist"),
        (["train", "--batch-size", "1"], "batch_size must be at least 2"),
        (["train", "--resume"], "--resume needs --out"),
        (["train", "--config", "/no/such.toml"], "config file /no/such.toml does not exist"),
        (["evaluate", "/no/such/run"], "run directory /no/such/run does not exist"),
        (["train", "--device", "cuda", "--quiet"], "no CUDA GPU"),
    ],
)
def test_bad_input_is_one_line(argv: list[str], message: str, capsys) -> None:
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("celebae: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_reconstruct_names_a_bad_image(trained: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert main(["reconstruct", str(trained), str(bad), "--out", str(tmp_path / "g.png")]) == 2
    assert f"image {bad} is unreadable" in capsys.readouterr().err
    assert main(["reconstruct", str(trained), str(tmp_path / "gone.jpg"), "--out", str(tmp_path / "g.png")]) == 2
    assert f"image {tmp_path / 'gone.jpg'} does not exist" in capsys.readouterr().err


def test_real_sample_training_loss_falls(celeba_sample: Path, tmp_path: Path) -> None:
    run = tmp_path / "real"
    assert (
        main(
            [
                "train",
                "--data",
                str(celeba_sample),
                "--nf",
                "16",
                "--batch-size",
                "16",
                "--epochs",
                "3",
                "--limit-train",
                "256",
                "--limit-val",
                "64",
                "--limit-test",
                "32",
                "--lr",
                "2e-3",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    summary = json.loads((run / "summary.json").read_text())
    rows = celebae.read_metrics(run)
    steps = [r["train_loss"] for r in rows if r["kind"] == "step"]
    assert summary["splits"] == {"train": 256, "val": 64, "test": 32}
    assert summary["missing_images"] == 202_599 - 3000
    vals = [r["val_loss"] for r in rows if r["kind"] == "epoch"]
    assert np.mean(steps[-5:]) < 0.8 * np.mean(steps[:5])
    assert vals[-1] < vals[0]
    assert summary["test_psnr"] > 11
