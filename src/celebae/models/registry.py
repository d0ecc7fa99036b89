"""The model registry: ``@register_model`` over a builder makes ``--model NAME``; the builder's signature is the
model's settings and defaults, which ``Settings`` and the CLI pass through by name."""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data.images import SIZE
from ..errors import CelebaeError
from .layers import Autoencoder


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, whose keyword arguments and defaults are the model's settings."""

    name: str
    description: str
    builder: Callable[..., Autoencoder]
    reported_params: int | None = None  # parameters at the defaults, where the report or its code gives them
    small: dict[str, Any] = field(default_factory=dict)  # arguments of a test-sized model
    image_sizes: tuple[int, ...] = (SIZE,)  # the sides S of the S×S images the model is defined for

    @property
    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in inspect.signature(self.builder).parameters.items()}

    def check(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with None dropped (the model's default), or a one-line error for a wrong argument: one the
        model does not take, a number of the wrong kind, or an image size it is not defined for."""
        unknown = sorted(set(kwargs) - set(self.defaults))
        if unknown:
            raise CelebaeError(
                f"model {self.name!r} does not take {', '.join(unknown)}; it takes {', '.join(self.defaults)}"
            )
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        hints = typing.get_type_hints(self.builder)
        for key, value in kwargs.items():
            kinds = typing.get_args(hints.get(key)) or (hints.get(key),)
            if int in kinds and (isinstance(value, bool) or not isinstance(value, int)):
                raise CelebaeError(f"{key} must be a whole number, got {value!r} (model {self.name})")
            if float in kinds and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise CelebaeError(f"{key} must be a number, got {value!r} (model {self.name})")
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise CelebaeError(f"{key} must be a positive integer, got {value}")
        size = kwargs.get("image_size", SIZE)
        if size not in self.image_sizes:
            sizes = ", ".join(map(str, self.image_sizes))
            others = ", ".join(m.name for m in MODELS.values() if size in m.image_sizes) or "none"
            raise CelebaeError(
                f"image_size must be one of {sizes}, got {size}: model {self.name!r} ({self.description}) is defined "
                f"for those; models defined for {size}: {others}"
            )
        return kwargs

    def weight_bytes(self, kwargs: dict[str, Any]) -> int:
        """Bytes of the model's weights and buffers, counted on the meta device (nothing allocated)."""
        with torch.device("meta"):
            model = self.builder(**kwargs)
        return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    description: str,
    reported_params: int | None = None,
    small: dict[str, Any] | None = None,
    image_sizes: tuple[int, ...] = (SIZE,),
) -> Callable[[Callable[..., Autoencoder]], Callable[..., Autoencoder]]:
    """Decorator: ``@register_model("conv", "Model 1 ...")`` over a builder makes ``--model conv``."""

    def add(builder: Callable[..., Autoencoder]) -> Callable[..., Autoencoder]:
        MODELS[name] = ModelSpec(name, description, builder, reported_params, small or {}, tuple(image_sizes))
        return builder

    return add


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise CelebaeError(f"unknown model {name!r} (--model, or model in a config); choose one of {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, copies: int = 1, **kwargs: Any) -> Autoencoder:
    """Build a registered autoencoder: ``build_model("conv", nf=64)``, ``build_model("pool", nf=16)``.

    Its size is counted first, without allocating: a model whose weights (× ``copies``: training keeps
    gradients and Adam's two moments too) would not fit in the memory available is refused, naming its
    settings."""
    spec = model_spec(name)
    kwargs = check_fits(name, kwargs, copies)
    try:
        return spec.builder(**kwargs)
    except (TypeError, ValueError) as err:
        raise CelebaeError(str(err) if isinstance(err, ValueError) else f"model {name!r}: {err}") from None


def check_fits(name: str, kwargs: dict[str, Any], copies: int = 1) -> dict[str, Any]:
    """The model's arguments, checked (``ModelSpec.check``), if ``copies`` of its weights fit in the memory
    available; else a one-line error naming its settings. Counted on the meta device: nothing is allocated."""
    spec = model_spec(name)
    kwargs = spec.check(kwargs)
    try:
        need = copies * spec.weight_bytes(kwargs)
    except (TypeError, ValueError) as err:
        raise CelebaeError(str(err) if isinstance(err, ValueError) else f"model {name!r}: {err}") from None
    have = available_memory()
    if need > have:
        given = ", ".join(f"{k} {v}" for k, v in kwargs.items() if isinstance(v, int)) or "its defaults"
        raise CelebaeError(
            f"model {name} with {given} needs {need / 2**30:,.1f} GiB for its weights"
            f"{' and training state' if copies > 1 else ''}, more than the {have / 2**30:,.1f} GiB of memory "
            "available; choose a smaller nf or code_size"
        )
    return kwargs


def available_memory() -> int:
    """Bytes of memory this machine can still give (Linux: MemAvailable; else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (BatchNorm's running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
