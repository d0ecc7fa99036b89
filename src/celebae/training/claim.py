"""Claiming a run directory: the rules for starting or resuming a run in it, checked before any work.

A run is never written over without ``overwrite``; a resumed one keeps the settings that define it (those
outside ``RESUMABLE``); the directory must be one that can be written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import CelebaeError
from .rundir import RunDir
from .settings import RESUMABLE, Settings


def check_start(run: RunDir, settings: Settings, resume: bool, overwrite: bool = False) -> None:
    """The rules for (re)using this directory, checked before any work: a run is never written over
    without ``overwrite``, a resumed one keeps the settings that define it (those outside ``RESUMABLE``),
    and the directory must be one that can be written."""
    if run.path.exists() and not run.path.is_dir():
        raise CelebaeError(f"--out {run.path} is a file; choose a folder for the run")
    if not resume:
        _check_free(run, overwrite)
    else:
        _check_resumable(run, settings)
    # writable? asked of the folder itself or the nearest one that exists: nothing is created here, since
    # every process of a DDP job runs these checks at once
    existing = next(p for p in (run.path, *run.path.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        reason = "Read-only file system" if _read_only(existing) else "Permission denied"
        raise CelebaeError(f"cannot write the run directory {run.path}: {reason} (at {existing})")


def _check_free(run: RunDir, overwrite: bool) -> None:
    held = run.run_files()
    if held and not overwrite:
        if run.weights("last").exists():
            hint = "pass --resume to continue it, --overwrite to replace it"
        else:
            hint = f"it has no checkpoint to resume ({held[0].name} is there); pass --overwrite to replace it"
        raise CelebaeError(f"{run.path} already holds a run; {hint}, or choose another --out")
    for path in held:  # every process of a DDP job may do this at once
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
    stored = run.read_config().to_dict()
    changed = sorted(k for k, v in settings.to_dict().items() if k not in RESUMABLE and stored.get(k) != v)
    if changed:
        detail = ", ".join(f"{k}: {stored.get(k)!r} → {getattr(settings, k)!r}" for k in changed)
        raise CelebaeError(f"cannot resume {run.path} with different settings ({detail}); start a new --out instead")


def _read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
