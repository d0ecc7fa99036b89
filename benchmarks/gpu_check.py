"""One call on a lent GPU: the CUDA tests, the speed of celebae's path against the authors', a full-size epoch,
the three studies' time, a split larger than the GPU (it must stream), and the speed options (among them the
streaming path against the GPU-resident one, and the improved recipe), in one Markdown table.

On the device machine (torch 2.11, Python 3.12, no network), from the repository root. Its image lacks two
of celebae's pure-Python dependencies; carry them as wheels (here, once):

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: -d .whl tensorboardX==2.6.5 pytorch-msssim==1.0.0

then one `run` with carry [".whl"] and timeout_s 540:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
      && PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT/gpu.md

(the rest of what celebae needs is in the image: numpy, Pillow, safetensors, tqdm, matplotlib, protobuf,
scikit-image, onnx, onnxscript, onnxruntime, pytest). celebae itself is imported from ``src`` (no install,
no network). ``--cpu-dry-run`` runs every step at toy
size on the CPU in well under two minutes; ``tests/test_gpu_check.py`` runs it, so the script is known to
work before a GPU is lent. Budget on one H100/H200: under 8 minutes of wall time (each timing is capped).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from throughput import Timer, time_baseline, time_celebae  # noqa: E402

from celebae.data import Batches, draw_face, open_source, place, prepare_split  # noqa: E402
from celebae.quality.losses import get_loss  # noqa: E402
from celebae.studies.sweep import expand, load_study  # noqa: E402
from celebae.training.device import backends, resolve_precision, synchronize  # noqa: E402
from celebae.training.distributed import Processes  # noqa: E402
from celebae.training.flops import matmul_peak_flops, training_flops_per_image  # noqa: E402
from celebae.training.loop import build_network, train_step  # noqa: E402
from celebae.training.schedule import Schedule  # noqa: E402
from celebae.training.settings import Settings  # noqa: E402

CELEBA_TRAIN = 162_770
STUDIES = ("exp1", "exp2", "exp3")
VARIANTS = {  # speed options timed against the default, at conv nf 64, batch 64
    "default": {},
    "fp32": {"precision": "fp32"},
    "cudnn benchmark off": {"cudnn_benchmark": False},
    "loss read every step": {"log_every": 1},
    "data streamed from host memory (prefetch thread, pinned buffers; target ≥ 0.8×)": {"data_on_device": False},
    "the improved recipe (cosine + warm-up, flips, EMA)": {
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "warmup_steps": 50,
        "augment": "flip",
        "ema": 0.99,
    },
    "torch.compile": {"compile": True},
    "torch.compile reduce-overhead (CUDA graphs)": {"compile": True, "compile_mode": "reduce-overhead"},
}


class Sizes:
    """What the run measures: full size on a GPU, toy size in a CPU dry run."""

    def __init__(self, dry: bool):
        self.dry = dry
        self.epoch_images = 2048 if dry else CELEBA_TRAIN
        self.faces = 256 if dry else 4096  # distinct images, tiled to an epoch
        self.nf_scale = 8 if dry else 1  # widths divided by this in a dry run
        self.seconds = 0.5 if dry else 8.0  # cap on each timing; longer epochs are extrapolated
        full = [("conv", 16), ("conv", 64), ("conv", 128), ("pool", 16), ("lincode", 16), ("lincode", 64)]
        self.throughput_cases = [("conv", 2), ("pool", 2), ("lincode", 2)] if dry else full


def time_steps(settings: Settings, data: torch.Tensor, device: torch.device, sizes: Sizes) -> dict[str, float]:
    """celebae's training step over ``data`` as a training run takes it: warm-up, then timed steps until an
    epoch of ``sizes.epoch_images`` or the time cap; the epoch's time is extrapolated from the steps timed."""
    if settings.data_on_device is False and device.type == "cuda":
        data = data.cpu()  # as a memory map is: pageable host memory, batches gathered into pinned buffers
    with backends(device, settings.deterministic, settings.cudnn_benchmark):
        return _time_steps(settings, data, device, sizes)


