"""The pieces both architectures are built from: the stages (kernel 4, no bias, BatchNorm with PyTorch's
defaults), the two code layers computed as the matrix products they are, and ``Autoencoder``, an
encoder/decoder pair with a flat code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.images import SIZE


class CodeConv2d(nn.Conv2d):
    """The last encoder convolution: a 4×4 kernel over a 4×4 input with no padding, so one output
    pixel, which is a matrix product; computed as one. oneDNN runs this shape at about a seventh of its
    matrix-product speed (benchmarks/RESULTS.md). Same weights, same result up to rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.kernel_size or (self.padding, self.dilation, self.groups) != ((0, 0), (1, 1), 1):
            return super().forward(x)
        return F.linear(x.flatten(1), self.weight.flatten(1), self.bias)[:, :, None, None]


class CodeConvTranspose2d(nn.ConvTranspose2d):
    """The first decoder layer: a transposed 4×4 convolution of the 1×1 code, i.e. the code times the
    weight matrix, reshaped to 4×4; computed as that product (see ``CodeConv2d``)."""

    def forward(self, z: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        plain = (self.padding, self.output_padding, self.dilation, self.groups) == ((0, 0), (0, 0), (1, 1), 1)
        if z.shape[-2:] != (1, 1) or not plain or output_size is not None:
            return super().forward(z, output_size)
        y = (z.flatten(1) @ self.weight.flatten(1)).view(z.shape[0], self.out_channels, *self.kernel_size)
        return y if self.bias is None else y + self.bias[:, None, None]


NORMS = ("batch", "group")


def norm_layer(channels: int, norm: str = "batch") -> nn.Module:
    """BatchNorm (the report's) or GroupNorm (statistics per image: no batch dependence, the same in training
    and evaluation), 8 groups or fewer where the channels are few."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def down(c_in: int, c_out: int, slope: float, stride: int = 2, padding: int = 1, norm: str = "batch") -> nn.Sequential:
    conv = CodeConv2d if (stride, padding) == (1, 0) else nn.Conv2d
    return nn.Sequential(
        conv(c_in, c_out, 4, stride, padding, bias=False),
        norm_layer(c_out, norm),
        nn.LeakyReLU(slope, inplace=slope >= 0),  # in place, a negative slope would break the backward pass
    )


def up(c_in: int, c_out: int, stride: int = 2, padding: int = 1, norm: str = "batch") -> nn.Sequential:
    conv = CodeConvTranspose2d if (stride, padding) == (1, 0) else nn.ConvTranspose2d
    return nn.Sequential(
        conv(c_in, c_out, 4, stride, padding, bias=False),
        norm_layer(c_out, norm),
        nn.ReLU(inplace=True),
    )


def to_rgb(c_in: int) -> nn.Sequential:
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
