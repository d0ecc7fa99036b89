"""celebae: the report's deep convolutional autoencoders for 128×128 CelebA faces.

import celebae
model = celebae.build_model("conv", nf=64)          # Model 1; "pool" is Model 2
summary = celebae.train(celebae.Settings(data="synthetic", epochs=2, out="runs/try"))
run = celebae.load("runs/try")                      # trained model, settings, summary, metrics
codes = run.encode(["face.jpg"])                    # N×256
"""

from .errors import CelebaeError
from .evaluate import evaluate
from .models import MODELS, ConvAutoencoder, PoolAutoencoder, build_model, count_parameters
from .runs import TrainedRun, load
from .settings import Settings
from .train import read_metrics, train

__version__ = "0.1.0"

__all__ = [
    "MODELS",
    "CelebaeError",
    "ConvAutoencoder",
    "PoolAutoencoder",
    "Settings",
    "TrainedRun",
    "build_model",
    "count_parameters",
    "evaluate",
    "load",
    "read_metrics",
    "train",
]
