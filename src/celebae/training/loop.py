"""The training loop: one loop for the CPU, one GPU and ``torchrun`` DDP.

``train`` reads top to bottom: set up (processes, run directory, data, network, position), the epochs,
finish (test scores, summary, figures). ``train_step`` is the one optimiser step that the loop and every
benchmark take. The data order of epoch e is a pure function of (seed, e), and checkpoints hold model,
Adam, RNG and position, so ``resume`` continues to the result an uninterrupted run reaches.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..data import Batches, PreparedSplit, load_split, place, to_uint8, to_unit_range
from ..errors import CelebaeError
from ..models import Autoencoder, build_model, count_parameters
from ..models.registry import check_fits
from ..quality.codes import compression
from ..quality.figures import plot_losses, save_grid
from ..quality.losses import Loss, get_loss
from ..quality.metrics import Scores, score
from . import checkpoint as ckpt
from .claim import claim, start_mode
from .device import adam, autocast, backends, resolve_device, resolve_precision, tune_allocator
from .distributed import Processes, start_processes
from .rundir import MetricsLog, RunDir, read_metrics
from .schedule import Schedule
from .settings import Settings

log = logging.getLogger("celebae")

EVAL_BATCH = 256


def train_step(
    forward: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    loss: Loss,
    precision: str,
    device: torch.device,
    grad_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on the batch ``x`` (the model reconstructs its input); returns the batch's loss and
    its MSE, detached and still on the device (the same tensor when the loss is MSE). ``grad_clip`` clips the
    gradients' global norm first."""
    with autocast(device, precision):
        y = forward(x)
    y = y.float()
    value = loss.batch(y, x)
    optimizer.zero_grad(set_to_none=True)
    value.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(forward.parameters(), grad_clip)
    optimizer.step()
    value = value.detach()
    return value, value if loss.name == "mse" else F.mse_loss(y.detach(), x)


@dataclass
class Position:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimiser steps taken
    images: int = 0  # training images seen
    epoch_loss_sum: float = 0.0  # sum of this epoch's step losses so far
    epoch_mse_sum: float = 0.0  # and of their MSEs
    train_loss: float = math.nan  # mean training loss of the last completed epoch
    train_mse: float = math.nan
    val_loss: float = math.nan
    val_mse: float = math.nan
    best_val: float = math.inf  # lowest validation loss so far (the run's loss)
    best_epoch: int = 0
    train_seconds: float = 0.0  # inside training steps only: preparation and validation excluded
    wall_s: float = 0.0  # whole run, summed over resumes


@dataclass
class Data:
    prepared: dict[str, PreparedSplit]
    missing: int  # images the source names but does not have
    train: Batches
    val: Batches
    test: Batches


@dataclass
class Network:
    model: Autoencoder
    forward: torch.nn.Module  # the model, wrapped by DDP and/or torch.compile
    optimizer: torch.optim.Optimizer
    ema: AveragedModel | None = None  # --ema: the moving average of the weights
    schedule: Schedule | None = None  # set once the steps per epoch are known

    @property
    def scored(self) -> torch.nn.Module:
        """The weights that are validated, tested and kept as best: the average with --ema, else the model."""
        return self.ema.module if self.ema is not None else self.model


