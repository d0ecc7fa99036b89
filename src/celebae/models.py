"""The report's two convolutional autoencoders, layer by layer.

Both map a 3×128×128 image in [-1, 1] to a 256-number code and back. The
reading implemented here is ``docs/architecture.md`` (it matches the authors'
30,685,440 parameters at nf = 64); every convolution has kernel 4 and no bias,
BatchNorm uses PyTorch's defaults.

Model 1, ``conv`` (``ConvAutoencoder``), widths a = ``nf_enc``, b = ``nf_dec``::

    3×128² ─Conv s2→ a×64² ─→ 2a×32² ─→ 4a×16² ─→ 8a×8² ─→ 16a×4² ─Conv s1 p0→ 256×1²   (code)
    256×1² ─ConvT s1 p0→ 16b×4² ─→ 8b×8² ─→ 4b×16² ─→ 2b×32² ─→ b×64² ─ConvT s2→ 3×128², tanh
            (encoder: Conv + BN + LeakyReLU;  decoder: ConvT + BN + ReLU, none after the last)

Model 2, ``pool`` (``PoolAutoencoder``), width c (the report's c = 16 gives a 256 code)::

    3×128² ─Conv→ c×64² ─MaxPool→ c×32² ─Conv→ 2c×16² ─MaxPool→ 2c×8² ─Conv→ 4c×4² ─MaxPool→ 4c×2²  (code, 16c)
    4c×2² ─Up×2→ 4c×4² ─ConvT→ 2c×8² ─Up×2→ 2c×16² ─ConvT→ c×32² ─Up×2→ c×64² ─ConvT→ 3×128², tanh

``encode`` returns the code flattened to N×``code_size`` for both models, so
codes from either can be used as feature vectors the same way.

Other sizes (``conv``): an S×S image (S a power of two, 32 to 512) and a K-number code follow the report's
rule. Stride-2 stages halve the image until it is 4×4, the widths doubling at each stage but capped at 16a
(the report's largest, so 256- and 512-pixel models add stages of 16a instead of 32a and 64a: width, and
memory, stay those of the report's nf); then the 4×4 convolution to K. The decoder mirrors it::

    S = 64:   3×64² → a×32² → 2a×16² → 4a×8² → 8a×4² → K×1²
    S = 256:  3×256² → a×128² → 2a×64² → 4a×32² → 8a×16² → 16a×8² → 16a×4² → K×1²

At S = 128 and K = 256 this is the report's Model 1, layer for layer. ``pool`` is defined for 128×128 only
(three conv + pool stages to its 2×2 code, whose size is 16c): other sizes are refused.

Models register themselves (``@register_model``) and own their keyword arguments: the builder's
signature is the model's settings and defaults, which ``Settings`` and the CLI pass through by name
(``--nf``, ``--slope``, or ``--model-arg NAME=VALUE`` for any other). To add a model, write its
builder here; ``tests/test_models.py`` checks every registered model against the same contract.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data.images import SIZE
from .errors import CelebaeError

IMAGE_SIZES = (32, 64, 128, 256, 512)
MAX_WIDTH_MULTIPLE = 16  # widths double per stage up to 16a, the report's largest


class CodeConv2d(nn.Conv2d):
    """The last encoder convolution: a 4×4 kernel over a 4×4 input with no padding, so one output
    pixel, which is a matrix product; computed as one. oneDNN runs this shape at about a seventh of its
    matrix-product speed (benchmarks/RESULTS.md). Same weights, same result up to rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.kernel_size or (self.padding, self.dilation, self.groups) != ((0, 0), (1, 1), 1):
            return super().forward(x)
        return F.linear(x.flatten(1), self.weight.flatten(1))[:, :, None, None]


