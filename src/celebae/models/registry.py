"""The model registry: ``@register_model`` over a builder makes ``--model NAME``; the builder's signature is the
model's settings and defaults, which ``Settings`` and the CLI pass through by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

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

    @property
    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in inspect.signature(self.builder).parameters.items()}

    def check(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with None dropped (the model's default), or a one-line error for a wrong argument."""
        unknown = sorted(set(kwargs) - set(self.defaults))
        if unknown:
            raise CelebaeError(
                f"model {self.name!r} does not take {', '.join(unknown)}; it takes {', '.join(self.defaults)}"
            )
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        for key, value in kwargs.items():
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise CelebaeError(f"{key} must be a positive integer, got {value}")
        return kwargs


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str, description: str, reported_params: int | None = None, small: dict[str, Any] | None = None
) -> Callable[[Callable[..., Autoencoder]], Callable[..., Autoencoder]]:
    """Decorator: ``@register_model("conv", "Model 1 ...")`` over a builder makes ``--model conv``."""

    def add(builder: Callable[..., Autoencoder]) -> Callable[..., Autoencoder]:
        MODELS[name] = ModelSpec(name, description, builder, reported_params, small or {})
        return builder

    return add


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise CelebaeError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, **kwargs: Any) -> Autoencoder:
    """Build a registered autoencoder: ``build_model("conv", nf=64)``, ``build_model("pool", nf=16)``."""
    spec = model_spec(name)
    kwargs = spec.check(kwargs)
    try:
        return spec.builder(**kwargs)
    except (TypeError, ValueError) as err:
        raise CelebaeError(str(err) if isinstance(err, ValueError) else f"model {name!r}: {err}") from None


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (BatchNorm's running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
