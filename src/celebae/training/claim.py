"""Claiming a run directory: one writer at a time, and the rules for starting or resuming a run in it.

A run is written by the one process that holds its lock (``RunLock``: an OS file lock through ``filelock``,
held from the checks to the end of the run and released by the kernel however the process ends, ``kill -9``
included, so a dead writer never blocks the next). A run is never written over without ``overwrite``; a
resumed one keeps the settings that define it (those outside ``RESUMABLE``); the directory must be one
that can be written. Under torchrun rank 0 claims for the job and every rank agrees before any work.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import filelock

from ..errors import CelebaeError
from ..files import read_json
from .distributed import Processes
from .rundir import RunDir
from .settings import RESUMABLE, Settings


class RunHeld(CelebaeError):
    """Another process holds the run directory."""


class RunLock:
    """The lock of one run directory. Re-entrant within a process (a sweep that holds a run can train it)."""

    def __init__(self, run: RunDir):
        self.run = run
        self.lock = filelock.FileLock(str(run.lock_path), is_singleton=True)

    def acquire(self) -> RunLock:
        """Take the lock now or raise ``RunHeld`` naming its holder; never waits."""
        self.run.path.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire(blocking=False)
        except filelock.Timeout:
            raise RunHeld(
                f"{self.run.path} is in use by {describe_holder(self.run)}; wait for it to finish, "
                "or stop that process (a killed one releases it)"
            ) from None
        if self.lock.lock_counter == 1:  # first hold in this process: say who holds it
            holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            tmp = self.run.lock_holder_path.with_name(f".holder.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(holder))
            os.replace(tmp, self.run.lock_holder_path)
        return self

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock now (asked without taking it for long or writing anything)."""
        if self.lock.is_locked:  # this process holds it
            return False
        try:
            self.lock.acquire(blocking=False)
        except filelock.Timeout:
            return True
        self.lock.release()
        return False

    def release(self) -> None:
        if self.lock.is_locked:
            if self.lock.lock_counter == 1:
                self.run.lock_holder_path.unlink(missing_ok=True)
            self.lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def describe_holder(run: RunDir) -> str:
    """ "pid 1234 on host since 2026-12-01 15:20:03", or "another process" where the holder did not say."""
    try:
        h = read_json(run.lock_holder_path, "lock holder")
        return f"pid {h['pid']} on {h['host']} since {h['since']}"
    except (OSError, CelebaeError, KeyError):
        return "another process"


# How a run may start in its directory: the one place this is decided (``celebae train`` flags, the demo and
# sweeps all name a start; ``start_mode`` turns auto into one of the others).
STARTS = {
    "new": "start a run; refused where the directory holds one",
    "resume": "continue the run from its last checkpoint; its defining settings must match",
    "overwrite": "remove the run in the directory, then start",
    "auto": "finished: nothing to do; a checkpoint: resume; otherwise start it (again); for requeued jobs",
}


def start_mode(run: RunDir, start: str) -> str:
    """``start`` as new, resume or overwrite, or ``done`` where an auto start finds the run finished."""
    if start not in STARTS:
        raise CelebaeError(f"start must be one of {', '.join(STARTS)}, got {start!r}")
    if start != "auto":
        return start
    if run.state == "finished":
        return "done"
    return "resume" if run.resumable else "overwrite"  # a start that died before its first checkpoint left nothing


def claim(run: RunDir, settings: Settings, mode: str, procs: Processes) -> RunLock | None:
    """Check and take ``run`` for this job before any work (``mode``: new, resume or overwrite): rank 0 locks
    it, checks the rules and clears an overwritten run; every rank then agrees, so all of them fail together
    with one line, or none does."""
    lock, error = None, None
    try:
        check_writable(run)
        if procs.main:
            lock = RunLock(run).acquire()
            check_start(run, settings, mode)
    except CelebaeError as err:
        error = err
    if not procs.all_ok(error is None):
        if lock is not None:
            lock.release()
        raise error or CelebaeError(f"rank 0 could not start the run in {run.path}; its error says why")
    return lock


def check_writable(run: RunDir) -> None:
    """The run directory is a folder (or can become one) that this process can write."""
    if run.path.exists() and not run.path.is_dir():
        raise CelebaeError(f"--out {run.path} is a file; choose a folder for the run")
    existing = next(p for p in (run.path, *run.path.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        reason = "Read-only file system" if _read_only(existing) else "Permission denied"
        raise CelebaeError(f"cannot write the run directory {run.path}: {reason} (at {existing})")


def check_start(run: RunDir, settings: Settings, mode: str) -> None:
    """The rules for (re)using this directory: a run is never written over but by ``overwrite`` (which removes
    its files), a resumed one keeps the settings that define it (those outside ``RESUMABLE``). Called by the
    lock's holder, after ``check_writable``."""
    if mode == "resume":
        _check_resumable(run, settings)
    else:
        _check_free(run, overwrite=mode == "overwrite")


def _check_free(run: RunDir, overwrite: bool) -> None:
    held = run.run_files()
    if held and not overwrite:
        if run.weights("last").exists():
            hint = "pass --resume to continue it, --overwrite to replace it"
        else:
            hint = f"it has no checkpoint to resume ({held[0].name} is there); pass --overwrite to replace it"
        raise CelebaeError(f"{run.path} already holds a run; {hint}, or choose another --out")
    for path in held:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    run.forget()


def _check_resumable(run: RunDir, settings: Settings) -> None:
    if not run.weights("last").exists():
        hint = (
            "to start it again, pass --overwrite instead of --resume"
            if run.run_files()
            else "drop --resume to start it"
        )
        raise CelebaeError(f"nothing to resume in {run.path}: no {run.weights('last').relative_to(run.path)}; {hint}")
    stored = run.read_config().resolved().to_dict()  # a run of an older celebae stored paths as typed
    changed = sorted(k for k, v in settings.to_dict().items() if k not in RESUMABLE and stored.get(k) != v)
    if changed:
        detail = ", ".join(f"{k}: {stored.get(k)!r} → {getattr(settings, k)!r}" for k in changed)
        raise CelebaeError(f"cannot resume {run.path} with different settings ({detail}); start a new --out instead")


def _read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
