"""Studies: a TOML file states a grid and/or a list of points over run settings; a sweep trains each point
into its own run directory under one sweep folder.

    name = "exp2"
    description = "conv with batch size {32, 64} × nf {32, 64}, 8 epochs"
    [settings]            # shared by every point; any setting of `celebae train`
    model = "conv"
    epochs = 8
    [grid]                # every combination
    batch_size = [32, 64]
    nf = [32, 64]
    [[points]]            # and/or single points (``name``, optional, is the point's folder)
    batch_size = 128
    nf = 128
    seeds = [0, 1, 2]     # optional: every point once per seed (or seeds = 3), in POINT/seed-K

Finished points (a ``summary.json``) are skipped, interrupted ones resumed, and a failed point is
recorded in ``sweep.json`` while the others go on. With several GPUs, points run in parallel, one per GPU.

The same sweep may run in many processes at once (N shells, the tasks of a SLURM job array, on one machine
or on a shared folder): each run is trained by the process that takes its lock first, the others pass it
by, and a run whose process died (its lock released by the kernel) is resumed by the next one to reach it.
Every process writes ``sweep.json`` and the tables when it is done, one at a time, from the runs' own state.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import signal
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from ..errors import CelebaeError
from ..training.claim import RunHeld, RunLock
from ..training.loop import STOP_SIGNALS, Stopped, train
from ..training.rundir import RunDir, SweepDir
from ..training.settings import Settings, read_toml
from .report import write_tables_and_figures

log = logging.getLogger("celebae")

MAX_SEEDS = 1000  # runs per point; a study of more is a typo
STUDY_KEYS = {"name", "description", "settings", "grid", "points", "seeds", "pca"}


@dataclass
class Study:
    name: str
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] | None = None  # None: one run per point, in POINT itself, with the settings' seed
    pca: bool = False  # the report draws validation PSNR against steps and minutes beside PCA (studies.budget)


def parse_seeds(value: int | str | list[int] | None, where: str = "--seeds") -> list[int] | None:
    """``3`` → [0, 1, 2]; ``"0,4,7"`` or [0, 4, 7] → that list; None → None."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            value = int(value) if "," not in value else [int(v) for v in value.split(",") if v.strip()]
        seeds = range(value) if isinstance(value, int) else [int(v) for v in value]
    except (TypeError, ValueError):
        raise CelebaeError(f"{where} must be a count (3) or a list of seeds (0,1,2), got {value!r}") from None
    if len(seeds) > MAX_SEEDS:
        raise CelebaeError(f"{where} must name at most {MAX_SEEDS} seeds, got {len(seeds)}")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise CelebaeError(f"{where} must name at least one seed, each once and not negative, got {value!r}")
    return seeds


BUILTIN = Path(__file__).with_name("builtin")  # the report's studies, shipped with the package


def builtin_studies() -> dict[str, str]:
    """Name → description of the studies that ship with celebae (``celebae sweep exp1``)."""
    return {p.stem: read_toml(p).get("description", "") for p in sorted(BUILTIN.glob("*.toml"))}


def study_path(study: str | Path) -> Path:
    """A study file's path: ``study`` itself where it is a file, else the built-in study of that name."""
    path = Path(study)
    if path.is_file() or path.suffix == ".toml" or len(path.parts) > 1:
        return path  # a user's own file (read_toml says if it is missing)
    if (BUILTIN / f"{study}.toml").is_file():
        return BUILTIN / f"{study}.toml"
    raise CelebaeError(
        f"study {study!r} is neither a file nor a built-in study ({', '.join(builtin_studies())}); "
        "see `celebae sweep --list`"
    )


