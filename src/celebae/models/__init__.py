"""The report's two convolutional autoencoders, layer by layer, and one beyond the report (``lincode``).

The report's two map a 3×128×128 image in [-1, 1] to a 256-number code and back. The reading implemented here is
``docs/architecture.md`` (it matches the authors' 30,685,440 parameters at nf = 64); every convolution has
kernel 4 and no bias, BatchNorm uses PyTorch's defaults. ``encode`` returns the code flattened to
N×``code_size`` for both models, so codes from either can be used as feature vectors the same way.

    registry.py   ``@register_model``, ``build_model``, ``MODELS``
    layers.py     the stages, the code layers, ``Autoencoder``
    conv.py       Model 1 (its diagram, and the rule for other sizes)
    pool.py       Model 2 (its diagram)
    lincode.py    Model 3, beyond the report: Model 1's stages with a linear code (its diagram, and why)

Models register themselves (``@register_model``) and own their keyword arguments: the builder's signature
is the model's settings and defaults (``--nf``, ``--slope``, or ``--model-arg NAME=VALUE`` for any other).
To add a model, write its builder in a file of its own here and import it below; ``tests/test_models.py``
checks every registered model against the same contract.

Imports only from itself, ``errors`` and ``data``.
"""

from ..data.images import SIZE
from .conv import IMAGE_SIZES, ConvAutoencoder
from .layers import Autoencoder, CodeConv2d, CodeConvTranspose2d
from .lincode import LinearCodeAutoencoder
from .pool import PoolAutoencoder
from .registry import MODELS, ModelSpec, build_model, count_parameters, model_spec, register_model

__all__ = [
    "IMAGE_SIZES",
    "MODELS",
    "SIZE",
    "Autoencoder",
    "CodeConv2d",
    "CodeConvTranspose2d",
    "ConvAutoencoder",
    "LinearCodeAutoencoder",
    "ModelSpec",
    "PoolAutoencoder",
    "build_model",
    "count_parameters",
    "model_spec",
    "register_model",
]