class CodeConvTranspose2d(nn.ConvTranspose2d):
    """The first decoder layer: a transposed 4×4 convolution of the 1×1 code, i.e. the code times the
    weight matrix, reshaped to 4×4; computed as that product (see ``CodeConv2d``)."""

    def forward(self, z: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        plain = (self.padding, self.output_padding, self.dilation, self.groups) == ((0, 0), (0, 0), (1, 1), 1)
        if z.shape[-2:] != (1, 1) or not plain or output_size is not None:
            return super().forward(z, output_size)
        return (z.flatten(1) @ self.weight.flatten(1)).view(z.shape[0], self.out_channels, *self.kernel_size)


def _down(c_in: int, c_out: int, slope: float, stride: int = 2, padding: int = 1) -> nn.Sequential:
    conv = CodeConv2d if (stride, padding) == (1, 0) else nn.Conv2d
    return nn.Sequential(
        conv(c_in, c_out, 4, stride, padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(slope, inplace=slope >= 0),  # in place, a negative slope would break the backward pass
    )


def _up(c_in: int, c_out: int, stride: int = 2, padding: int = 1) -> nn.Sequential:
    conv = CodeConvTranspose2d if (stride, padding) == (1, 0) else nn.ConvTranspose2d
    return nn.Sequential(
        conv(c_in, c_out, 4, stride, padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _to_rgb(c_in: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, 3, 4, 2, 1, bias=False), nn.Tanh())


class Autoencoder(nn.Module):
    """An encoder/decoder pair with a flat code of ``code_size`` numbers."""

    code_shape: tuple[int, int, int]
    image_shape: tuple[int, int, int] = (3, SIZE, SIZE)

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential, code_shape: tuple[int, int, int]):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.code_shape = code_shape

    @property
    def code_size(self) -> int:
        c, h, w = self.code_shape
        return c * h * w

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """N×3×128×128 images in [-1, 1] → N×code_size codes."""
        return self.encoder(x).flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """N×code_size codes → N×3×128×128 images in [-1, 1]."""
        return self.decoder(z.reshape(z.shape[0], *self.code_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class ConvAutoencoder(Autoencoder):
    """Model 1: strided convolutions down to 4×4 (five of them at 128×128, to 16a×4×4), one 4×4 convolution
    to the code; the decoder mirrors it."""

    def __init__(self, nf_enc: int = 64, nf_dec: int = 64, slope: float = 0.2, code: int = 256, image_size: int = SIZE):
        stages = int(image_size).bit_length() - 3  # halvings from S to 4
        if image_size not in IMAGE_SIZES:
            raise ValueError(f"image_size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {image_size}")
        enc = [nf_enc * min(2**i, MAX_WIDTH_MULTIPLE) for i in range(stages)]
        dec = [nf_dec * min(2**i, MAX_WIDTH_MULTIPLE) for i in range(stages)]
        encoder = nn.Sequential(
            _down(3, enc[0], slope),
            *(_down(c_in, c_out, slope) for c_in, c_out in zip(enc, enc[1:], strict=False)),
            _down(enc[-1], code, slope, stride=1, padding=0),
        )
        decoder = nn.Sequential(
            _up(code, dec[-1], stride=1, padding=0),
            *(_up(c_in, c_out) for c_in, c_out in zip(dec[:0:-1], dec[-2::-1], strict=True)),
            _to_rgb(dec[0]),
        )
        super().__init__(encoder, decoder, (code, 1, 1))
        self.image_shape = (3, image_size, image_size)


class PoolAutoencoder(Autoencoder):
    """Model 2: Model 1 with every other layer swapped for max pooling / nearest upsampling."""

    def __init__(self, nf: int = 16, slope: float = 0.2):
        c = nf
        encoder = nn.Sequential(
            _down(3, c, slope),
            nn.MaxPool2d(2),
            _down(c, 2 * c, slope),
            nn.MaxPool2d(2),
            _down(2 * c, 4 * c, slope),
            nn.MaxPool2d(2),
        )
        decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            _up(4 * c, 2 * c),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _up(2 * c, c),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _to_rgb(c),
        )
        super().__init__(encoder, decoder, (4 * c, 2, 2))


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


@register_model("conv", "Model 1, strided convolutions", reported_params=30_685_440, small={"nf": 8})
def conv(
    nf: int = 64,
    nf_enc: int | None = None,
    nf_dec: int | None = None,
    slope: float = 0.2,
    image_size: int = SIZE,
    code_size: int = 256,
) -> Autoencoder:
    """Model 1; ``nf_enc`` / ``nf_dec`` set the encoder's and decoder's widths apart (default ``nf``)."""
    return ConvAutoencoder(nf_enc or nf, nf_dec or nf, slope, code_size, image_size)


@register_model("pool", "Model 2, pooling and upsampling", reported_params=83_776, small={"nf": 4})
def pool(nf: int = 16, slope: float = 0.2, image_size: int = SIZE, code_size: int | None = None) -> Autoencoder:
    """Model 2; one width ``nf``, whose code is 16·nf numbers (the report's 16 gives 256), at 128×128 only."""
    if image_size != SIZE:
        raise ValueError(
            f"model 'pool' is the report's Model 2, defined for {SIZE}×{SIZE} images (three conv + pool stages "
            f"to a 2×2 code), not {image_size}×{image_size}; use model conv for other sizes"
        )
    if code_size not in (None, 16 * nf):
        raise ValueError(f"model 'pool' has a code of 16·nf numbers ({16 * nf} at nf {nf}); set nf = code_size / 16")
    return PoolAutoencoder(nf, slope)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (BatchNorm's running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