def load_study(study: str | Path) -> Study:
    """Read a study file (or a built-in study by name); a one-line error names what is wrong in it."""
    path = study_path(study)
    raw = read_toml(path)
    unknown = sorted(set(raw) - STUDY_KEYS)
    if unknown:
        raise CelebaeError(f"{path}: unknown key(s) {', '.join(unknown)}; a study has {', '.join(sorted(STUDY_KEYS))}")
    grid = raw.get("grid", {})
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise CelebaeError(f"{path}: grid.{key} must be a non-empty list, got {values!r}")
    seeds = parse_seeds(raw.get("seeds"), f"{path}: seeds")
    return Study(
        raw.get("name", path.stem),
        raw.get("description", ""),
        raw.get("settings", {}),
        grid,
        raw.get("points", []),
        seeds,
        bool(raw.get("pca", False)),
    )


def expand(
    study: Study, out: Path, overrides: dict[str, Any] | None = None, seeds: list[int] | None = None
) -> list[Settings]:
    """Every run of the study as resolved Settings with its run directory; ``overrides`` apply to all. With
    ``seeds`` (or the study's), each point runs once per seed, into ``POINT/seed-K``."""
    overrides = overrides or {}
    seeds = seeds or study.seeds
    combos = (
        [dict(zip(study.grid, values, strict=True)) for values in itertools.product(*study.grid.values())]
        if study.grid
        else []
    )
    combos += study.points
    if not combos:
        combos = [{}]
    varying = sorted({k for c in combos for k in c} - {"name"})
    points, names = [], set()
    for i, combo in enumerate(combos):
        combo = dict(combo)
        given = combo.pop("name", None)  # a point may name itself (its folder)
        values = {**study.settings, **combo, **overrides}
        settings = Settings.from_dict(values, f"study {study.name}, point {i + 1}")
        name = str(given) if given else settings.run_name(varying)
        if name in names:
            raise CelebaeError(f"study {study.name}: two points are both {name}; make the points differ")
        names.add(name)
        folder = SweepDir(out)
        if seeds is None:
            points.append(settings.replace(out=str(folder.run(name).path)))
        else:
            points += [settings.replace(seed=seed, out=str(folder.run(name, seed).path)) for seed in seeds]
    return points


# a run directory's state, as a sweep reports it
_STATUS = {"finished": "done", "partial": "interrupted", "failed": "failed", "new": "pending"}
ELSEWHERE = "running elsewhere"  # another process holds the run


def _status(settings: Settings) -> str:
    run = RunDir(settings.out)
    if run.state != "finished" and run.lock_path.exists() and RunLock(run).held_elsewhere():
        return ELSEWHERE
    return _STATUS[run.state]


def _run_point(settings: Settings, device: str | None) -> tuple[str, str | None]:
    """Train one point (resuming it if it has a checkpoint); (status, error). A failure is also recorded in
    the point's run directory."""
    if device is not None and settings.device == "auto":
        settings = settings.replace(device=device)
    run = RunDir(settings.out)
    try:
        lock = RunLock(run).acquire()  # held from here: train() takes it again (re-entrant) and keeps it
    except RunHeld as held:
        return ELSEWHERE, str(held)
    try:
        train(settings, start="auto", progress=device is None)  # finished since it was listed: nothing to do
        return "done", None
    except KeyboardInterrupt:
        raise
    except CelebaeError as err:
        error = str(err)
    except Exception as err:  # one broken point must not stop the study: record it and go on
        log.debug(traceback.format_exc())
        error = f"{type(err).__name__}: {err}"
    finally:
        lock.release()
    run.mark_failed(error)
    return "failed", error


_worker_device: str | None = None


def _claim_device(devices: Any) -> None:
    global _worker_device
    _worker_device = devices.get()


_worker_stopped: Stopped | None = None  # the signal that stopped a run here: this worker starts no other


def _run_in_worker(settings: Settings) -> tuple[str, str | None]:
    """One point in a pool worker. The pool queues the next points ahead, and a signal that stops a run (a
    preemption reaches every process of the job) must stop the worker too, so it passes the queued ones by."""
    global _worker_stopped
    if _worker_stopped is not None:
        raise _worker_stopped
    try:
        return _run_point(settings, _worker_device)
    except Stopped as stop:
        _worker_stopped = stop
        raise


