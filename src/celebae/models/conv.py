"""Model 1, ``conv`` (``ConvAutoencoder``): strided convolutions, widths a = ``nf_enc``, b = ``nf_dec``::

    3×128² ─Conv s2→ a×64² ─→ 2a×32² ─→ 4a×16² ─→ 8a×8² ─→ 16a×4² ─Conv s1 p0→ 256×1²   (code)
    256×1² ─ConvT s1 p0→ 16b×4² ─→ 8b×8² ─→ 4b×16² ─→ 2b×32² ─→ b×64² ─ConvT s2→ 3×128², tanh
            (encoder: Conv + BN + LeakyReLU;  decoder: ConvT + BN + ReLU, none after the last)

Other sizes: an S×S image (S a power of two, 32 to 512) and a K-number code follow the report's rule.
Stride-2 stages halve the image until it is 4×4, the widths doubling at each stage but capped at 16a (the
report's largest, so 256- and 512-pixel models add stages of 16a instead of 32a and 64a: width, and memory,
stay those of the report's nf); then the 4×4 convolution to K. The decoder mirrors it::

    S = 64:   3×64² → a×32² → 2a×16² → 4a×8² → 8a×4² → K×1²
    S = 256:  3×256² → a×128² → 2a×64² → 4a×32² → 8a×16² → 16a×8² → 16a×4² → K×1²

At S = 128 and K = 256 this is the report's Model 1, layer for layer (30,685,440 parameters at nf = 64).
"""

from __future__ import annotations

from torch import nn

from ..data.images import SIZE
from .layers import Autoencoder, down, to_rgb, up
from .registry import register_model

IMAGE_SIZES = (32, 64, 128, 256, 512)
MAX_WIDTH_MULTIPLE = 16  # widths double per stage up to 16a, the report's largest


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
            down(3, enc[0], slope),
            *(down(c_in, c_out, slope) for c_in, c_out in zip(enc, enc[1:], strict=False)),
            down(enc[-1], code, slope, stride=1, padding=0),
        )
        decoder = nn.Sequential(
            up(code, dec[-1], stride=1, padding=0),
            *(up(c_in, c_out) for c_in, c_out in zip(dec[:0:-1], dec[-2::-1], strict=True)),
            to_rgb(dec[0]),
        )
        super().__init__(encoder, decoder, (code, 1, 1))
        self.image_shape = (3, image_size, image_size)


@register_model(
    "conv", "Model 1, strided convolutions", reported_params=30_685_440, small={"nf": 8}, image_sizes=IMAGE_SIZES
)
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
