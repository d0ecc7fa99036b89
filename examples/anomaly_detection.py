"""Flag unusual images: fit a detector on the training faces, set its threshold at a 5 % false-positive rate
on the validation faces, and score faces and non-faces, beside PCA with as many numbers.

    python examples/anomaly_detection.py RUN            # a trained run or model folder (default: train one)
"""

from __future__ import annotations

import argparse

import numpy as np

import celebae
from celebae.evaluation.ood import PCACodec, flat_images
from celebae.use.latent import split_images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a trained run (default: train a tiny one on synthetic faces)")
    parser.add_argument("--fpr", type=float, default=0.05)
    args = parser.parse_args(argv)
    if args.run is None:
        args.run = "runs/example-anomalies"
        celebae.train(celebae.Settings(data="synthetic", synthetic_size=400, image_size=32, nf=8, code_size=32,
                                       epochs=2, out=args.run), start="overwrite", progress=False)  # fmt: skip
    run = celebae.load(args.run)
    train, val, test = (split_images(run, None, s).pixels for s in ("train", "val", "test"))
    flat = flat_images(test.shape[-1], 20, smooth=True)  # plain gradients: not faces
    for name, codec in (("autoencoder", run), ("PCA", PCACodec(train, run.model.code_size))):
        detector = celebae.AnomalyDetector(codec, "mse").fit(train).infer_threshold(val, args.fpr)
        faces, odd = detector.predict(test), detector.predict(flat)
        print(f"{name}: {faces['is_outlier'].mean():.0%} of {len(test)} test faces flagged (asked: {args.fpr:.0%}), "
              f"{odd['is_outlier'].mean():.0%} of {len(flat)} gradients; median p-value of the gradients "
              f"{np.median(odd['p_value']):.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
