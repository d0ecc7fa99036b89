"""Share a model: export a run as a Hugging Face Hub model folder (weights, config, card, and the anomaly
threshold), then load it as someone without the run would. Needs `pip install 'celebae[hub,apps]'`.

    python examples/share_a_model.py RUN --out models/mine     # default: train a tiny run first
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import celebae
from celebae.cli import main as cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?")
    parser.add_argument("--out", default="models/example")
    args = parser.parse_args(argv)
    if args.run is None:
        args.run = "runs/example-share"
        celebae.train(celebae.Settings(data="synthetic", synthetic_size=300, image_size=32, nf=8, code_size=32,
                                       epochs=1, out=args.run), start="overwrite", progress=False)  # fmt: skip
    cli(["anomalies", args.run, "--out", str(Path(args.run) / "anomalies"), "--fpr", "0.05", "--top", "4"])
    shutil.rmtree(args.out, ignore_errors=True)
    cli(["export", args.run, "--format", "hub", "--out", args.out])

    model = celebae.load(args.out)  # no run directory needed from here on
    detector = celebae.AnomalyDetector.load(model)
    face = celebae.data.draw_face(3)
    print(f"{args.out}: {model.settings.model}, code of {model.model.code_size} numbers;"
          f" a face scores {detector.predict(face)['instance_score'][0]:.4f}"
          f" (threshold {detector.thresholds[detector.score]:.4f})")  # fmt: skip
    print((Path(args.out) / "README.md").read_text().split("## Anomaly detection")[1].split("##")[0].strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
