"""Checkpoints as safetensors: loading never unpickles, and every write is atomic.

``<name>.safetensors`` holds the model's state dict (weights and BatchNorm
statistics) and, in its metadata, the run's settings. ``<name>.state.safetensors``
beside it holds what resuming needs: Adam's moments, RNG states, and the
position in training (epoch, batch, step, running sums) as JSON metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .errors import CelebaeError

FORMAT = "celebae-1"


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    os.replace(tmp, path)  # a kill before this line leaves the previous file whole


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
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise CelebaeError(f"checkpoint {path} does not exist") from None
    except (SafetensorError, OSError) as err:
        raise CelebaeError(f"checkpoint {path} is unreadable ({err}); it may be truncated") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise CelebaeError(f"checkpoint {path} does not fit this model: {first[0].strip()}") from None


def _previous(path: Path) -> Path:
    return path.with_name(path.name.replace(".safetensors", ".prev.safetensors"))


def save_state(optimizer: torch.optim.Optimizer, path: Path, position: dict[str, Any]) -> None:
    """Adam's state, the RNG states and ``position`` (JSON-able) into one safetensors file.

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
    meta = {"format": FORMAT, "param_groups": json.dumps(opt["param_groups"]), "position": json.dumps(position)}
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


def load_state(optimizer: torch.optim.Optimizer, path: Path) -> dict[str, Any]:
    """Restore Adam and the RNGs from ``path``; returns the saved position."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except FileNotFoundError:
        raise CelebaeError(f"training state {path} does not exist; the run cannot be resumed") from None
    except (SafetensorError, OSError) as err:
        raise CelebaeError(f"training state {path} is unreadable ({err})") from None
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
