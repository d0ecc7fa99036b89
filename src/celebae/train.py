"""The training loop: one loop for the CPU, one GPU and ``torchrun`` DDP.

A run directory holds everything a run produced::

    RUN/config.json              the resolved settings
    RUN/metrics.csv              a row per step (training loss) and per epoch (mean train, full validation loss)
    RUN/tb/                      TensorBoard event files of the same numbers
    RUN/checkpoints/last.safetensors, last.state.safetensors, best.safetensors
    RUN/summary.json             final train/val/test MSE, test PSNR, parameters, images/s, wall time
    RUN/reconstructions.png      fixed test images (above) and their reconstructions (below)
    RUN/loss.png                 training and validation loss curves

The data order of epoch e is a pure function of (seed, e), and checkpoints
hold model, Adam, RNG and position, so ``resume`` continues to the result an
uninterrupted run reaches.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from . import checkpoint as ckpt
from .data import Batches, load_split, open_source, place, to_uint8, to_unit_range
from .errors import CelebaeError
from .evaluate import autocast, score
from .models import IMAGE_NUMEL, build_model, count_parameters
from .perf import adam, default_channels_last, default_precision, tune_allocator
from .plots import plot_losses, save_grid
from .settings import Settings

log = logging.getLogger("celebae")

METRIC_FIELDS = ["kind", "epoch", "step", "images", "train_loss", "val_loss", "images_per_s", "wall_s"]
REPORT_STATED_REDUCTION = 95.31  # percent; the report's figure, which its own sizes contradict
EVAL_BATCH = 256
# Settings a resumed run may change; the rest define the run and must match what it started with.
RESUMABLE_CHANGES = {
    "epochs",
    "device",
    "log_every",
    "out",
    "cache_dir",
    "compile",
    "grid_images",
    "checkpoint_minutes",
}


@dataclass
class Position:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimiser steps taken
    images: int = 0  # training images seen
    epoch_loss_sum: float = 0.0  # sum of this epoch's step losses so far
    train_loss: float = math.nan  # mean training loss of the last completed epoch
    val_loss: float = math.nan
    best_val: float = math.inf
    best_epoch: int = 0
    train_seconds: float = 0.0  # inside training steps only: preparation and validation excluded
    wall_s: float = 0.0  # whole run, summed over resumes


@dataclass
class Processes:
    """This process's place in a (possibly single-process) DDP job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # this module started the process group, so it ends it

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()


