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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CelebaeError
from ..files import parse_json, regular_file

FORMAT = "celebae-1"
MAX_HEADER = 100_000_000  # the safetensors format's own limit on a header
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


@dataclass
class Header:
    """A safetensors file's header: its tensors (name → dtype, shape, data_offsets), metadata and layout."""

    tensors: dict[str, dict[str, Any]]
    meta: dict[str, str]
    data_start: int  # the tensor data follow the header here, to the end of the file


def read_header(path: Path, what: str = "checkpoint") -> Header:
    """The header of a safetensors file, checked against the file before any data are read: a regular file,
    a header within the file, and data exactly as long as the header declares (no truncation, no padding)."""

    def bad(reason: str) -> CelebaeError:
        return CelebaeError(f"{what} {path} is unreadable ({reason}); it may be truncated or not a checkpoint")

    try:
        with open(regular_file(path, what), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            header_len = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < header_len <= min(MAX_HEADER, size - 8):
                raise bad("no safetensors header")
            header = parse_json(f.read(header_len), f"{what} {path}'s header")
    except FileNotFoundError:
        raise CelebaeError(f"{what} {path} does not exist") from None
    meta = header.pop("__metadata__", None) or {}
    try:
        ends = [int(t["data_offsets"][1]) for t in header.values()]
    except (TypeError, KeyError, IndexError, ValueError):
        raise bad("a tensor without data offsets") from None
    data = size - 8 - header_len
    if max(ends, default=0) != data:
        raise bad(f"its header declares {max(ends, default=0):,} bytes of tensor data, the file holds {data:,}")
    if not isinstance(meta, dict):
        raise bad("metadata that is not a table")
    return Header(header, meta, 8 + header_len)


def _check_digest(path: Path, header: Header, what: str) -> None:
    """The SHA-256 of the tensor data, read in chunks, against the one in the header."""
    stored = header.meta.get("sha256")
    if stored is None:
        raise CelebaeError(
            f"{what} {path} carries no checksum (celebae writes one into every file), so it cannot be trusted; "
            "export or train it again"
        )
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(header.data_start)
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    if digest.hexdigest() != stored:
        raise CelebaeError(
            f"{what} {path} is corrupt: its data do not match the checksum stored with it; "
            "use the run's other checkpoint (--checkpoint best/last) or train again"
        )


def _load_checked(
    path: Path, what: str = "checkpoint", expected: dict[str, tuple[int, ...]] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file whose data match the digest in its header. With ``expected``
    (name → shape), the header must declare exactly those tensors, checked before any data are read."""
    header = read_header(path, what)
    if expected is not None:
        declared = {name: tuple(t.get("shape", ())) for name, t in header.tensors.items()}
        if declared != expected:
            wrong = sorted(k for k in declared if k in expected and declared[k] != expected[k])
            diff = wrong or sorted(set(declared) ^ set(expected))
            name = diff[0]
            detail = f"{name}: {declared.get(name, 'missing')} in the file, {expected.get(name, 'none')} in the model"
            raise CelebaeError(f"{what} {path} does not fit this model ({detail}); check its settings")
    _check_digest(path, header, what)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CelebaeError(f"{what} {path} is unreadable ({err}); it may be truncated") from None
    return tensors, header.meta


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, Any]) -> None:
    """Any named tensors and a JSON-able record into one atomic, checksummed safetensors file."""
    _atomic_save(tensors, path, {"format": FORMAT, "record": json.dumps(meta)})


def load_tensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, record) of a file ``save_tensors`` wrote, its checksum checked."""
    tensors, meta = _load_checked(path, what)
    if meta.get("format") != FORMAT:
        raise CelebaeError(f"{what} {path} is not a celebae file (format {meta.get('format')!r})")
    return tensors, parse_json(meta.get("record", ""), f"the record stored in {path}")


def save_weights(model: torch.nn.Module, path: Path, settings: dict[str, Any], position: dict[str, Any]) -> None:
    meta = {"format": FORMAT, "settings": json.dumps(settings), "position": json.dumps(position)}
    _atomic_save(model.state_dict(), path, meta)


def read_metadata(path: Path) -> dict[str, Any]:
    """The settings and position stored in a weights file."""
    meta = read_header(path).meta
    if meta.get("format") != FORMAT:
        raise CelebaeError(f"{path} is not a celebae checkpoint (format {meta.get('format')!r})")
    return {key: parse_json(meta.get(key, ""), f"the {key} stored in {path}") for key in ("settings", "position")}


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """The weights in ``path`` into ``model``; the file's tensors are checked against the model's (names and
    shapes) from its header, and its checksum, before its data are read."""
    state, _ = _load_checked(path, expected={k: tuple(v.shape) for k, v in model.state_dict().items()})
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
    weights: Path | None = None,
) -> None:
    """Adam's state, the RNG states and ``position`` (JSON-able) into one safetensors file, with whatever
    else resuming needs: ``extra`` (JSON-able: the schedule's state) and ``extra_tensors`` (the EMA weights).

    The state is saved before the weights; the one it replaces is kept as ``*.prev.safetensors`` where it
    matches the weights on disk (``weights``), so a kill between the two saves, or in a second attempt after
    such a kill, leaves a state that matches them (``matching_state``).
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
    if path.exists() and (weights is None or not weights.exists() or _position(path) == _position(weights)):
        os.replace(path, _previous(path))  # else the previous state is the one that matches: keep it
    _atomic_save(tensors, path, meta)


def _position(path: Path) -> dict[str, Any] | None:
    """The position a checkpoint file was saved at (None where it has none or cannot be read)."""
    try:
        return parse_json(read_header(path, "training state").meta.get("position", ""), "position")
    except (CelebaeError, OSError):
        return None


def matching_state(weights: Path, state: Path) -> Path:
    """The state file (current or previous) saved with ``weights``: the same position, not just the same step
    (a mid-epoch save at an epoch's last step and the epoch's own save share their step)."""
    position = read_metadata(weights)["position"]
    for candidate in (state, _previous(state)):
        if _position(candidate) == position:
            return candidate
    raise CelebaeError(
        f"no training state in {state.parent} matches {weights.name} (step {position.get('step')}); "
        "the run can be evaluated but not resumed"
    )


def read_extras(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The ``extra`` and ``extra_tensors`` a state file was saved with (empty for an older file)."""
    tensors, meta = _load_checked(path, "training state")
    more = {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
    return parse_json(meta.get("extra") or "{}", f"the extra state in {path}"), more


def load_state(optimizer: torch.optim.Optimizer, path: Path) -> dict[str, Any]:
    """Restore Adam and the RNGs from ``path``; returns the saved position."""
    tensors, meta = _load_checked(path, "training state")
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    groups = parse_json(meta.get("param_groups", ""), f"the optimiser groups in {path}", list)
    optimizer.load_state_dict({"state": state, "param_groups": groups})
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
    return parse_json(meta.get("position", ""), f"the position in {path}")
