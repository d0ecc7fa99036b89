"""celebae: the report's deep convolutional autoencoders for 128×128 CelebA faces.

import celebae
model = celebae.build_model("conv", nf=64)          # Model 1; "pool" is Model 2
summary = celebae.train(celebae.Settings(data="synthetic", epochs=2, out="runs/try"))
run = celebae.load("runs/try")                      # trained model, settings, summary, metrics
codes = run.encode(["face.jpg"])                    # N×256
detector = celebae.AnomalyDetector.load(run)        # after `celebae anomalies RUN --fpr 0.01`

The package is its layers, bottom first (each imports only from itself and the layers below it)::

    errors      CelebaeError
    data        sources, images, synthetic faces, preparation (uint8 cache), batches, attribute labels
    models      the registry; conv (Model 1) and pool (Model 2)
    quality     losses, metrics, the cost of a code, figures
    training    settings, device, processes, checkpoints, the run directory, the loop, FLOPs
    use         a trained run loaded, latent tools, anomaly detector, attribute edits, export
    evaluation  baselines (PCA, codecs), a run scored against them, rate–distortion, OOD sets, probes
    studies     sweeps, points, statistics, verdicts, compare, report
    cli, demo   the command line and the README's first command

The subpackages are named for what they hold (``celebae.training``, ``celebae.evaluation``), so the
functions re-exported here (``celebae.train``, ``celebae.evaluate``) never shadow a module.
"""

from .errors import CelebaeError
from .evaluation.scoring import evaluate
from .models import MODELS, ConvAutoencoder, PoolAutoencoder, build_model, count_parameters, register_model
from .quality.losses import LOSSES
from .training.loop import train
from .training.rundir import RunDir, read_metrics
from .training.settings import Settings
from .use.anomaly import AnomalyDetector
from .use.trained import TrainedRun, load

__version__ = "0.1.0"

__all__ = [
    "LOSSES",
    "AnomalyDetector",
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