def train(settings: Settings, start: str = "new", progress: bool = True) -> dict[str, Any]:
    """Train one run; returns its summary (also written to ``RUN/summary.json``).

    ``start`` is one of ``claim.STARTS``: ``new`` (refused where ``settings.out`` holds a run), ``resume``
    (continue from the last checkpoint; the settings must match the stored ones except those a resume may
    change, which ``RunDir.resume_settings`` makes), ``overwrite`` (remove the run there first) or ``auto``
    (finished: its summary, nothing trained; a checkpoint: resume; else start). A directory is never written
    by two processes at once (a second one gets ``RunHeld``, naming the holder). Ctrl-C, SIGTERM and SIGUSR1
    finish the step in progress, save a checkpoint and raise ``Stopped`` (a KeyboardInterrupt naming the signal).
    """
    started = time.perf_counter()
    run = RunDir.default_for(settings)
    settings = settings.replace(out=str(run.path)).resolved()  # paths as they are from anywhere
    run = RunDir(settings.out)
    mode = start_mode(run, start)
    if mode == "done":
        log.info("%s has finished already; nothing to do", run.path)
        return run.summary
    # weights, gradients and Adam's two moments (and the average with --ema) must fit, before anything is made
    check_fits(settings.model, settings.model_kwargs(), copies=4 + (settings.ema is not None))
    tune_allocator()
    procs = start_processes()
    lock = None
    try:
        device = resolve_device(settings.device, procs.local_rank)
        precision, channels_last = resolve_precision(settings.precision, settings.channels_last, device)
        settings = settings.replace(precision=precision, channels_last=channels_last)
        settings = settings.replace(schedule_epochs=schedule_epochs(run, settings, mode == "resume"))
        lock = claim(run, settings, mode, procs)  # one writer, held to the end of the run
        torch.manual_seed(settings.seed)
        net = build_network(settings, device, procs)  # first: a model that cannot be built fails before data work
        data = load_data(settings, device, procs, progress)
        net.schedule = Schedule(net.optimizer, settings, len(data.train))  # before restore, which loads its state
        pos = restore(run, net, procs) if mode == "resume" else Position()
        trainer = Trainer(run, settings, device, procs, data, net, pos, started, progress)
        with trainer, StopSignals() as stop, backends(device, settings.deterministic, settings.cudnn_benchmark):
            while pos.epoch < settings.epochs:
                trainer.run_epoch(stop)
                trainer.end_epoch()
            summary = trainer.finish()
            # every rank leaves together: a rank that tears its gloo group down while rank 0 still writes the
            # summary and figures was seen to abort (SIGABRT) now and then
            procs.barrier()
            return summary
    finally:
        if lock is not None:
            lock.release()
        procs.end()


def schedule_epochs(run: RunDir, settings: Settings, resume: bool) -> int:
    """The epochs the schedule spans: as given; else a resumed run's own; else the epochs it starts with."""
    if settings.schedule_epochs is not None:
        return settings.schedule_epochs
    if resume and run.config_path.exists():
        return run.read_config().schedule_epochs or settings.epochs
    return settings.epochs


def load_data(settings: Settings, device: torch.device, procs: Processes, progress: bool) -> Data:
    """The three splits as batches on ``device``; rank 0 prepares each split once, the others read its cache."""
    spec = settings.data_spec()
    source = spec.open()
    if procs.main:
        log.info("data %s", source.describe())
    prepared = {}
    for split in ("train", "val", "test"):
        if procs.main:
            prepared[split] = load_split(spec, split, progress, source)
        procs.barrier()
        if not procs.main:
            prepared[split] = load_split(spec, split, False, source)
    if procs.main and any(spec.limits.values()):
        log.info("using %s", " / ".join(f"{len(p.files):,} {s}" for s, p in prepared.items()))

    def batches(split: str, size: int, shuffle: bool) -> Batches:
        return Batches(
            place(prepared[split].images, device, settings.data_on_device),
            size,
            device,
            shuffle=shuffle,
            seed=settings.seed,
            drop_last=shuffle,
            rank=procs.rank,
            world=procs.world,
            channels_last=settings.channels_last,
            augment=(settings.augment, settings.shift_px) if shuffle else None,  # training batches only
        )

    train_b = batches("train", settings.batch_size, True)
    if len(train_b) == 0:
        raise CelebaeError(
            f"the train split has {len(prepared['train'].files)} images, fewer than one batch of "
            f"{settings.batch_size}; lower --batch-size or raise --limit-train"
        )
    eval_bs = EVAL_BATCH * procs.world
    return Data(prepared, source.missing, train_b, batches("val", eval_bs, False), batches("test", eval_bs, False))


def build_network(settings: Settings, device: torch.device, procs: Processes) -> Network:
    """The model in its layout, Adam, and the module the steps call (DDP- and compile-wrapped as asked)."""
    model = build_model(settings.model, **settings.model_kwargs()).to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if settings.sync_batchnorm and procs.world > 1:
        if device.type != "cuda":
            raise CelebaeError("--sync-batchnorm needs CUDA GPUs (PyTorch's SyncBatchNorm has no CPU version)")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = adam(model.parameters(), settings.lr, (settings.beta1, settings.beta2), settings.weight_decay)
    ema = None
    if settings.ema is not None:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema), use_buffers=True)
    forward = model
    if procs.world > 1:
        ids = [device] if device.type == "cuda" else None
        forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if settings.compile:
        forward = torch.compile(forward, mode=settings.compile_mode)
    return Network(model, forward, optimizer, ema)


