"""Checkpoints as safetensors: loading never unpickles, and every write is atomic.

``<name>.safetensors`` holds the model's state dict (weights and BatchNorm
statistics) and, in its metadata, the run's settings. ``<name>.state.safetensors``
beside it holds what resuming needs: Adam's moments, RNG states, and the
position in training (epoch, batch, step, running sums) as JSON metadata.
Every file's metadata carries the SHA-256 of its tensor data, checked on every load: a flipped byte is
a clear error, never a silently wrong model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, safe_open, save_file

from ..errors import CelebaeError

FORMAT = "celebae-1"
_UNSET_DIGEST = "0" * 64  # written first, then replaced in place by the digest (same length, same header size)


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
            tmp,
            metadata={**metadata, "sha256": _UNSET_DIGEST},
        )
        _seal(tmp)
        os.replace(tmp, path)  # a kill before this line leaves the previous file whole
    except (OSError, SafetensorError) as err:
        reason = getattr(err, "strerror", None) or str(err).strip()
        found = re.search(r'message: "([^"]+)"', reason)  # safetensors wraps the OS error in Rust's debug text
        reason = found.group(1) if found else reason
        raise CelebaeError(f"could not write {path} ({reason}); any previous checkpoint there is intact") from None
    finally:
        tmp.unlink(missing_ok=True)


def _seal(path: Path) -> None:
    """Write the SHA-256 of the file's tensor data into its header, in place, and flush it to disk."""
    with open(path, "r+b") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = f.read(header_len)
        digest = hashlib.sha256()
        while chunk := f.read(1 << 24):
            digest.update(chunk)
        at = header.index(_UNSET_DIGEST.encode())
        f.seek(8 + at)
        f.write(digest.hexdigest().encode())
        f.flush()
        os.fsync(f.fileno())


def _load_checked(path: Path, what: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file whose data match the digest in its header."""
    try:
        blob = path.read_bytes()
        header_len = int.from_bytes(blob[:8], "little")
        meta = json.loads(blob[8 : 8 + header_len]).get("__metadata__") or {}
        tensors = load(blob)
    except FileNotFoundError:
        raise CelebaeError(f"{what} {path} does not exist") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise CelebaeError(f"{what} {path} is unreadable ({err}); it may be truncated") from None
    stored = meta.get("sha256")
    if stored is not None and hashlib.sha256(memoryview(blob)[8 + header_len :]).hexdigest() != stored:
        raise CelebaeError(
            f"{what} {path} is corrupt: its data do not match the checksum stored with it; "
            "use the run's other checkpoint (--checkpoint best/last) or train again"
        )
    return tensors, meta


def save_weights(model: torch.nn.Module, path: Path, settings: dict[str, Any], position: dict[str, Any]) -> None:
    meta = {"format": FORMAT, "settings": json.dumps(settings), "position": json.dumps(position)}
    _atomic_save(model.state_dict(), path, meta)


def read_metadata(path: Path) -> dict[str, Any]:
    """The settings and position stored in a weights file."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except FileNotFoundError:
        raise CelebaeError(f"checkpoint {path} does not exist") from None
    except (SafetensorError, OSError) as err:
        raise CelebaeError(f"checkpoint {path} is unreadable ({err}); it may be truncated") from None
    if meta.get("format") != FORMAT:
        raise CelebaeError(f"{path} is not a celebae checkpoint (format {meta.get('format')!r})")
    return {"settings": json.loads(meta["settings"]), "position": json.loads(meta["position"])}


def load_weights(model: torch.nn.Module, path: Path) -> None:
    state, _ = _load_checked(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise CelebaeError(f"checkpoint {path} does not fit this model: {first[0].strip()}") from None


def _previous(path: Path) -> Path:
    return path.with_name(path.name.replace(".safetensors", ".prev.safetensors"))


def save_state(
    optimizer: torch.optim.Optimizer,
    path: Path,
    position: dict[str, Any],
    extra: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Adam's state, the RNG states and ``position`` (JSON-able) into one safetensors file, with whatever
    else resuming needs: ``extra`` (JSON-able: the schedule's state) and ``extra_tensors`` (the EMA weights).

    The state is saved before the weights; the one it replaces is kept as ``*.prev.safetensors``, so a
    kill between the two saves leaves a state that matches the weights on disk (``matching_state``).
    """
    opt = optimizer.state_dict()
    tensors = {
        f"optim.{pid}.{key}": value if torch.is_tensor(value) else torch.tensor(value)
        for pid, state in opt["state"].items()
        for key, value in state.items()
    }
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    tensors.update({f"extra.{k}": v.detach().contiguous() for k, v in (extra_tensors or {}).items()})
    meta = {"format": FORMAT, "param_groups": json.dumps(opt["param_groups"]), "position": json.dumps(position)}
    meta["extra"] = json.dumps(extra or {})
    if path.exists():
        os.replace(path, _previous(path))
    _atomic_save(tensors, path, meta)


def matching_state(weights: Path, state: Path) -> Path:
    """The state file (current or previous) saved at the same step as ``weights``."""
    step = read_metadata(weights)["position"]["step"]
    for candidate in (state, _previous(state)):
        try:
            with safe_open(str(candidate), "pt") as f:
                if json.loads((f.metadata() or {})["position"])["step"] == step:
                    return candidate
        except (FileNotFoundError, SafetensorError, OSError, KeyError):
            continue
    raise CelebaeError(
        f"no training state in {state.parent} matches {weights.name} (step {step}); "
        "the run can be evaluated but not resumed"
    )


def read_extras(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The ``extra`` and ``extra_tensors`` a state file was saved with (empty for an older file)."""
    tensors, meta = _load_checked(path, "training state")
    more = {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
    return json.loads(meta.get("extra") or "{}"), more


def load_state(optimizer: torch.optim.Optimizer, path: Path) -> dict[str, Any]:
    """Restore Adam and the RNGs from ``path``; returns the saved position."""
    tensors, meta = _load_checked(path, "training state")
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    # The moments come back from the file row-major; give them their parameter's layout (channels_last
    # weights). Fused Adam walks parameter, gradient and moments as flat memory: on a CPU it silently
    # mixes up elements whose layouts differ, on CUDA it refuses them.
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    optimizer.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return json.loads(meta["position"])
