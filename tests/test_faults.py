"""Faults, each reproduced as a user met it: full and read-only disks, symlink loops, dangling links, odd
inputs to the Python API, corrupted checkpoints, bad counts, and the one-line errors they must give."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import flags, tiny
from PIL import Image

import celebae
from celebae import CelebaeError, train
from celebae.cli import main
from celebae.data import draw_face, open_source, prepare_split
from celebae.data.sources import _split_of

TINY = [*flags(data="synthetic", synthetic_size=200, nf=8, batch_size=16, epochs=1, limit_train=32), "--quiet"]
TINY += flags(limit_val=16, limit_test=16)


def one_line_error(capsys, *parts: str) -> str:
    """The command's error: its last line of stderr, the only one that says ``error``, with no traceback."""
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("celebae: error: "), lines
    assert sum("error" in line for line in lines) == 1 and not any("Traceback" in line for line in lines), lines
    for part in parts:
        assert part in lines[-1], lines[-1]
    return lines[-1]


@contextlib.contextmanager
def small_disk(path: Path, size: str, readonly: bool = False) -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``path`` (the machine's root can mount one); skipped where it cannot."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if readonly else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here ({done.stderr.decode().strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name]


def faces(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(draw_face(i).transpose(1, 2, 0)).save(folder / name)


# ---- 1. a full cache disk ---------------------------------------------------------------------------------------


def test_a_full_cache_disk_fails_at_once_with_the_space_needed(tmp_path: Path, capsys) -> None:
    with small_disk(tmp_path / "tiny", "3m") as cache:
        assert main(["prepare", *flags(data="synthetic", synthetic_size=200, cache_dir=cache), "--quiet"]) == 2
        one_line_error(capsys, f"the cache {cache} has", "MiB free, but the train split (160 images", "--cache-dir")
        assert leftovers(cache) == [] and list(cache.iterdir()) == []


def _dies_on_the_second_chunk(task: tuple) -> list:
    if task[1] > 0:
        import faulthandler

        faulthandler.disable()  # pytest's handler would print this worker's stack into the test log
        os.kill(os.getpid(), signal.SIGBUS)  # what writing into a memory map on a full disk does
    from celebae.data.prepare import _decode_chunk_real

    return _decode_chunk_real(task)


def test_a_worker_killed_by_a_signal_fails_preparation(tmp_path: Path, monkeypatch) -> None:
    import celebae.data.prepare as prep

    monkeypatch.setattr(prep, "_decode_chunk_real", prep._decode_chunk, raising=False)
    monkeypatch.setattr(prep, "_decode_chunk", _dies_on_the_second_chunk)
    source = open_source("synthetic", synthetic_size=400)
    with pytest.raises(CelebaeError, match="a worker preparing the train split died"):
        prepare_split(source, "train", cache_dir=tmp_path, workers=2, progress=False)
    assert leftovers(tmp_path) == [] and list(tmp_path.glob("*.npy")) == []


# ---- 2 and 3. links in image folders ----------------------------------------------------------------------------


def test_symlink_loops_are_listed_once_and_finish(tmp_path: Path) -> None:
    one = tmp_path / "one"
    faces(one, [f"f{i:02d}.png" for i in range(60)])
    (one / "self").symlink_to(one)
    assert sum(len(v) for v in open_source(one).splits.values()) == 60
    two = tmp_path / "two" / "loop"
    faces(two / "a", ["x.png", "y.png"])
    (two / "x").symlink_to(two)
    (two / "a" / "up").symlink_to("..")
    source = open_source(tmp_path / "two")
    assert sorted(sum(source.splits.values(), [])) == ["loop/a/x.png", "loop/a/y.png"]


def test_links_out_of_the_folder_are_followed_only_when_asked(tmp_path: Path) -> None:
    faces(tmp_path / "inside", ["a.png"])
    faces(tmp_path / "outside", ["b.png"])
    (tmp_path / "inside" / "more").symlink_to(tmp_path / "outside")
    assert sum(open_source(tmp_path / "inside").splits.values(), []) == ["a.png"]
    followed = open_source(tmp_path / "inside", follow_links=True)
    assert sorted(sum(followed.splits.values(), [])) == ["a.png", "more/b.png"]


def test_a_dangling_image_link_is_skipped_like_a_corrupt_file(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "imgs"
    faces(folder, [f"f{i:02d}.png" for i in range(40)])
    (folder / "gone.jpg").symlink_to(folder / "deleted.jpg")  # its target was deleted
    (folder / "away.jpg").symlink_to(tmp_path / "elsewhere" / "x.jpg")  # out of the folder, and gone
    with caplog.at_level("WARNING", logger="celebae"):
        source = open_source(folder)
    listed = sum(source.splits.values(), [])
    assert len(listed) == 40 and "gone.jpg" not in listed and "away.jpg" not in listed
    for name in ("gone.jpg", "away.jpg"):
        assert f"skipped image {folder / name}: a dangling link" in caplog.text
    split = _split_of("f00.png", 0)
    prepared = prepare_split(source, split, cache_dir=tmp_path / "c", progress=False)
    assert prepared.files == source.splits[split]


def test_a_dangling_link_in_a_celeba_folder_is_named(tmp_path: Path, celeba_sample: Path, caplog) -> None:
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    names = sorted(os.listdir(celeba_sample / "img_align_celeba"))[:30]
    for name in names[:-1]:
        (root / "img_align_celeba" / name).symlink_to(celeba_sample / "img_align_celeba" / name)
    (root / "img_align_celeba" / names[-1]).symlink_to(tmp_path / "deleted.jpg")
    shutil.copy(celeba_sample / "list_eval_partition.txt", root)
    with caplog.at_level("WARNING", logger="celebae"):
        source = open_source(root)
    assert sum(map(len, source.splits.values())) == 29
    assert f"skipped image {root / 'img_align_celeba' / names[-1]}: a dangling link" in caplog.text


# ---- 4. the Python API's inputs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("faults") / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    return run


def test_every_input_kind_gives_the_files_codes(trained: Path, tmp_path: Path) -> None:
    run = celebae.load(trained)
    pixels = np.asarray(Image.fromarray(draw_face(3).transpose(1, 2, 0)).resize((178, 218)))  # a CelebA shape
    path = tmp_path / "face.png"
    Image.fromarray(pixels).save(path)
    want = run.encode(path)
    chw = torch.from_numpy(pixels).permute(2, 0, 1)
    kinds = {
        "PIL": Image.open(path),
        "uint8 H×W×3 array": pixels,
        "uint8 3×H×W tensor": chw,
        "float [0, 1] 1×3×H×W tensor": chw[None].float() / 255,
        "float [0, 1] 3×H×W tensor in a list": [chw.float() / 255],
        "float64 H×W×3 array": pixels / 255.0,
    }
    for kind, value in kinds.items():
        got = run.encode(value)
        assert got.shape == (1, 256), kind
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5, msg=kind)
    big = torch.from_numpy(np.asarray(Image.fromarray(pixels).resize((256, 256)))).permute(2, 0, 1)[None]
    assert run.encode(big).shape == (1, 256)
    torch.testing.assert_close(run.reconstruct(path)[0], run.reconstruct(pixels)[0])


@pytest.mark.parametrize(
    "value,message",
    [
        (Image.new("RGB", (20, 20)), "too small (20×20 px"),
        (torch.rand(1, 3, 128, 128) * 2 - 1, "float images must hold values in [0, 1]"),
        (np.zeros((128, 128, 3), dtype=np.int64), "must be uint8 (0–255) or float ([0, 1]), got int64"),
        (torch.zeros(2, 1, 3, 128, 128), "must have 2, 3 or 4 dimensions"),
        ([np.zeros((2, 3, 64, 64), np.uint8)], "a list holds single images"),
    ],
)
def test_inputs_that_cannot_be_read_are_one_line_errors(trained: Path, value, message: str) -> None:
    with pytest.raises(CelebaeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        celebae.load(trained).encode(value)


def test_encode_tensor_refuses_another_size(trained: Path) -> None:
    with pytest.raises(CelebaeError, match=r"encode_tensor takes N×3×128×128 images"):
        celebae.load(trained).encode_tensor(torch.zeros(1, 3, 256, 256))


# ---- 5. corrupted checkpoints and NaN scores ----------------------------------------------------------------------


def test_corrupted_checkpoint_bytes_are_refused(trained: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    best = run / "checkpoints" / "best.safetensors"
    blob = bytearray(best.read_bytes())
    middle = 8 + struct.unpack("<Q", blob[:8])[0] + 10_000  # well inside the tensor data; the header intact
    blob[middle : middle + 2000] = os.urandom(2000)
    best.write_bytes(bytes(blob))
    assert main(["evaluate", str(run)]) == 2
    one_line_error(capsys, f"checkpoint {best} is corrupt", "--checkpoint best/last")
    assert main(["evaluate", str(run), "--checkpoint", "last"]) == 0  # the other one is whole


def test_a_nan_anywhere_in_scoring_is_an_error(trained: Path, tmp_path: Path, capsys) -> None:
    from celebae.training.checkpoint import read_metadata, save_weights

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    best = run / "checkpoints" / "best.safetensors"
    trained_run = celebae.load(run)
    with torch.no_grad():
        next(trained_run.model.decoder.parameters())[0, 0, 0, 0] = float("nan")
    save_weights(trained_run.model, best, *read_metadata(best).values())  # a valid file of a broken model
    assert main(["evaluate", str(run)]) == 2
    one_line_error(capsys, "non-finite value(s)")


# ---- 6. counts at the parser ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["neighbours", "RUN", "q.png", "--out", "g.png", "--k", "-3"],
        ["neighbours", "RUN", "q.png", "--out", "g.png", "--k", "0"],
        ["interpolate", "RUN", "a.png", "b.png", "--steps", "1"],
        ["anomalies", "RUN", "--out", "o", "--top", "0"],
        ["encode", "RUN", "--out", "c.npy", "--limit", "0"],
        ["sweep", "s.toml", "--parallel", "0"],
        ["plot", "RUN", "--out", "p.png", "--smooth", "0"],
    ],
)
def test_count_flags_are_checked_at_the_parser(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: celebae {argv[0]}" in err and "must be at least" in err


# ---- 7 and 8. one line instead of a traceback ----------------------------------------------------------------------


def test_a_read_only_cache_is_one_line(tmp_path: Path, capsys) -> None:
    with small_disk(tmp_path / "ro", "1m", readonly=True) as cache:
        assert main(["prepare", *flags(data="synthetic", synthetic_size=200, cache_dir=cache), "--quiet"]) == 2
        one_line_error(capsys, f"cannot write the prepared train split at {cache}", "Read-only file system")


def test_out_is_checked_before_any_work(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(["train", *TINY, "--cache-dir", str(cache), "--out", str(afile)]) == 2
    one_line_error(capsys, f"--out {afile} is a file")
    assert afile.read_text() == "mine" and not cache.exists()  # nothing was prepared
    with small_disk(tmp_path / "ro", "1m", readonly=True) as ro:
        assert main(["train", *TINY, "--cache-dir", str(cache), "--out", str(ro / "run")]) == 2
        one_line_error(capsys, f"cannot write the run directory {ro / 'run'}", "Read-only file system")
    assert not cache.exists()


def test_a_disk_that_fills_during_a_checkpoint_loses_nothing(tmp_path: Path, capsys) -> None:
    with small_disk(tmp_path / "small", "2m") as disk:
        run = disk / "run"
        assert main(["train", *TINY, "--out", str(run)]) == 2
        err = one_line_error(capsys, "could not write", "No space left on device", "previous checkpoint")
        assert "run the same command again with --auto-resume" in err
        assert leftovers(disk) == []
        # the advice works: with room (the same disk, grown), the same command with --auto-resume finishes the run
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        assert main(["train", *TINY, "--out", str(run), "--auto-resume"]) == 0
        assert celebae.RunDir(run).state == "finished"


def test_a_failed_checkpoint_write_keeps_the_last_and_resumes(tmp_path: Path, monkeypatch, capsys) -> None:
    import celebae.training.checkpoint as ckpt

    settings = tiny(tmp_path, epochs=1)
    train(settings, progress=False)
    before = (tmp_path / "run" / "checkpoints" / "last.safetensors").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    with pytest.raises(
        CelebaeError,
        match="previous checkpoint there is intact; once there is room, run the same command again with --auto-resume",
    ):
        train(settings.replace(epochs=2), start="resume", progress=False)
    monkeypatch.undo()
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").read_bytes() == before
    assert leftovers(tmp_path / "run") == []
    train(settings.replace(epochs=2), start="resume", progress=False)
    assert celebae.RunDir(tmp_path / "run").summary["steps"] == 2 * 64 // 16


def test_a_partition_file_that_is_not_utf8(tmp_path: Path, capsys) -> None:
    root = tmp_path / "celeba"
    faces(root / "img_align_celeba", ["000001.jpg"])
    (root / "list_eval_partition.txt").write_bytes(b"000001.jpg 0\n\xff\xfe.jpg 1\n")
    assert main(["prepare", "--data", str(root), "--quiet"]) == 2
    one_line_error(capsys, "list_eval_partition.txt line 2 is not UTF-8 text (byte 0xff)")


def test_a_negative_slope_trains(tmp_path: Path) -> None:
    assert main(["train", *TINY, "--slope", "-5", "--out", str(tmp_path / "run")]) == 0


def _folder_with_test_images(folder: Path, count: int) -> Path:
    """A folder whose hash split puts exactly ``count`` images in test (and 3 in train)."""
    names = [f"f{i:03d}.png" for i in range(300)]
    test = [n for n in names if _split_of(n, 0) == "test"][:count]
    faces(folder, test + [n for n in names if _split_of(n, 0) == "train"][:3])
    return folder


def test_tools_on_too_few_images_are_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    empty = _folder_with_test_images(tmp_path / "none", 0)
    query = next(empty.iterdir())
    assert main(["neighbours", str(trained), str(query), "--out", str(tmp_path / "g.png"), "--data", str(empty)]) == 2
    one_line_error(capsys, "the test split of", "has no images; choose another --split or --data")
    single = _folder_with_test_images(tmp_path / "one", 1)
    assert main(["map", str(trained), "--out", str(tmp_path / "m.png"), "--data", str(single)]) == 2
    one_line_error(capsys, "a map needs more than 10 images; the test split has 1")


def test_a_wrong_flag_shows_the_subcommands_usage(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--bacth-size", "3"])
    err = capsys.readouterr().err
    assert "usage: celebae train" in err and "unrecognized arguments: --bacth-size" in err


def test_os_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys) -> None:
    import celebae.cli as cli

    def full(args):
        raise OSError(28, "No space left on device", "/data/cache/x.npy")

    monkeypatch.setitem(cli.COMMANDS, "prepare", (full, *cli.COMMANDS["prepare"][1:]))
    assert main(["prepare"]) == 1
    one_line_error(capsys, "celebae: error: cannot write at /data/cache/x.npy: No space left on device")
    with pytest.raises(OSError):
        main(["--debug", "prepare"])
    monkeypatch.setenv("CELEBAE_DEBUG", "1")
    with pytest.raises(OSError):
        main(["prepare"])


def test_bugs_still_show_their_traceback(monkeypatch) -> None:
    import celebae.cli as cli

    def bug(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "prepare", (bug, *cli.COMMANDS["prepare"][1:]))
    with pytest.raises(ZeroDivisionError):
        main(["prepare"])


# ---- 9, 10, 11. run directories -------------------------------------------------------------------------------------


def test_a_run_is_never_overwritten_without_overwrite(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    (run / "checkpoints" / "last.safetensors").unlink()
    best = (run / "checkpoints" / "best.safetensors").read_bytes()
    metrics = (run / "metrics.csv").read_text()
    assert main(["train", *TINY, "--out", str(run), "--resume"]) == 2
    one_line_error(capsys, "nothing to resume", "--overwrite")
    assert main(["train", *TINY, "--out", str(run)]) == 2
    one_line_error(capsys, f"{run} already holds a run", "--overwrite")
    assert (run / "checkpoints" / "best.safetensors").read_bytes() == best
    assert (run / "metrics.csv").read_text() == metrics
    assert main(["train", *TINY, "--out", str(run), "--overwrite", "--seed", "1"]) == 0
    assert (run / "checkpoints" / "best.safetensors").read_bytes() != best


def _event_steps(tb: Path) -> list[int]:
    """Steps of ``train/loss_step`` in every event file of a TensorBoard folder (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    steps = []
    for path in sorted(tb.iterdir()):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 16 + length
            steps += [event.step for v in event.summary.value if v.tag == "train/loss_step"]
    return steps


def test_a_killed_and_resumed_run_has_one_event_stream(tmp_path: Path, monkeypatch) -> None:
    import celebae.training.checkpoint as ckpt

    settings = tiny(tmp_path, epochs=1, log_every=1)
    train(settings, progress=False)

    def killed(*args, **kwargs):  # dies after epoch 2's events were written, before its checkpoint
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_state", killed)
    with pytest.raises(KeyboardInterrupt):
        train(settings.replace(epochs=2), start="resume", progress=False)
    monkeypatch.undo()
    assert _event_steps(tmp_path / "run" / "tb").count(5) == 1  # the killed attempt logged steps 5-8
    train(settings.replace(epochs=3), start="resume", progress=False)
    tb = tmp_path / "run" / "tb"
    assert len(list(tb.iterdir())) == 1
    assert _event_steps(tb) == list(range(1, 13))


def test_load_on_a_file_says_so(tmp_path: Path) -> None:
    afile = tmp_path / "summary.json"
    afile.write_text("{}")
    with pytest.raises(CelebaeError, match="is a file, not a run directory"):
        celebae.load(afile)


# ---- the sharp edges of issue 23: each reproduced as it was found --------------------------------------------

KILLER = """
import json, os, sys
import celebae.training.checkpoint as ckpt
from celebae.training import rundir
from celebae import Settings, train

kill_at, events = int(sys.argv[1]), []

def counted(name, fn):
    def wrapper(*args, **kwargs):
        out = fn(*args, **kwargs)
        label = (name + ":" + args[1][0]["kind"]) if name == "rows" else name + ":" + os.path.basename(str(args[1]))
        events.append(label)
        if len(events) == kill_at:
            os._exit(9)  # SIGKILL's effect: nothing after this line runs, nothing is flushed or saved
        return out
    return wrapper

ckpt.save_state = counted("state", ckpt.save_state)
ckpt.save_weights = counted("weights", ckpt.save_weights)
rundir.MetricsLog.add = counted("rows", rundir.MetricsLog.add)
train(Settings(**json.loads(sys.argv[2])), start="auto", progress=False)
print(json.dumps(events))
"""
STEADY = ("kind", "epoch", "step", "images", "train_loss", "val_loss", "train_mse", "val_mse", "lr")


def _killed_at(settings: celebae.Settings, kill_at: int) -> subprocess.CompletedProcess:
    values = {k: v for k, v in settings.to_dict().items()}
    return subprocess.run(
        [sys.executable, "-c", KILLER, str(kill_at), json.dumps(values)], capture_output=True, text=True, timeout=300
    )


def _steady_rows(run: Path) -> list[tuple]:
    return [tuple(r[k] for k in STEADY) for r in celebae.read_metrics(run)]


def test_every_kill_window_at_an_epoch_end_resumes_to_the_same_record(tmp_path: Path) -> None:
    """A checkpoint after every step puts one at each epoch's last step, then the epoch's row, then the epoch's
    own checkpoint (state, best, last): killed after any of these and resumed, the run's rows, per-image
    validation errors and weights are those of a run never killed (a doubled epoch row was the bug)."""
    reference = tiny(tmp_path, out=str(tmp_path / "reference"), limit_train=32, epochs=2, log_every=1)
    reference = reference.replace(checkpoint_minutes=0)
    listed = _killed_at(reference, 0)
    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout.splitlines()[-1])
    first_epoch_row = events.index("rows:epoch")
    # (a kill between a save's state and its weights, and after a whole save, are tested in test_train.py)
    windows = range(first_epoch_row - 1, events.index("weights:last.safetensors", first_epoch_row))
    assert [events[i] for i in windows] == [
        "weights:last.safetensors",  # the mid-epoch save at the epoch's last step ...
        "rows:epoch",  # ... the epoch's row ...
        "state:last.state.safetensors",  # ... and the epoch's own checkpoint
        "weights:best.safetensors",
    ]
    expected = _steady_rows(tmp_path / "reference")
    assert sum(r[0] == "epoch" for r in expected) == 2
    for i in windows:
        run = tmp_path / f"killed-{i}"
        settings = reference.replace(out=str(run))
        assert _killed_at(settings, i + 1).returncode == 9  # killed right after event i
        train(settings, start="auto", progress=False)  # what a requeued job does
        assert _steady_rows(run) == expected, f"killed after {events[i]} (event {i})"
        assert np.array_equal(np.load(run / "val_errors.npy"), np.load(tmp_path / "reference" / "val_errors.npy"))
        for which in ("best", "last"):
            a = celebae.load(run, which, device="cpu").model.state_dict()
            b = celebae.load(tmp_path / "reference", which, device="cpu").model.state_dict()
            assert all(torch.equal(a[k], b[k]) for k in a), (which, events[i])


def test_report_counts_flops_at_the_models_own_size(tmp_path: Path, capsys) -> None:
    for size in (64, 256):
        study = tmp_path / f"s{size}.toml"
        study.write_text(
            f'name = "s{size}"\n[settings]\nimage_size = {size}\nnf = 4\nepochs = 1\n[grid]\nbatch_size = [16, 32]\n'
        )
        out = tmp_path / f"sweep{size}"
        args = ["sweep", str(study), "--out", str(out), *flags(data="synthetic", synthetic_size=80, limit_train=64)]
        assert main([*args, *flags(limit_val=16, limit_test=16)]) == 0
        assert main(["report", str(out)]) == 0, capsys.readouterr().err
        text = (out / "report.md").read_text()
        assert "equal training compute" in text
    from celebae.models import build_model
    from celebae.training.flops import training_flops_per_image

    small, big = (training_flops_per_image(build_model("conv", nf=4, image_size=s)) for s in (64, 256))
    assert big > 10 * small  # 16× the pixels (and one more stage)


def _model_folder(trained: Path, folder: Path) -> Path:
    """A model folder as ``export --format hub`` lays it out (config.json, model.safetensors), without the card."""
    from celebae.use import hub

    run = celebae.load(trained, device="cpu")
    folder.mkdir(parents=True)
    shutil.copyfile(trained / "checkpoints" / "best.safetensors", folder / hub.WEIGHTS)
    config = hub.model_config(run.settings.portable(), run.model.code_size, run.model.image_shape)
    (folder / hub.CONFIG).write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_fifo_where_a_file_belongs_is_refused_by_name(trained: Path, tmp_path: Path, name: str, capsys) -> None:
    folder = _model_folder(trained, tmp_path / "model")
    (folder / name).unlink()
    os.mkfifo(folder / name)
    done = subprocess.run(  # in a process of its own, so a hang would be a timeout, not a stuck suite
        [sys.executable, "-m", "celebae", "evaluate", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{folder / name} is a FIFO" in done.stderr.splitlines()[-1]


def test_a_fifo_image_and_run_files_are_refused(trained: Path, tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "face.png"
    os.mkfifo(fifo)
    assert main(["reconstruct", str(trained), str(fifo), "--out", str(tmp_path / "g.png")]) == 2
    one_line_error(capsys, f"image {fifo} is not a regular file")
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "summary.json").unlink()
    os.mkfifo(run / "summary.json")
    with pytest.raises(CelebaeError, match="run summary .* is a FIFO"):
        celebae.RunDir(run).summary  # noqa: B018
    (run / "summary.json").unlink()  # an unfinished run whose metrics log is a FIFO: resuming names it
    (run / "metrics.csv").unlink()
    os.mkfifo(run / "metrics.csv")
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "--quiet"]) == 2
    one_line_error(capsys, f"metrics file {run / 'metrics.csv'} is a FIFO")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["interpolate", "RUN", "A", "A", "--steps", "1000000"], "argument --steps: must be at most 64"),
        (["neighbours", "RUN", "A", "--out", "n.png", "--k", "100000"], "argument --k: must be at most 64"),
        (["anomalies", "RUN", "--out", "a", "--top", "5000"], "argument --top: must be at most 64"),
        (["explore", "RUN", "--port", "99999"], "argument --port: must be at most 65535"),
        (["explore", "RUN", "--limit", "10000000"], "argument --limit: must be at most 200000"),
        (["train", "--seed", "1180591620717411303424"], "seed must be 0 to 2**63 - 1"),
        (["train", "--checkpoint-minutes", "-1"], "checkpoint_minutes must be 0 or more"),
        (["train", "--checkpoint-minutes", "nan"], "checkpoint_minutes must be 0 or more"),
        (["train", "--lr", "inf"], "lr must be a finite number"),
        (["train", "--out", ""], "out must name a folder"),
        (["train", "--grid-images", "1000"], "grid_images must be 1 to 64"),
        (["train", "--synthetic-size", "1000000000000"], "synthetic_size must be at most 1,000,000"),
        (["train", "--loss", "l3"], "argument --loss: invalid choice: 'l3'"),
        (["train", "--precision", "fp8"], "argument --precision: invalid choice"),
        (["sweep", "exp1", "--seeds", "100000", "--dry-run"], "--seeds must name at most 1000 seeds"),
    ],
)
def test_every_count_and_number_is_bounded_at_the_parser(argv: list[str], message: str, capsys) -> None:
    with contextlib.suppress(SystemExit):  # argparse exits 2 with its own usage line
        assert main([a for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_python_api_counts_are_bounded(trained: Path, tmp_path: Path) -> None:
    from celebae.use.latent import interpolate, neighbours, split_images

    run = celebae.load(trained, device="cpu")
    face = draw_face(0)
    with pytest.raises(CelebaeError, match="steps must be 2 to 64"):
        interpolate(run, face, face, tmp_path / "i.png", steps=1_000_000)
    with pytest.raises(CelebaeError, match="k must be 1 to 64"):
        neighbours(run, split_images(run, limit=8), face, tmp_path / "n.png", k=10**9)


@pytest.mark.parametrize(
    "argv,setting",
    [
        (["--nf", "100000"], "nf 100000"),
        (["--code-size", "1000000000"], "code_size 1000000000"),
    ],
)
def test_absurd_model_sizes_are_refused_before_any_allocation(
    argv: list[str], setting: str, tmp_path: Path, capsys
) -> None:
    assert main(["train", *TINY, "--out", str(tmp_path / "run"), *argv]) == 2
    one_line_error(capsys, "model conv with", setting, "GiB", "choose a smaller nf or code_size")
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_a_model_folder_saying_nf_700_is_refused_without_allocating(trained: Path, tmp_path: Path, capsys) -> None:
    import resource

    folder = _model_folder(trained, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["settings"]["nf"] = config["model_args"]["nf"] = 100_000
    (folder / "config.json").write_text(json.dumps(config))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CelebaeError, match="model conv with nf 100000 needs"):
        celebae.load(folder)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing near the model
    config["settings"]["nf"] = config["model_args"]["nf"] = 8.5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CelebaeError, match="nf must be a whole number, got 8.5"):
        celebae.load(folder)


def _sparse_weights(path: Path, declared: int, name: str = "encoder.0.0.weight") -> None:
    """A valid safetensors header (with the file's celebae metadata) declaring ``declared`` bytes of one tensor,
    the data a sparse tail."""
    meta = celebae.training.checkpoint.read_header(path).meta
    tensor = {"dtype": "U8", "shape": [declared], "data_offsets": [0, declared]}
    header = json.dumps({"__metadata__": meta, name: tensor}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + declared)


def test_a_huge_weights_file_is_refused_from_its_header(trained: Path, tmp_path: Path) -> None:
    import resource

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    best = run / "checkpoints" / "best.safetensors"
    _sparse_weights(best, 3 << 30)
    folder = _model_folder(trained, tmp_path / "model")
    _sparse_weights(folder / "model.safetensors", 3 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for where in (run, folder):
        with pytest.raises(CelebaeError, match="does not fit this model .*encoder.0.0.weight"):
            celebae.load(where)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: the 3 GB were never read
    with open(best, "r+b") as f:  # a header that declares more data than the file holds
        f.truncate(celebae.training.checkpoint.read_header(best).data_start + 100)
    with pytest.raises(CelebaeError, match="is unreadable .*declares"):
        celebae.load(run)


def test_weights_without_their_checksum_are_refused(trained: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    best = run / "checkpoints" / "best.safetensors"
    meta = celebae.training.checkpoint.read_header(best).meta
    save_file(load_file(best), best, metadata={k: v for k, v in meta.items() if k != "sha256"})
    with pytest.raises(CelebaeError, match="carries no checksum"):
        celebae.load(run)


@pytest.mark.parametrize(
    "text,message",
    [
        ("[" * 200_000, "model config .* is not valid JSON \\(nested too deeply\\)"),
        ('{"library_name": "celebae", "settings": null}', "not a celebae model's config"),
        ("[1, 2]", "model config .* holds a JSON list, not a dict"),
        ("\xff\xfe\x00", "model config .* is not valid JSON"),
    ],
)
def test_malformed_json_of_any_shape_is_one_line(trained: Path, tmp_path: Path, text: str, message: str) -> None:
    folder = _model_folder(trained, tmp_path / "model")
    (folder / "config.json").write_text(text, encoding="latin-1")
    with pytest.raises(CelebaeError, match=message):
        celebae.load(folder)
    if not text.startswith("{"):
        run = tmp_path / "run"
        shutil.copytree(trained, run)
        (run / "summary.json").write_text(text, encoding="latin-1")
        with pytest.raises(CelebaeError, match="run summary"):
            celebae.RunDir(run).summary  # noqa: B018


def test_tracebacks_that_were_reachable_are_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    face = tmp_path / "face.png"
    Image.fromarray(draw_face(0).transpose(1, 2, 0)).save(face)
    assert main(["reconstruct", str(trained), str(face), "--out", str(tmp_path / "grid")]) == 2
    one_line_error(capsys, "cannot write a picture to", "end its name in .png")
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("celebae ")
    with pytest.raises(CelebaeError, match="cannot write a picture"):  # --debug after the subcommand: the traceback
        main(["reconstruct", str(trained), str(face), "--out", str(tmp_path / "grid"), "--debug"])


def test_the_help_lists_every_choice() -> None:
    from celebae.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()  # noqa: SLF001
    for choices in ("{mse,l1,ssim}", "{auto,fp32,bf16}", "{constant,cosine,step,plateau}", "{none,flip,flip-shift}"):
        assert choices in text, choices
    assert "{resize-crop,crop-resize}" in text and "{" + ",".join(celebae.MODELS) + "}" in text


def _events(tb: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard folder's event files: tag → (step, value) in order."""
    from tensorboardX.proto import event_pb2

    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(tb.iterdir()):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 16 + length
            for v in event.summary.value:
                found.setdefault(v.tag, []).append((event.step, v.simple_value))
    return found


def test_tensorboard_has_every_scalar_on_the_step_axis(tmp_path: Path) -> None:
    train(tiny(tmp_path, log_every=1), progress=False)  # 2 epochs of 4 steps
    events = _events(tmp_path / "run" / "tb")
    assert [s for s, _ in events["train/loss_step"]] == list(range(1, 9))
    assert [s for s, _ in events["epoch/val_loss"]] == [4, 8]  # the step that ended each epoch
    assert events["epoch/epoch"] == [(4, 1.0), (8, 2.0)]


def test_a_run_with_relative_paths_resumes_and_scores_from_anywhere(tmp_path: Path, monkeypatch, capsys) -> None:
    faces(tmp_path / "work" / "faces", [f"{i:03d}.png" for i in range(150)])
    monkeypatch.chdir(tmp_path / "work")
    args = ["train", *flags(data="faces", nf=4, batch_size=16, epochs=1, limit_train=32, limit_test=8), "--quiet"]
    args += ["--out", "run"]
    assert main(args) == 0
    config = json.loads((tmp_path / "work" / "run" / "config.json").read_text())
    assert config["data"] == str(tmp_path / "work" / "faces") and config["out"] == str(tmp_path / "work" / "run")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    run = str(tmp_path / "work" / "run")
    assert main(["train", "--resume", "--out", run, "--epochs", "2", "--quiet"]) == 0, capsys.readouterr().err
    assert main(["evaluate", run]) == 0
    monkeypatch.chdir(tmp_path / "work")  # the data named either way is the same setting
    absolute = str(tmp_path / "work" / "faces")
    assert main(["train", "--resume", "--out", "run", "--epochs", "3", "--data", absolute, "--quiet"]) == 0
    assert main(["train", "--resume", "--out", "run", "--epochs", "4", "--data", "faces", "--quiet"]) == 0


def test_prepare_takes_every_setting_that_shapes_a_cache(tmp_path: Path, capsys) -> None:
    values = flags(data="synthetic", synthetic_size=40, image_size=64, cache_dir=tmp_path)
    assert main(["prepare", *values, "--quiet"]) == 0
    shapes = {np.load(p, mmap_mode="r").shape[1:] for p in tmp_path.rglob("*.npy")}
    assert shapes == {(3, 64, 64)}


def test_onnx_export_prints_only_its_files(trained: Path, tmp_path: Path, capfd) -> None:
    pytest.importorskip("onnxscript", reason="needs celebae[onnx]")
    assert main(["export", str(trained), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    out, err = capfd.readouterr()
    assert out.splitlines() == [str(tmp_path / "onnx" / n) for n in ("encoder.onnx", "decoder.onnx", "export.json")]
    assert err.strip() == "", err


def test_messages_name_the_setting(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text('model = "nosuch"\n')
    assert main(["train", "--config", str(config)]) == 2
    one_line_error(capsys, "unknown model 'nosuch' (--model, or model in a config)")
    config.write_text("nf = 8.5\n")
    assert main(["train", "--config", str(config)]) == 2
    one_line_error(capsys, "nf must be a whole number, got 8.5")