def _train_points(todo: list[Settings], parallel: int, gpus: int) -> dict[str, tuple[str, str | None]]:
    """Train ``todo`` (``parallel`` at once, one GPU each when there are several); run directory → result."""
    if parallel <= 1 or len(todo) <= 1:
        results = {}
        for s in todo:
            log.info("%s: %s", s.out, "resuming" if RunDir(s.out).resumable else "training")
            results[s.out] = _run_point(s, None)
        return results
    ctx = multiprocessing.get_context("spawn")
    devices = ctx.Manager().Queue()
    for i in range(parallel):
        devices.put(f"cuda:{i % gpus}" if gpus > 1 else "auto")
    pool = ProcessPoolExecutor(parallel, ctx, initializer=_claim_device, initargs=(devices,))
    with _forward_stop_signals(), pool:
        return {s.out: result for s, result in zip(todo, pool.map(_run_in_worker, todo), strict=True)}


@contextlib.contextmanager
def _forward_stop_signals() -> Iterator[None]:
    """While workers train, a stop signal to the sweep is passed to them: each saves and stops, the first
    ``Stopped`` reaches the sweep through the pool, and the pool's exit waits for the others to save."""

    def forward(signum: int, frame: Any) -> None:
        for child in multiprocessing.active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    try:
        previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: no signal handling
        previous = {}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def sweep(
    study_file: str | Path,
    out: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    parallel: int | None = None,
    dry_run: bool = False,
    seeds: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Run (or with ``dry_run`` only list) every run of a study; returns one record per run, named by its
    path in the sweep folder (``conv-bs16-nf16`` or, with seeds, ``conv-bs16-nf16/seed-0``).

    ``parallel`` runs train at once; by default one per GPU when there are several, else one.
    """
    study = load_study(study_file)
    out = Path(out) if out else Path("runs") / study.name
    points = expand(study, out, overrides, seeds)

    def name(s: Settings) -> str:
        return Path(s.out).relative_to(out).as_posix()

    if dry_run:
        return [{"name": name(s), "status": _status(s), "settings": s.to_dict()} for s in points]
    out.mkdir(parents=True, exist_ok=True)
    about = {"name": study.name, "description": study.description, "file": str(study_file), "pca": study.pca}
    _write_atomic(SweepDir(out).study_path, json.dumps({**about, "overrides": overrides or {}}, indent=1))
    gpus = torch.cuda.device_count()
    if parallel is None:
        parallel = gpus if gpus > 1 and all(s.device in ("auto", "cuda") for s in points) else 1
    status = {s.out: _status(s) for s in points}
    todo = [s for s in points if status[s.out] not in ("done", ELSEWHERE)]
    for s in points:
        if s not in todo:
            log.info("%s: %s, skipped", name(s), "finished earlier" if status[s.out] == "done" else ELSEWHERE)
    results = _train_points(todo, parallel, gpus)
    # a second look at what others held: a run whose process died since is this one's to resume
    retry = [s for s in points if results.get(s.out, (None,))[0] == ELSEWHERE or s not in todo]
    results |= _train_points([s for s in retry if _status(s) not in ("done", ELSEWHERE)], parallel, gpus)
    return _record(out, study.name, points, results, name)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _record(
    out: Path, study: str, points: list[Settings], results: dict[str, tuple[str, str | None]], name: Any
) -> list[dict[str, Any]]:
    """sweep.json and the tables, from each run's own state (another process may own a run), written by one
    process of the study at a time. The states are read under the study's lock: read before it, a slower
    process would write what it saw over the newer record of one that finished a run since."""
    records = []
    folder = SweepDir(out)
    with FileLock(str(folder.lock_path)):
        for s in points:
            status, error = results.get(s.out, (None, None))
            status = "done" if status == "done" else _status(s)
            if status == "failed" and error:
                log.warning("%s failed: %s", name(s), error)
            records.append({"name": name(s), "status": status, "error": error if status == "failed" else None})
        _write_atomic(folder.record_path, json.dumps({"study": study, "points": records}, indent=1) + "\n")
        if any(r["status"] == "done" for r in records):
            write_tables_and_figures(out)
    return records