def start_processes() -> Processes:
    """Join the DDP job ``torchrun`` set up, if any (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes()
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owned)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → the local GPU, else Apple's MPS, else the CPU; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            name = f"cuda:{local_rank}"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CelebaeError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CelebaeError("--device cuda asked for, but this torch sees no CUDA GPU; use --device cpu or auto")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CelebaeError("--device mps asked for, but MPS is not available; use --device cpu or auto")
    return device


def resolve_runtime(settings: Settings, device: torch.device) -> Settings:
    """Fill in the settings left to the machine (precision, layout), as the run directory records them."""
    precision = default_precision(device) if settings.precision == "auto" else settings.precision
    channels_last = settings.channels_last
    if channels_last is None:
        channels_last = default_channels_last(device, precision)
    return settings.replace(precision=precision, channels_last=channels_last)


def default_run_dir(settings: Settings) -> Path:
    return Path("runs") / f"{settings.model}-nf{settings.width}-bs{settings.batch_size}"


class MetricsLog:
    """``metrics.csv`` (and TensorBoard), append-only; a resumed run first drops rows past its checkpoint."""

    def __init__(self, run: Path, resume_step: int | None):
        from tensorboardX import SummaryWriter

        self.path = run / "metrics.csv"
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            self._write(rows, "w")
        elif resume_step is None or not self.path.exists():
            self._write([], "w")
        self.tb = SummaryWriter(str(run / "tb"), purge_step=resume_step + 1 if resume_step else None)

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        with open(self.path, mode, newline="") as f:
            writer = csv.DictWriter(f, METRIC_FIELDS)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self._write([{k: _fmt(r.get(k)) for k in METRIC_FIELDS} for r in rows], "a")
        for r in rows:
            tag = "train/loss_step" if r["kind"] == "step" else "epoch"
            if r["kind"] == "step":
                self.tb.add_scalar(tag, r["train_loss"], r["step"])
            else:
                self.tb.add_scalar("epoch/train_loss", r["train_loss"], r["epoch"])
                self.tb.add_scalar("epoch/val_loss", r["val_loss"], r["epoch"])
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.8g}"
    return "" if value is None else value


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """``metrics.csv`` as dicts, numbers parsed (blank → None)."""
    path = Path(run) / "metrics.csv"
    if not path.exists():
        raise CelebaeError(f"{path} does not exist; is {run} a celebae run directory?")
    with open(path, newline="") as f:
        return [{k: (v if k == "kind" else (float(v) if v else None)) for k, v in r.items()} for r in csv.DictReader(f)]


def _check_resumable(run: Path, settings: Settings) -> None:
    if not (run / "checkpoints" / "last.safetensors").exists():
        raise CelebaeError(f"nothing to resume in {run}: no checkpoints/last.safetensors; drop --resume to start it")
    stored = json.loads((run / "config.json").read_text())
    changed = sorted(k for k, v in settings.to_dict().items() if k not in RESUMABLE_CHANGES and stored.get(k) != v)
    if changed:
        detail = ", ".join(f"{k}: {stored.get(k)!r} → {getattr(settings, k)!r}" for k in changed)
        raise CelebaeError(f"cannot resume {run} with different settings ({detail}); start a new --out instead")


class _StopFlag:
    """The first Ctrl-C asks the loop to save and stop; a second one interrupts at once."""

    def __init__(self) -> None:
        self.raised = False
        self.previous = None

    def __enter__(self) -> _StopFlag:
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self.previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def train(settings: Settings, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train one run; returns its summary (also written to ``RUN/summary.json``).

    Raises KeyboardInterrupt after saving a checkpoint when interrupted with Ctrl-C.
    """
    started = time.perf_counter()
    tune_allocator()
    procs = start_processes()
    device = resolve_device(settings.device, procs.local_rank)
    run = Path(settings.out) if settings.out else default_run_dir(settings)
    settings = resolve_runtime(settings.replace(out=str(run)), device)
    last, state_path, best = (
        run / "checkpoints" / n for n in ("last.safetensors", "last.state.safetensors", "best.safetensors")
    )
    if resume:
        _check_resumable(run, settings)
    elif last.exists():
        raise CelebaeError(f"{run} already holds a run; pass --resume to continue it, or choose another --out")
    torch.manual_seed(settings.seed)

    # Data: rank 0 prepares each split once; the other ranks then read the cache.
    source = open_source(settings.data, settings.synthetic_size, settings.split_seed)
    if procs.main:
        log.info("data %s", source.describe())
    prepared = {}
    for split in ("train", "val", "test"):
        if procs.main:
            prepared[split] = load_split(settings, split, progress, source)
        procs.barrier()
        if not procs.main:
            prepared[split] = load_split(settings, split, False, source)
    if procs.main and any((settings.limit_train, settings.limit_val, settings.limit_test)):
        log.info("using %s", " / ".join(f"{len(p.files):,} {s}" for s, p in prepared.items()))
    train_b = Batches(
        place(prepared["train"].images, device),
        settings.batch_size,
        device,
        shuffle=True,
        seed=settings.seed,
        drop_last=True,
        rank=procs.rank,
        world=procs.world,
        channels_last=settings.channels_last,
    )
    if len(train_b) == 0:
        raise CelebaeError(
            f"the train split has {len(prepared['train'].files)} images, fewer than one batch of "
            f"{settings.batch_size}; lower --batch-size or raise --limit-train"
        )
    eval_bs = EVAL_BATCH * procs.world
    val_b, test_b = (
        Batches(
            place(prepared[s].images, device),
            eval_bs,
            device,
            rank=procs.rank,
            world=procs.world,
            channels_last=settings.channels_last,
        )
        for s in ("val", "test")
    )

    model = build_model(settings.model, **settings.model_kwargs()).to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if settings.sync_batchnorm and procs.world > 1:
        if device.type != "cuda":
            raise CelebaeError("--sync-batchnorm needs CUDA GPUs (PyTorch's SyncBatchNorm has no CPU version)")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = adam(model.parameters(), lr=settings.lr, betas=(settings.beta1, settings.beta2))
    pos = Position()
    if resume:
        ckpt.load_weights(model, last)
        pos = Position(**ckpt.load_state(optimizer, ckpt.matching_state(last, state_path)))
        if procs.main:
            log.info("resuming %s at epoch %d, step %d", run, pos.epoch + 1, pos.step)
    forward = model
    if procs.world > 1:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    if settings.compile:
        forward = torch.compile(forward)

    metrics = None
    if procs.main:
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(settings.to_dict(), indent=1) + "\n")
        metrics = MetricsLog(run, pos.step if resume else None)

    wall_before = pos.wall_s

    def save(to_best: bool = False) -> None:
        if not procs.main:
            return
        pos.wall_s = wall_before + time.perf_counter() - started
        ckpt.save_state(optimizer, state_path, asdict(pos))  # keeps the previous state until the weights move
        ckpt.save_weights(model, last, settings.to_dict(), asdict(pos))
        if to_best:
            ckpt.save_weights(model, best, settings.to_dict(), asdict(pos))

    steps_per_epoch = len(train_b)
    total_steps = settings.epochs * steps_per_epoch
    bar = tqdm(
        total=total_steps,
        initial=pos.step,
        unit="step",
        disable=None if progress and procs.main else True,
        dynamic_ncols=True,
        desc=settings.label,
    )
    pending: list[torch.Tensor] = []  # step losses not yet read back: one device sync per log_every steps
    window_start, window_images = time.perf_counter(), 0  # the training time being measured for images/s
    last_save = time.perf_counter()

    def restart_window() -> None:
        """Start timing training afresh: validation and checkpoint writes are not training time."""
        nonlocal window_start, window_images
        window_start, window_images = time.perf_counter(), 0

    def flush() -> None:
        if not pending:
            return
        losses = torch.stack(pending).tolist()
        now = time.perf_counter()
        seconds = now - window_start
        pos.train_seconds += seconds
        speed = window_images / seconds if seconds > 0 else math.nan
        pos.epoch_loss_sum += sum(losses)
        first = pos.step - len(losses) + 1
        rows = [
            {
                "kind": "step",
                "epoch": pos.epoch + 1,
                "step": first + i,
                "images": pos.images - (len(losses) - 1 - i) * settings.batch_size,
                "train_loss": loss,
            }
            for i, loss in enumerate(losses)
        ]
        rows[-1].update(images_per_s=speed, wall_s=wall_before + now - started)
        if metrics:
            metrics.add(rows)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{speed:.0f}")
        pending.clear()
        restart_window()

    try:
        with _StopFlag() as stop:
            while pos.epoch < settings.epochs:
                model.train()
                restart_window()
                for x in train_b.epoch(pos.epoch, start=pos.batch):
                    with autocast(device, settings.precision):
                        y = forward(x)
                    loss = F.mse_loss(y.float(), x)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss = loss.detach()
                    if procs.world > 1:  # log the global batch's loss, not this rank's share
                        dist.all_reduce(loss, op=dist.ReduceOp.AVG)
                    pending.append(loss)
                    pos.step, pos.batch = pos.step + 1, pos.batch + 1
                    pos.images += settings.batch_size
                    window_images += settings.batch_size
                    bar.update(1)
                    if pos.step % settings.log_every == 0:
                        flush()
                    if stop.raised and procs.world == 1:
                        flush()
                        save()
                        bar.close()
                        log.warning(
                            "interrupted at epoch %d, step %d; checkpoint saved. Continue with: "
                            "celebae train --resume --out %s",
                            pos.epoch + 1,
                            pos.step,
                            run,
                        )
                        raise KeyboardInterrupt
                    if time.perf_counter() - last_save > settings.checkpoint_minutes * 60:
                        flush()
                        save()
                        last_save = time.perf_counter()
                        restart_window()
                flush()
                val = score(model, val_b)
                sse, n = procs.sum([float(val.mse.double().sum()), float(len(val.mse))], device)
                pos.train_loss = pos.epoch_loss_sum / steps_per_epoch
                pos.val_loss = sse / n
                pos.epoch, pos.batch, pos.epoch_loss_sum = pos.epoch + 1, 0, 0.0
                improved = pos.val_loss < pos.best_val
                if improved:
                    pos.best_val, pos.best_epoch = pos.val_loss, pos.epoch
                if metrics:
                    metrics.add(
                        [
                            {
                                "kind": "epoch",
                                "epoch": pos.epoch,
                                "step": pos.step,
                                "images": pos.images,
                                "train_loss": pos.train_loss,
                                "val_loss": pos.val_loss,
                                "wall_s": wall_before + time.perf_counter() - started,
                            }
                        ]
                    )
                    bar.write(
                        f"epoch {pos.epoch}/{settings.epochs}: train {pos.train_loss:.5f}  "
                        f"val {pos.val_loss:.5f}{'  (best)' if improved else ''}"
                    )
                save(to_best=improved)
                last_save = time.perf_counter()
        bar.close()

        test = score(model, test_b)
        sse, psnr_sum, n = procs.sum(
            [float(test.mse.double().sum()), float(test.psnr.double().sum()), float(len(test.mse))], device
        )
        if not procs.main:
            return {}
        pos.wall_s = wall_before + time.perf_counter() - started
        summary = _summary(settings, model, pos, sse / n, psnr_sum / n, prepared, source.missing, device, procs)
        (run / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        _figures(run, model, prepared["test"].images, settings)
        log.info("test MSE %.5f, PSNR %.2f dB; %s", summary["test_mse"], summary["test_psnr"], run)
        return summary
    finally:
        bar.close()
        if metrics:
            metrics.close()
        if procs.owned:
            dist.destroy_process_group()


def compression(code_size: int) -> dict[str, float]:
    """The true size reduction of a code, beside the report's stated one."""
    return {
        "input_numbers": IMAGE_NUMEL,
        "code_numbers": code_size,
        "kept_percent": round(100 * code_size / IMAGE_NUMEL, 4),
        "reduction_percent": round(100 * (1 - code_size / IMAGE_NUMEL), 4),
        "ratio": IMAGE_NUMEL / code_size,
        "report_stated_reduction_percent": REPORT_STATED_REDUCTION,
    }


def _summary(
    settings: Settings,
    model: torch.nn.Module,
    pos: Position,
    test_mse: float,
    test_psnr: float,
    prepared: dict,
    missing: int,
    device: torch.device,
    procs: Processes,
) -> dict[str, Any]:
    return {
        "label": settings.label,
        "model": settings.model,
        "nf": settings.width,
        "nf_enc": settings.nf_enc,
        "nf_dec": settings.nf_dec,
        "batch_size": settings.batch_size,
        "epochs": settings.epochs,
        "data": settings.data,
        "train_mse": pos.train_loss,
        "val_mse": pos.val_loss,
        "test_mse": test_mse,
        "test_psnr": test_psnr,
        "best_val_mse": pos.best_val,
        "best_epoch": pos.best_epoch,
        "params": count_parameters(model),
        "params_encoder": count_parameters(model.encoder),
        "params_decoder": count_parameters(model.decoder),
        "code_size": model.code_size,
        "compression": compression(model.code_size),
        "steps": pos.step,
        "images_seen": pos.images,
        "train_images_per_s": pos.images / pos.train_seconds if pos.train_seconds else None,
        "train_seconds": pos.train_seconds,
        "wall_s": pos.wall_s,
        "splits": {s: len(p.files) for s, p in prepared.items()},
        "missing_images": missing,
        "device": str(device),
        "world_size": procs.world,
        "precision": settings.precision,
        "torch": torch.__version__,
    }


@torch.no_grad()
def _figures(run: Path, model: torch.nn.Module, test_images: Any, settings: Settings) -> None:
    """reconstructions.png (first test images above, their reconstructions below) and loss.png."""
    device = next(model.parameters()).device
    x = torch.from_numpy(test_images[: settings.grid_images].copy()).to(device)
    model.eval()
    y = model(to_unit_range(x))
    save_grid([x, to_uint8(y)], run / "reconstructions.png")
    rows = read_metrics(run)
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    per_epoch = max(1, len(steps) // max(1, len(epochs)))
    curves = {
        "train (per step)": ([r["step"] / per_epoch for r in steps], [r["train_loss"] for r in steps]),
        "validation": ([r["epoch"] for r in epochs], [r["val_loss"] for r in epochs]),
    }
    plot_losses(curves, run / "loss.png", xlabel="epoch", title=settings.label)