def _time_steps(settings: Settings, data: torch.Tensor, device: torch.device, sizes: Sizes) -> dict[str, float]:
    net = build_network(settings, device, Processes())
    batches = Batches(data, settings.batch_size, device, shuffle=True, drop_last=True,
                      channels_last=settings.channels_last, augment=(settings.augment, settings.shift_px))  # fmt: skip
    loss, steps_per_epoch = get_loss("mse"), sizes.epoch_images // settings.batch_size
    net.schedule = Schedule(net.optimizer, settings, steps_per_epoch)
    warmup = min(5, max(1, steps_per_epoch // 4))  # autotuning, compilation, allocator growth
    pending, done, t0 = [], 0, 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for x in (x for epoch in itertools.count() for x in batches.epoch(epoch)):
        pending.append(train_step(net.forward, net.optimizer, x, loss, settings.precision, device)[0])
        net.schedule.after_step()  # as the loop does: the schedule, then the weight average
        if net.ema is not None:
            net.ema.update_parameters(net.model)
        if len(pending) >= settings.log_every:
            torch.stack(pending).tolist()  # the one read-back per log_every steps, as in training
            pending.clear()
        done += 1
        if done == warmup:
            synchronize(device)
            t0 = time.perf_counter()
        if done > warmup and (done - warmup >= steps_per_epoch or time.perf_counter() - t0 > sizes.seconds):
            break
    synchronize(device)
    per_step = (time.perf_counter() - t0) / (done - warmup)
    flops = training_flops_per_image(net.model)
    memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"images_per_s": settings.batch_size / per_step, "epoch_s": per_step * steps_per_epoch,
            "flops_per_image": flops, "peak_memory": memory, "timed_steps": done - warmup}  # fmt: skip


def _gib(nbytes: float | None) -> str:
    return "–" if nbytes is None else f"{nbytes / 2**30:.1f} GiB"


def settings_for(sizes: Sizes, device: torch.device, **values) -> Settings:
    values = {"model": "conv", "nf": 64, "batch_size": 64, **values}
    for key in ("nf", "nf_enc", "nf_dec"):
        if values.get(key):
            values[key] = max(1, values[key] // sizes.nf_scale)
    precision, channels_last = resolve_precision(values.pop("precision", "auto"), None, device)
    return Settings(**values, precision=precision, channels_last=channels_last, device=str(device))


def run_cuda_tests(dry: bool) -> str:
    tests = str(ROOT / "tests" / "test_cuda.py")
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", tests, "-p", "no:cacheprovider"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60 if dry else 240)
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    failures = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return "\n".join([f"CUDA tests (`pytest -m cuda tests/test_cuda.py`): exit {done.returncode}, {last}", *failures])


def throughput(sizes: Sizes, device: torch.device, images: np.ndarray, files: list[Path]) -> list[str]:
    """The authors' pipeline (JPEG files, PIL per image, DataLoader, fp32) against celebae's default path."""
    precision, _ = resolve_precision("auto", None, device)
    lines = ["| model | authors' img/s | celebae img/s | ratio |", "|---|---|---|---|"]
    for name, nf in sizes.throughput_cases:

        def timer() -> Timer:
            return Timer(3 if sizes.dry else 20, 2 if sizes.dry else 5, sizes.seconds / 2, device)

        base = time_baseline(name, nf, files, timer(), device)
        ours = time_celebae(name, nf, images, timer(), device, precision)
        lines.append(f"| {name} nf={nf} | {base:,.0f} | {ours:,.0f} | {ours / base:.2f}× |")
    return lines


def studies(sizes: Sizes, device: torch.device, data: torch.Tensor, peak: float) -> list[str]:
    lines = ["| study | point | epoch (s) | img/s | of bf16 peak | peak memory | epochs | study (min) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    total = 0.0
    for name in STUDIES:
        study_s = 0.0
        for point in expand(load_study(name), Path(tempfile.gettempdir())):
            fields = {k: getattr(point, k) for k in ("model", "batch_size", "nf_enc", "nf_dec")}
            s = settings_for(sizes, device, **fields, nf=point.width)
            r = time_steps(s, data, device, sizes)
            study_s += r["epoch_s"] * point.epochs
            lines.append(
                f"| {name} | {Path(point.out).name} | {r['epoch_s']:.1f} | {r['images_per_s']:,.0f} | "
                f"{r['images_per_s'] * r['flops_per_image'] / peak:.0%} | {_gib(r['peak_memory'])} | "
                f"{point.epochs} | |"
            )
        lines.append(f"| {name} | all points | | | | | | {study_s / 60:.1f} |")
        total += study_s
    lines.append(f"| all three | | | | | | | {total / 60:.1f} |")
    return lines


def variants(sizes: Sizes, device: torch.device, data: torch.Tensor) -> list[str]:
    lines = ["| conv nf 64, batch 64 | img/s | ÷ default |", "|---|---|---|"]
    default = None
    for label, change in VARIANTS.items():
        if sizes.dry and change.get("compile"):
            lines.append(f"| {label} | not timed in a CPU dry run (compiling takes 20-35 s here) | |")
            continue
        ips = time_steps(settings_for(sizes, device, **change), data, device, sizes)["images_per_s"]
        default = default or ips
        lines.append(f"| {label} | {ips:,.0f} | {ips / default:.2f}× |")
    return lines


def larger_than_the_gpu(sizes: Sizes, device: torch.device, folder: Path) -> list[str]:
    """A memory-mapped split larger than half the GPU's free memory (a sparse file: no disk is used) is not
    copied to the GPU; its batches stream, and the step runs at this speed."""
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 2**24
    rows = free // 2 // (3 * 128 * 128) + 1024
    path = folder / "huge.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, 3, 128, 128)).flush()
    split = np.load(path, mmap_mode="r")
    placed = place(split, device)
    streams = placed.device.type == "cpu"
    settings = settings_for(sizes, device, data_on_device=None)
    r = time_steps(settings, placed, device, sizes) if streams else None
    path.unlink()
    size = f"{rows * 3 * 128 * 128 / 2**30:.1f} GiB"
    if not streams:
        return [f"A {size} split was placed on the device: **wrong**, it should stream."]
    return [f"A {size} split (half the free memory: {free / 2**31:.1f} GiB) streams from its memory map: "
            f"{r['images_per_s']:,.0f} img/s, conv nf 64 batch 64 (rows read from a sparse file)."]  # fmt: skip


def synthetic_files(folder: Path, count: int) -> list[Path]:
    """JPEG files shaped like CelebA's (178×218) for the authors' pipeline (the real data does not travel)."""
    files = []
    for i in range(count):
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(draw_face(i).transpose(1, 2, 0)).resize((178, 218)).save(path, quality=95)
        files.append(path)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="every step at toy size on the CPU")
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-check.md", help="Markdown file to write")
    args = parser.parse_args(argv)
    sizes = Sizes(args.cpu_dry_run)
    device = torch.device("cpu" if args.cpu_dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU is visible; use --cpu-dry-run to check the script on a CPU")
        return 2
    started = time.perf_counter()
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "CPU"
    sections = [f"# GPU check: {name}, torch {torch.__version__}, Python {platform.python_version()}", ""]
    sections += [run_cuda_tests(args.cpu_dry_run), ""]
    with tempfile.TemporaryDirectory() as tmp:
        source = open_source("synthetic", synthetic_size=sizes.faces * 10 // 8)
        faces = prepare_split(source, "train", cache_dir=tmp, progress=False).images
        data = place(faces, device)[torch.arange(sizes.epoch_images) % len(faces)]  # the epoch, tiled, on the device
        peak = matmul_peak_flops(device, torch.bfloat16, seconds=0.2 if sizes.dry else 1.0)
        sections += [f"Measured bf16 matrix peak: {peak / 1e12:.1f} TFLOP/s.", ""]
        sections += ["## Throughput against the authors' pipeline", ""]
        sections += [*throughput(sizes, device, np.asarray(faces), synthetic_files(Path(tmp), 256)), ""]
        sections += ["## A split larger than the GPU", "", *larger_than_the_gpu(sizes, device, Path(tmp)), ""]
    full = time_steps(settings_for(sizes, device), data, device, sizes)
    sections += [
        f"## One epoch of conv nf 64, batch 64, over {sizes.epoch_images:,} images (target ≤ 10 s on one H100)", "",
        f"{full['epoch_s']:.1f} s ({full['images_per_s']:,.0f} img/s, {full['timed_steps']} steps timed, "
        f"{full['images_per_s'] * full['flops_per_image'] / peak:.0%} of the bf16 peak, "
        f"peak memory {_gib(full['peak_memory'])}); training steps only, validation not included.", "",
        "## The three studies at full size, one epoch each (target ≤ 15 minutes for all three)", "",
        *studies(sizes, device, data, peak), "",
        "## Speed options (each a setting)", "", *variants(sizes, device, data), "",
        f"Wall time of this check: {time.perf_counter() - started:.0f} s.",
    ]  # fmt: skip
    text = "\n".join(sections)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
