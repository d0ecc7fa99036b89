"""The README's first command: the report's Experiment 1 in miniature (``conv`` and ``pool`` at width 16).

Trains both briefly on synthetic faces (or on CelebA when ``./data/celeba``
exists), then writes each run's directory plus a validation-loss comparison,
a side-by-side reconstruction figure and a results table under one folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .data import load_split
from .quality.figures import plot_losses, save_grid
from .training.loop import train
from .training.settings import Settings
from .use.trained import load

log = logging.getLogger("celebae")

CELEBA_DEFAULT = Path("data/celeba")


def demo(out: str | Path = "runs/demo", data: str | None = None, quick: bool = False) -> Path:
    """Run the demo into ``out``; finished runs are kept, interrupted ones resumed. Returns the table's path."""
    out = Path(out)
    if data is None:
        data = str(CELEBA_DEFAULT) if CELEBA_DEFAULT.is_dir() else "synthetic"
    log.info("demo on %s data → %s", data, out)
    # Sized for under 5 minutes on 2 CPU cores; --quick is a smoke test of the same path.
    limits = (
        dict(limit_train=64, limit_val=32, limit_test=32, epochs=1)
        if quick
        else dict(limit_train=2400, limit_val=300, limit_test=300, epochs=5)
    )
    runs = []
    for model in ("conv", "pool"):
        settings = Settings(
            data=data,
            model=model,
            nf=16,
            batch_size=32,
            synthetic_size=3000,
            log_every=5,
            **limits,
        )
        settings = settings.replace(out=str(out / settings.run_name()))
        train(settings, start="auto")  # finished runs are kept, interrupted ones resumed
        runs.append(load(settings.out, "last", device="cpu"))

    curves = {}
    for r in runs:
        epochs = [m for m in r.metrics() if m["kind"] == "epoch"]
        curves[r.settings.label] = ([m["epoch"] for m in epochs], [m["val_loss"] for m in epochs])
    plot_losses(
        curves, out / "val_loss.png", xlabel="epoch", ylabel="validation MSE", title=f"Validation loss ({data})"
    )

    test = load_split(runs[0].settings.data_spec(), "test", progress=False).images[:8]
    save_grid([test] + [r.reconstruct(test)[1] for r in runs], out / "reconstructions.png")

    lines = ["| run | params | train MSE | val MSE | test MSE | test PSNR (dB) | images/s |", "|---" * 7 + "|"]
    for r in runs:
        s = r.summary
        lines.append(
            f"| {s['label']} | {s['params']:,} | {s['train_mse']:.4f} | {s['val_mse']:.4f} | "
            f"{s['test_mse']:.4f} | {s['test_psnr']:.2f} | {s['train_images_per_s']:.0f} |"
        )
    table = out / "results.md"
    table.write_text("\n".join(lines) + "\n\nreconstructions.png: test inputs (top), conv (middle), pool (bottom).\n")
    print("\n".join(lines))
    return table
