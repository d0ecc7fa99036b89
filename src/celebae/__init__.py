"""celebae: the report's deep convolutional autoencoders for 128×128 CelebA faces.

import celebae
model = celebae.build_model("conv", nf=64)          # Model 1; "pool" is Model 2
summary = celebae.train(celebae.Settings(data="synthetic", epochs=2, out="runs/try"))
run = celebae.load("runs/try")                      # trained model, settings, summary, metrics
codes = run.encode(["face.jpg"])                    # N×256

The modules are named for what they hold (``celebae.training``, ``celebae.evaluation``), so the
functions re-exported here (``celebae.train``, ``celebae.evaluate``) never shadow a module.
"""

from .errors import CelebaeError
from .evaluation import evaluate
from .losses import LOSSES
from .models import MODELS, ConvAutoencoder, PoolAutoencoder, build_model, count_parameters, register_model
from .rundir import RunDir, read_metrics
from .runs import TrainedRun, load
from .settings import Settings
from .training import train

__version__ = "0.1.0"

__all__ = [
    "LOSSES",
    "MODELS",
    "CelebaeError",
    "ConvAutoencoder",
    "PoolAutoencoder",
    "RunDir",
    "Settings",
    "TrainedRun",
    "build_model",
    "count_parameters",
    "evaluate",
    "load",
    "read_metrics",
    "register_model",
    "train",
]
