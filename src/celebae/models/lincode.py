"""Model 3, ``lincode`` (``LinearCodeAutoencoder``): Model 1's stages with a linear code, for quality per unit of
compute (the report's two models stay exactly as they are)::

    3×128² ─Conv s2→ a×64² ─→ 2a×32² ─→ 4a×16² ─→ 8a×8² ─→ 16a×4² ─Linear (4×4 conv, bias)→ K     (the code)
    K ─Linear (4×4 transposed conv)→ 16a×4² ─→ 8a×8² ─→ 4a×16² ─→ 2a×32² ─→ a×64² ─ConvT s2→ 3×128², tanh
            (stages: conv + norm + LeakyReLU down, transposed conv + norm + ReLU up, as Model 1's)

What differs from Model 1, and why:

- The code is linear. Model 1 ends its encoder with BatchNorm and LeakyReLU: every code number is
  normalised over the batch (the code of an image depends on its batch-mates in training) and its negative
  half is squashed to a fifth. Removed, the bottleneck can carry as much as PCA's coefficients do: on the
  CelebA sample at 32 numbers and 8 epochs, 17.39 dB against Model 1's 16.19 (issue 24's table; one seed).
- ``norm``: ``batch`` (Model 1's) or ``group`` (GroupNorm: per image, so training and evaluation compute
  the same function, and small batches do not add noise).
- Defaults for small data: width ``nf`` 16 (Model 1's smallest); its other sizes follow Model 1's rule
  (stride-2 stages to 4×4, widths doubling to 16a; ``image_size`` 32 to 512, any ``code_size``).
"""

from __future__ import annotations

from torch import nn

from ..data.images import SIZE
from .conv import IMAGE_SIZES, MAX_WIDTH_MULTIPLE
from .layers import Autoencoder, CodeConv2d, down, to_rgb, up
from .registry import register_model


class LinearCodeAutoencoder(Autoencoder):
    """Model 1's stages down to 16a×4×4, a linear map to the K-number code and back, then Model 1's decoder."""

    def __init__(self, nf: int = 16, code: int = 256, image_size: int = SIZE, norm: str = "batch", slope: float = 0.2):
        stages = int(image_size).bit_length() - 3  # halvings from S to 4
        widths = [nf * min(2**i, MAX_WIDTH_MULTIPLE) for i in range(stages)]
        encoder = nn.Sequential(
            down(3, widths[0], slope, norm=norm),
            *(down(c_in, c_out, slope, norm=norm) for c_in, c_out in zip(widths, widths[1:], strict=False)),
            CodeConv2d(widths[-1], code, 4, 1, 0, bias=True),  # linear: no normalisation, no activation
        )
        decoder = nn.Sequential(
            up(code, widths[-1], stride=1, padding=0, norm=norm),
            *(up(c_in, c_out, norm=norm) for c_in, c_out in zip(widths[:0:-1], widths[-2::-1], strict=True)),
            to_rgb(widths[0]),
        )
        super().__init__(encoder, decoder, (code, 1, 1))
        self.image_shape = (3, image_size, image_size)


@register_model(
    "lincode",
    "Model 1's stages with a linear code (no BatchNorm or LeakyReLU on it); norm batch or group",
    small={"nf": 4},
    image_sizes=IMAGE_SIZES,
)
def lincode(
    nf: int = 16, image_size: int = SIZE, code_size: int = 256, norm: str = "batch", slope: float = 0.2
) -> Autoencoder:
    """Model 3: ``norm`` is ``batch`` or ``group``."""
    return LinearCodeAutoencoder(nf, code_size, image_size, norm, slope)