def restore(run: RunDir, net: Network, procs: Processes) -> Position:
    """Weights, Adam, RNGs and position from the run's last checkpoint."""
    ckpt.load_weights(net.model, run.weights("last"))
    state = ckpt.matching_state(run.weights("last"), run.training_state)
    pos = Position(**ckpt.load_state(net.optimizer, state))
    extra, tensors = ckpt.read_extras(state)
    net.schedule.load_state_dict(extra.get("schedule", {}))
    if net.ema is not None:
        net.ema.load_state_dict({k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")})
    if procs.main:
        log.info("resuming %s at epoch %d, step %d", run.path, pos.epoch + 1, pos.step)
    return pos


@dataclass
class Trainer:
    """The state of a run in progress, and the three things done with it: an epoch, its end, the finish.

    Only the main process writes (metrics, checkpoints, summary); every process trains and scores."""

    run: RunDir
    settings: Settings
    device: torch.device
    procs: Processes
    data: Data
    net: Network
    pos: Position
    started: float  # time.perf_counter() when this attempt started
    progress: bool = True

    def __post_init__(self) -> None:
        settings, pos = self.settings, self.pos
        self.loss = get_loss(settings.loss)
        self.wall_before = pos.wall_s
        self.steps_per_epoch = len(self.data.train)
        self.metrics: MetricsLog | None = None
        if self.procs.main:
            self.run.write_config(settings)
            self.run.clear_failure()
            resumed = pos.step > 0  # a resumed run is past step 0
            self.metrics = MetricsLog(self.run, (pos.step, pos.epoch) if resumed else None)
        self.bar = tqdm(
            total=settings.epochs * self.steps_per_epoch,
            initial=pos.step,
            unit="step",
            disable=None if self.progress and self.procs.main else True,
            dynamic_ncols=True,
            desc=settings.label,
        )
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # read back once per log_every steps
        self.pending_lr: list[float] = []
        self.window_start, self.window_images = time.perf_counter(), 0  # the training time being measured
        self.last_save = time.perf_counter()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, tb: Any) -> None:
        self.bar.close()
        if self.metrics:
            self.metrics.close()
        if error is not None and not isinstance(error, KeyboardInterrupt) and self.procs.main:
            with contextlib.suppress(OSError):  # a full or read-only disk must not hide the error itself
                self.run.mark_failed(
                    str(error) if isinstance(error, CelebaeError) else f"{type(error).__name__}: {error}"
                )

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def run_epoch(self, stop: StopSignals) -> None:
        """Train from the current position to the end of the epoch (or until a stop signal, then save and stop)."""
        self.net.model.train()
        self.restart_window()
        for x in self.data.train.epoch(self.pos.epoch, start=self.pos.batch):
            net, s = self.net, self.settings
            loss, mse = train_step(net.forward, net.optimizer, x, self.loss, s.precision, self.device, s.grad_clip)
            self.pending_lr.append(net.schedule.lr)  # the rate this step used
            net.schedule.after_step()
            if net.ema is not None:
                net.ema.update_parameters(net.model)
            self.procs.mean_(loss)  # log the global batch's loss, not this rank's share
            if mse is not loss:
                self.procs.mean_(mse)
            self.pending.append((loss, mse))
            pos = self.pos
            pos.step, pos.batch, pos.images = pos.step + 1, pos.batch + 1, pos.images + self.settings.batch_size
            self.window_images += self.settings.batch_size
            self.bar.update(1)
            if pos.step % self.settings.log_every == 0:
                self.flush()
            if self.stop_agreed(stop):
                self.interrupt(stop.signum)
            if time.perf_counter() - self.last_save > self.settings.checkpoint_minutes * 60:
                self.flush()
                self.save()
                self.restart_window()
        self.flush()

    def end_epoch(self) -> None:
        """Validation, the epoch's row, and a checkpoint (also ``best`` when validation improved)."""
        pos, steps = self.pos, self.steps_per_epoch
        scores = score(self.net.scored, self.data.val, self.loss)
        mse, loss = self.split_means(scores)[:2]
        raw_mse = self.split_means(score(self.net.model, self.data.val, self.loss))[0] if self.net.ema else None
        if self.procs.main and self.procs.world == 1:  # per-image errors in split order: one process has them all
            self.run.add_val_errors(pos.epoch, scores.mse.numpy())
        pos.train_loss, pos.train_mse = pos.epoch_loss_sum / steps, pos.epoch_mse_sum / steps
        pos.val_loss, pos.val_mse = loss, mse
        pos.epoch, pos.batch, pos.epoch_loss_sum, pos.epoch_mse_sum = pos.epoch + 1, 0, 0.0, 0.0
        improved = pos.val_loss < pos.best_val
        if improved:
            pos.best_val, pos.best_epoch = pos.val_loss, pos.epoch
        self.net.schedule.after_epoch(pos.val_loss)
        if self.metrics:
            row = {k: getattr(pos, k) for k in ("epoch", "step", "images", "train_loss", "val_loss")}
            row.update(kind="epoch", wall_s=self.wall(), train_mse=pos.train_mse, val_mse=pos.val_mse)
            row.update(raw_val_mse=raw_mse, lr=self.net.schedule.lr)
            self.metrics.add([row])
            self.bar.write(
                f"epoch {pos.epoch}/{self.settings.epochs}: train {pos.train_loss:.5f}  "
                f"val {pos.val_loss:.5f}{'  (best)' if improved else ''}"
            )
        self.save(best=improved)

    def split_means(self, scores: Scores) -> tuple[float, float, float]:
        """(MSE, loss, PSNR) means over every process's share of a split."""
        sums = [float(scores.mse.double().sum()), float(scores.loss.double().sum())]
        sse, sl, psnr, n = self.procs.sum(
            [*sums, float(scores.psnr.double().sum()), float(len(scores.mse))], self.device
        )
        return sse / n, sl / n, psnr / n

    def finish(self) -> dict[str, Any]:
        """Test scores, ``summary.json`` and the figures; returns the summary ({} on other ranks)."""
        self.bar.close()
        data = self.data
        scores = score(self.net.scored, data.test, self.loss)
        test_mse, test_loss, test_psnr = self.split_means(scores)
        raw = {"raw_test_mse": self.split_means(score(self.net.model, data.test, self.loss))[0]} if self.net.ema else {}
        if not self.procs.main:
            return {}
        if self.procs.world > 1:  # this rank scored its share; the per-image file needs every image, in order
            whole = Batches(place(data.prepared["test"].images, self.device), EVAL_BATCH, self.device)
            scores = score(self.net.scored, whole, self.loss)
        self.run.write_test_errors(scores.mse.numpy())
        self.pos.wall_s = self.wall()
        summary = summarise(self, {"test_mse": test_mse, "test_psnr": test_psnr, "test_loss": test_loss, **raw})
        self.run.write_summary(summary)
        write_figures(self.run, self.net.scored, data.prepared["test"].images, self.settings)
        log.info("test MSE %.5f, PSNR %.2f dB; %s", test_mse, test_psnr, self.run.path)
        return summary

    def restart_window(self) -> None:
        """Start timing training afresh: validation and checkpoint writes are not training time."""
        self.window_start, self.window_images = time.perf_counter(), 0

    def flush(self) -> None:
        """Read the pending step losses back (one device sync) and write their rows."""
        if not self.pending:
            return
        losses, mses = (torch.stack(t).tolist() for t in zip(*self.pending, strict=True))
        now = time.perf_counter()
        seconds = now - self.window_start
        pos = self.pos
        pos.train_seconds += seconds
        speed = self.window_images / seconds if seconds > 0 else math.nan
        pos.epoch_loss_sum += sum(losses)
        pos.epoch_mse_sum += sum(mses)
        first, bs = pos.step - len(losses) + 1, self.settings.batch_size
        rows = [
            {
                "kind": "step",
                "epoch": pos.epoch + 1,
                "step": first + i,
                "images": pos.images - (len(losses) - 1 - i) * bs,
                "train_loss": loss,
                "train_mse": None if self.loss.name == "mse" else mse,
                "lr": lr,
            }
            for i, (loss, mse, lr) in enumerate(zip(losses, mses, self.pending_lr, strict=True))
        ]
        rows[-1].update(images_per_s=speed, wall_s=self.wall())
        if self.metrics:
            self.metrics.add(rows)
        self.bar.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{speed:.0f}")
        self.pending.clear()
        self.pending_lr.clear()
        self.restart_window()

    def save(self, best: bool = False) -> None:
        self.last_save = time.perf_counter()
        if not self.procs.main:
            return
        self.pos.wall_s = self.wall()
        settings, position = self.settings.to_dict(), asdict(self.pos)
        net, extra = self.net, {"schedule": self.net.schedule.state_dict()}
        ema = {f"ema.{k}": v for k, v in net.ema.state_dict().items()} if net.ema is not None else None
        # The order keeps every kill window consistent: the state first (the previous one is kept until the
        # weights move), then best (a kill before last is saved redoes the epoch, which saves best again), then
        # the average, and last, which marks the checkpoint as taken.
        try:
            ckpt.save_state(net.optimizer, self.run.training_state, position, extra, ema, self.run.weights("last"))
            if best:
                ckpt.save_weights(net.scored, self.run.weights("best"), settings, position)
            if net.ema is not None:
                ckpt.save_weights(net.ema.module, self.run.ema_weights("last"), settings, position)
            ckpt.save_weights(net.model, self.run.weights("last"), settings, position)
        except CelebaeError as err:  # auto: resumes from the last checkpoint if one was saved, else starts again
            raise CelebaeError(
                f"{err}; once there is room, run the same command again with --auto-resume "
                "(Python: celebae.train(settings, start='auto'))"
            ) from None

    def stop_agreed(self, stop: StopSignals) -> bool:
        """Whether to stop after this step. One process stops at once; under torchrun the ranks agree at every
        log_every-th step (one small all-reduce there), so all of them stop after the same step."""
        if self.procs.world == 1:
            return stop.signum is not None
        if self.pos.step % self.settings.log_every:
            return False
        agreed = self.procs.any(stop.signum is not None)
        if agreed and stop.signum is None:
            stop.signum = signal.SIGTERM  # another rank was signalled
        return agreed

    def interrupt(self, signum: int) -> None:
        self.flush()
        self.save()
        self.bar.close()
        if self.procs.main:
            log.warning(
                "stopped by %s at epoch %d, step %d; checkpoint saved. Continue with: celebae train --resume --out %s",
                signal.Signals(signum).name,
                self.pos.epoch + 1,
                self.pos.step,
                self.run.path,
            )
        raise Stopped(signum)


def summarise(trainer: Trainer, test: dict[str, float]) -> dict[str, Any]:
    """``summary.json``: what ran, its scores (MSE and PSNR whatever the loss), size, speed and time."""
    s, pos, model, data = trainer.settings, trainer.pos, trainer.net.model, trainer.data
    return {
        "label": s.label,
        "model": s.model,
        "nf": s.width,
        "nf_enc": s.nf_enc,
        "nf_dec": s.nf_dec,
        "model_args": s.model_args,
        "loss": s.loss,
        "batch_size": s.batch_size,
        "epochs": s.epochs,
        "data": s.data,
        "train_loss": pos.train_loss,
        "val_loss": pos.val_loss,
        "train_mse": pos.train_mse,
        "val_mse": pos.val_mse,
        **test,
        "best_val_loss": pos.best_val,
        "best_epoch": pos.best_epoch,
        "params": count_parameters(model),
        "params_encoder": count_parameters(model.encoder),
        "params_decoder": count_parameters(model.decoder),
        "image_size": model.image_shape[-1],
        "code_size": model.code_size,
        "compression": compression(model.code_size, math.prod(model.image_shape)),
        "steps": pos.step,
        "images_seen": pos.images,
        "train_images_per_s": pos.images / pos.train_seconds if pos.train_seconds else None,
        "train_seconds": pos.train_seconds,
        "wall_s": pos.wall_s,
        "splits": {split: len(p.files) for split, p in data.prepared.items()},
        "missing_images": data.missing,
        "device": str(trainer.device),
        "world_size": trainer.procs.world,
        "precision": s.precision,
        "torch": torch.__version__,
    }


@torch.no_grad()
def write_figures(run: RunDir, model: torch.nn.Module, test_images: Any, settings: Settings) -> None:
    """reconstructions.png (first test images above, their reconstructions below) and loss.png."""
    device = next(model.parameters()).device
    x = torch.from_numpy(test_images[: settings.grid_images].copy()).to(device)
    model.eval()
    y = model(to_unit_range(x))
    save_grid([x, to_uint8(y)], run.reconstructions_png)
    rows = read_metrics(run.path)
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    per_epoch = max(1, len(steps) // max(1, len(epochs)))
    curves = {
        "train (per step)": ([r["step"] / per_epoch for r in steps], [r["train_loss"] for r in steps]),
        "validation": ([r["epoch"] for r in epochs], [r["val_loss"] for r in epochs]),
    }
    plot_losses(curves, run.loss_png, xlabel="epoch", ylabel=f"{settings.loss.upper()} loss", title=settings.label)


class Stopped(KeyboardInterrupt):
    """Training stopped by a signal after saving a checkpoint; the CLI exits with 128 + its number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def __reduce__(self) -> tuple:  # from a sweep's worker process to the sweep, by its number
        return Stopped, (self.signum,)


# Ctrl-C; what SLURM, Kubernetes, docker stop and torchrun send before a kill; SLURM's --signal warning
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR1", None)) if s is not None)


class StopSignals:
    """The first stop signal asks the loop to finish its step, save and stop; a second Ctrl-C interrupts at
    once. Handlers are installed for the run only (and only from the main thread) and restored after."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        try:
            self.previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        except ValueError:  # not the main thread: no signal handling
            self.previous = {}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
