"""``celebae``: one command, a subcommand per job. Each parses arguments and calls one public function."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from .errors import CelebaeError
from .settings import Settings, load_settings

log = logging.getLogger("celebae")


def _field_type(name: str) -> type:
    """The plain type of a Settings field: ``int | None`` → int."""
    hint = typing.get_type_hints(Settings)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def add_settings_arguments(
    parser: argparse.ArgumentParser, only: Sequence[str] | None = None, exclude: Sequence[str] = ()
) -> None:
    """One ``--flag`` per Settings field (``batch_size`` → ``--batch-size``); unset flags stay None."""
    group = parser.add_argument_group("run settings (also settable in a --config TOML file)")
    for f in fields(Settings):
        if (only is not None and f.name not in only) or f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f.name)
        default_text = f" (default: {f.default})" if f.default is not None else ""
        if kind is bool:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=f.metadata["help"] + default_text
            )
        else:
            group.add_argument(
                flag, type=kind, default=None, metavar=f.name.upper(), help=f.metadata["help"] + default_text
            )


def settings_from_args(args: argparse.Namespace, base: Settings | None = None) -> Settings:
    """Settings = defaults ← --config file (or ``base``) ← flags given on the command line."""
    values = base.to_dict() if base else {}
    if getattr(args, "config", None):
        values.update(load_settings(args.config).to_dict())
    values.update({f.name: getattr(args, f.name) for f in fields(Settings) if getattr(args, f.name, None) is not None})
    return Settings.from_dict(values)


# ---- subcommands -------------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    base = None
    if args.resume:
        if not args.out:
            raise CelebaeError("--resume needs --out RUN, the run directory to continue")
        config = Path(args.out) / "config.json"
        if not config.exists():
            raise CelebaeError(f"nothing to resume in {args.out}: no config.json; drop --resume to start a new run")
        base = load_settings(config)
    summary = train(settings_from_args(args, base), resume=args.resume, progress=not args.quiet)
    if summary:
        print(
            json.dumps(
                {
                    k: summary[k]
                    for k in ("train_mse", "val_mse", "test_mse", "test_psnr", "params", "train_images_per_s", "wall_s")
                },
                indent=1,
            )
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, format_table

    baselines = tuple(b for b in (args.baselines or "").split(",") if b)
    result = evaluate(
        args.run,
        args.split,
        args.checkpoint,
        args.device,
        data=args.data,
        baselines=baselines,
        per_image=args.per_image,
    )
    print(
        f"{args.split}: MSE {result['mse']:.6f}  PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.4f}  "
        f"({result['images']} images)\n"
    )
    print(format_table(result))
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .plots import save_grid
    from .runs import load

    trained = load(args.run, args.checkpoint, args.device)
    inputs, outputs = trained.reconstruct(args.images)
    print(save_grid([inputs, outputs], args.out))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import SPLITS, load_split, open_source

    settings = settings_from_args(args)
    source = open_source(settings.data, settings.synthetic_size, settings.split_seed)
    log.info("data %s", source.describe())
    for split in SPLITS:
        prepared = load_split(settings, split, progress=not args.quiet, source=source)
        print(f"{split}: {len(prepared.files):,} images → {prepared.path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import sweep

    overrides = {f.name: getattr(args, f.name) for f in fields(Settings) if getattr(args, f.name, None) is not None}
    records = sweep(args.study, args.sweep_out, overrides, parallel=args.parallel, dry_run=args.dry_run)
    for r in records:
        line = f"{r['name']}: {r['status']}"
        if args.dry_run:
            s = r["settings"]
            line += f"  (model {s['model']}, nf {s['nf']}, batch {s['batch_size']}, {s['epochs']} epochs → {s['out']})"
        elif r.get("error"):
            line += f" ({r['error']})"
        print(line)
    return 1 if any(r["status"] == "failed" for r in records) else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(write_report(args.sweep, args.out))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .report import RunRecord, plot_runs
    from .train import read_metrics

    runs = []
    for run in args.runs:
        summary = Path(run) / "summary.json"
        label = json.loads(summary.read_text())["label"] if summary.exists() else Path(run).name
        runs.append(RunRecord(Path(run).name, Path(run), {"label": label}, read_metrics(run)))
    print(plot_runs(runs, Path(args.out), args.metric, args.x, args.smooth, args.title))
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from .latent import encode

    for path in encode(args.run, args.out, args.data, args.split, args.limit, args.device):
        print(path)
    return 0


def cmd_anomalies(args: argparse.Namespace) -> int:
    from .latent import anomalies

    ranking = anomalies(args.run, args.out, args.data, args.split, args.top, args.limit, args.device)
    for r in ranking[: args.top]:
        print(f"{r['rank']:>4}  MSE {r['mse']:.5f}  PSNR {r['psnr']:6.2f}  {r['file']}")
    print(f"→ {Path(args.out) / 'ranking.csv'}, {Path(args.out) / 'anomalies.png'}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .latent import interpolate

    print(interpolate(args.run, args.a, args.b, args.out, args.steps, args.device))
    return 0


def cmd_neighbours(args: argparse.Namespace) -> int:
    from .latent import neighbours

    found = neighbours(
        args.run, args.query, args.out, args.data, args.split, args.k, args.metric, args.limit, args.device
    )
    for name, distance in found:
        print(f"{distance:.5f}  {name}")
    print(f"→ {args.out}")
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    from .latent import code_map

    print(code_map(args.run, args.out, args.data, args.split, args.limit, args.device))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    for path in export(args.run, args.format, args.out, args.checkpoint):
        print(path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo

    print(demo(args.out, args.data, quick=args.quick))
    return 0


# ---- the parser ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celebae", description="Deep convolutional autoencoders for CelebA faces (train, evaluate, use)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = command("train", cmd_train, "Train an autoencoder into a run directory.")
    p.add_argument("--config", help="TOML file of settings (flags given here override it)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_settings_arguments(p)

    p = command("evaluate", cmd_evaluate, "Score a trained run: MSE and PSNR on a split.")
    p.add_argument("run", help="run directory")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--data", help="score on this data instead of the run's own")
    p.add_argument("--baselines", help="comma-separated: pca,jpeg (codes no larger than the model's)")
    p.add_argument("--per-image", help="write the model's per-image MSE/PSNR/SSIM to this CSV")
    p.add_argument("--device", default="auto")

    p = command("reconstruct", cmd_reconstruct, "Reconstruct image files: a grid, inputs above, outputs below.")
    p.add_argument("run", help="run directory")
    p.add_argument("images", nargs="+", help="image files (any size; cropped as the run was trained)")
    p.add_argument("--out", default="reconstructions.png", help="grid PNG to write")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="auto")

    p = command("prepare", cmd_prepare, "Decode a data set's splits into the uint8 cache ahead of training.")
    p.add_argument("--config", help="TOML file of settings")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_settings_arguments(
        p,
        only=(
            "data",
            "synthetic_size",
            "crop",
            "limit_train",
            "limit_val",
            "limit_test",
            "split_seed",
            "strict_images",
            "cache_dir",
        ),
    )

    p = command("sweep", cmd_sweep, "Run every point of a study file (experiments/*.toml) into one sweep folder.")
    p.add_argument("study", help="study TOML file, e.g. experiments/exp1.toml")
    p.add_argument("--out", dest="sweep_out", help="sweep folder (default runs/<study name>)")
    p.add_argument("--dry-run", action="store_true", help="list the expanded runs and their state; train nothing")
    p.add_argument("--parallel", type=int, help="points at once (default: one per GPU when there are several)")
    add_settings_arguments(p, exclude=("out",))

    p = command("report", cmd_report, "Write report.md for a sweep folder: table, figures, the report's claims.")
    p.add_argument("sweep", help="sweep folder written by `celebae sweep`")
    p.add_argument("--out", help="report file (default SWEEP/report.md)")

    p = command("plot", cmd_plot, "Plot loss curves of any runs into one figure.")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--metric", choices=("val", "train"), default="val", help="val: per epoch; train: per step")
    p.add_argument("--x", choices=("epoch", "step", "images"), default="epoch", help="horizontal axis")
    p.add_argument("--smooth", type=int, default=1, help="moving mean over this many points")
    p.add_argument("--title")

    def latent_command(name: str, func: Any, help: str, out_help: str) -> argparse.ArgumentParser:
        p = command(name, func, help)
        p.add_argument("run", help="run directory")
        p.add_argument("--out", required=True, help=out_help)
        p.add_argument("--data", help="a CelebA folder, an image folder or synthetic (default: the run's data)")
        p.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
        p.add_argument("--limit", type=int, help="only the first N images of the split")
        p.add_argument("--device", default="auto")
        return p

    latent_command(
        "encode",
        cmd_encode,
        "Write the codes of a split (.npy) and its file names (.csv).",
        "codes file (.npy); the names go beside it as .csv",
    )
    p = latent_command(
        "anomalies",
        cmd_anomalies,
        "Rank images by reconstruction error; grid of the extremes.",
        "folder for ranking.csv and anomalies.png",
    )
    p.add_argument("--top", type=int, default=8, help="images shown at each end")
    p = latent_command("neighbours", cmd_neighbours, "Nearest images to a query in code space, as a grid.", "grid PNG")
    p.add_argument("query", help="query image file")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine")
    latent_command("map", cmd_map, "A 2-D PCA map of a split's codes, coloured by reconstruction error.", "PNG")

    p = command("interpolate", cmd_interpolate, "Decode straight-line mixes of two images' codes into a strip.")
    p.add_argument("run", help="run directory")
    p.add_argument("a", help="first image")
    p.add_argument("b", help="second image")
    p.add_argument("--steps", type=int, default=8, help="decoded mixes, both ends included")
    p.add_argument("--out", default="interpolation.png")
    p.add_argument("--device", default="auto")

    p = command("export", cmd_export, "Export the encoder and decoder separately as ONNX or TorchScript.")
    p.add_argument("run", help="run directory")
    p.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    p.add_argument("--out", required=True, help="folder for the files")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))

    p = command(
        "demo",
        cmd_demo,
        "Train conv and pool briefly (synthetic faces, or ./data/celeba if present) "
        "and write curves, reconstructions and summaries.",
    )
    p.add_argument("--out", default="runs/demo", help="folder for the demo's runs and figures")
    p.add_argument("--data", help="data to use (default: ./data/celeba if present, else synthetic)")
    p.add_argument("--quick", action="store_true", help="a few steps only (a smoke test)")
    return parser


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"{record.levelname.lower()}: {text}" if record.levelno >= logging.WARNING else text


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Messages go to stderr as plain lines while the command runs; the logger is left as found after.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    saved = log.handlers[:], log.level, log.propagate
    log.handlers[:], log.propagate = [handler], False
    log.setLevel(logging.INFO)
    try:
        return args.func(args)
    except CelebaeError as err:
        print(f"celebae: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("celebae: interrupted", file=sys.stderr)
        return 130
    finally:
        log.handlers[:], log.propagate = saved[0], saved[2]
        log.setLevel(saved[1])


if __name__ == "__main__":
    sys.exit(main())
