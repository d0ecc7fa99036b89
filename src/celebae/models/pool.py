"""Model 2, ``pool`` (``PoolAutoencoder``): Model 1 with every other layer swapped for max pooling / nearest
upsampling, width c (the report's c = 16 gives a 256 code)::

    3×128² ─Conv→ c×64² ─MaxPool→ c×32² ─Conv→ 2c×16² ─MaxPool→ 2c×8² ─Conv→ 4c×4² ─MaxPool→ 4c×2²  (code, 16c)
    4c×2² ─Up×2→ 4c×4² ─ConvT→ 2c×8² ─Up×2→ 2c×16² ─ConvT→ c×32² ─Up×2→ c×64² ─ConvT→ 3×128², tanh

It is defined for 128×128 only (three conv + pool stages to its 2×2 code, whose size is 16c): other sizes are
refused.
"""

from __future__ import annotations

from torch import nn

from ..data.images import SIZE
from .layers import Autoencoder, down, to_rgb, up
from .registry import register_model


class PoolAutoencoder(Autoencoder):
    """Model 2: Model 1 with every other layer swapped for max pooling / nearest upsampling."""

    def __init__(self, nf: int = 16, slope: float = 0.2):
        c = nf
        encoder = nn.Sequential(
            down(3, c, slope),
            nn.MaxPool2d(2),
            down(c, 2 * c, slope),
            nn.MaxPool2d(2),
            down(2 * c, 4 * c, slope),
            nn.MaxPool2d(2),
        )
        decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            up(4 * c, 2 * c),
            nn.Upsample(scale_factor=2, mode="nearest"),
            up(2 * c, c),
            nn.Upsample(scale_factor=2, mode="nearest"),
            to_rgb(c),
        )
        super().__init__(encoder, decoder, (4 * c, 2, 2))


@register_model("pool", "Model 2, pooling and upsampling", reported_params=83_776, small={"nf": 4})
def pool(nf: int = 16, slope: float = 0.2, image_size: int = SIZE, code_size: int | None = None) -> Autoencoder:
    """Model 2; one width ``nf``, whose code is 16·nf numbers (the report's 16 gives 256), at 128×128 only."""
    # image_size is checked by the registry: Model 2 is defined for 128×128 only (three stages to a 2×2 code)
    if code_size not in (None, 16 * nf):
        raise ValueError(f"model 'pool' has a code of 16·nf numbers ({16 * nf} at nf {nf}); set nf = code_size / 16")
    return PoolAutoencoder(nf, slope)
