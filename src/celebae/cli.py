"""``celebae``: one command, a subcommand per job. Each parses arguments and calls one public function.

The parser is data: ``COMMANDS`` lists each subcommand's handler, help and arguments; ``Settings``'
fields make the run-setting flags (``batch_size`` → ``--batch-size``).
"""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import json
import logging
import math
import os
import signal
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from .errors import CelebaeError
from .quality.figures import MAX_GRID_IMAGES
from .training.settings import Settings, load_settings, parse_value
from .use.anomaly import DEFAULT_SCORE, SCORES

log = logging.getLogger("celebae")
MAX_EXPLORE = 200_000  # faces the explorer holds codes of (all of CelebA's 202,599 is the most there is)


def _field_type(name: str) -> type:
    """The plain type of a Settings field: ``int | None`` → int, ``dict[str, Any]`` → dict."""
    hint = typing.get_type_hints(Settings)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


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
        default_text = f" (default: {f.default})" if f.default not in (None, MISSING) else ""
        if kind is bool:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=f.metadata["help"] + default_text
            )
        elif kind is dict:  # model_args: --model-arg NAME=VALUE, repeatable
            group.add_argument(
                "--model-arg", dest=f.name, action="append", type=_name_value, metavar="NAME=VALUE",
                help=f.metadata["help"],
            )  # fmt: skip
        elif f.metadata.get("choices"):
            group.add_argument(
                flag, default=None, choices=f.metadata["choices"], help=f.metadata["help"] + default_text
            )
        else:
            group.add_argument(
                flag, type=kind, default=None, metavar=f.name.upper(), help=f.metadata["help"] + default_text
            )


def _name_value(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), parse_value(value.strip())


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a command line gives: its --config file's, then its flags'."""
    values = load_settings(args.config).to_dict() if getattr(args, "config", None) else {}
    for f in fields(Settings):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = dict(value) if f.name == "model_args" else value
    return values


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings = defaults ← --config file ← flags given on the command line."""
    return Settings.from_dict(given_settings(args))


# ---- subcommands -------------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from .training.loop import train
    from .training.rundir import RunDir

    given = [flag for flag in ("resume", "overwrite", "auto_resume") if getattr(args, flag)]
    if len(given) > 1:
        raise CelebaeError(f"give one of --resume, --overwrite, --auto-resume, not {' and '.join(given)}")
    start = {"resume": "resume", "overwrite": "overwrite", "auto_resume": "auto"}[given[0]] if given else "new"
    if start in ("resume", "auto") and not args.out:
        raise CelebaeError(f"{'--resume' if args.resume else '--auto-resume'} needs --out RUN, the run directory")
    settings = RunDir(args.out).resume_settings(given_settings(args)) if args.resume else settings_from_args(args)
    summary = train(settings, start, progress=not args.quiet)
    if summary:
        keys = ("train_loss", "train_mse", "val_mse", "test_mse", "test_psnr", "params", "train_images_per_s", "wall_s")
        print(json.dumps({k: summary[k] for k in keys}, indent=1))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.scoring import evaluate, format_table

    given = [flag for flag, value in (("--limit", args.limit), ("--fpr", args.fpr), ("--out", args.out)) if value]
    if given and not args.anomalies:
        raise CelebaeError(f"{' and '.join(given)}: only with --anomalies")
    if args.anomalies:
        from .evaluation.ood import measure_ood
        from .use.trained import load

        out = Path(args.out or Path(args.run) / "anomaly-eval")
        measure_ood(load(args.run, args.checkpoint, args.device), out, args.data, args.limit or 200, args.fpr or 0.05)
        print((out / "ood.md").read_text())
        print(f"→ {out / 'ood.csv'}, {out / 'ood.md'}")
        return 0
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
    from .quality.figures import save_grid
    from .use.trained import load

    trained = load(args.run, args.checkpoint, args.device)
    inputs, outputs = trained.reconstruct(args.images)
    print(save_grid([inputs, outputs], args.out))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import SPLITS, load_split

    spec = settings_from_args(args).data_spec()
    source = spec.open()
    log.info("data %s", source.describe())
    for split in SPLITS:
        prepared = load_split(spec, split, progress=not args.quiet, source=source)
        print(f"{split}: {len(prepared.files):,} images → {prepared.path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .studies.sweep import builtin_studies, parse_seeds, sweep

    if args.list:
        for name, description in builtin_studies().items():
            print(f"{name}: {description}")
        return 0
    if not args.study:
        raise CelebaeError("name a study: a built-in one (celebae sweep --list) or a TOML file")
    overrides = {k: v for k, v in given_settings(args).items() if k != "out"}
    seeds = parse_seeds(args.seeds)
    records = sweep(args.study, args.sweep_out, overrides, parallel=args.parallel, dry_run=args.dry_run, seeds=seeds)
    for r in records:
        line = f"{r['name']}: {r['status']}"
        if args.dry_run:
            s = r["settings"]
            line += (
                f"  (model {s['model']}, nf {s['nf']}, batch {s['batch_size']}, {s['epochs']} epochs, "
                f"seed {s['seed']} → {s['out']})"
            )
        elif r.get("error"):
            line += f" ({r['error']})"
        print(line)
    return 1 if any(r["status"] == "failed" for r in records) else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .studies.report import write_report

    print(write_report(args.sweep, args.out))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .studies.compare import compare

    print(compare(args.a, args.vs))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .studies.report import plot_runs
    from .training.rundir import RunDir

    runs = [RunDir(run) for run in args.runs]
    print(plot_runs(runs, Path(args.out), args.metric, args.x, args.smooth, args.title))
    return 0


def _split_images(args: argparse.Namespace) -> tuple[Any, Any]:
    """The run and the images a split-reading tool works on (--data, --split, --limit)."""
    from .use.latent import split_images
    from .use.trained import load

    trained = load(args.run, device=args.device)
    return trained, split_images(trained, args.data, args.split, args.limit)


def cmd_encode(args: argparse.Namespace) -> int:
    from .use.latent import encode

    for path in encode(*_split_images(args), args.out):
        print(path)
    return 0


def cmd_anomalies(args: argparse.Namespace) -> int:
    from .training.rundir import DETECTOR
    from .use.anomaly import AnomalyDetector, calibrate, flag
    from .use.latent import anomalies

    trained, images = _split_images(args)
    ranking = anomalies(trained, images, args.out, args.top)
    for r in ranking[: args.top]:
        print(f"{r['rank']:>4}  MSE {r['mse']:.5f}  PSNR {r['psnr']:6.2f}  {r['file']}")
    written = [Path(args.out) / "ranking.csv", Path(args.out) / "anomalies.png"]
    if args.fpr is not None:
        detector = calibrate(trained, args.fpr, args.score or DEFAULT_SCORE, args.data, args.fit_limit)
        print(f"threshold of {detector.score} at a false-positive rate of {args.fpr:g} on "
              f"{detector.record['calibration_images']:,} validation images: {detector.thresholds[detector.score]:.4g}"
              f" → {trained.path / DETECTOR}")  # fmt: skip
    elif (trained.path / DETECTOR).exists():
        detector = AnomalyDetector.load(trained, args.score)
    else:
        print(f"→ {', '.join(map(str, written))} (--fpr 0.01 adds a threshold, p-values and flags)")
        return 0
    path, flagged = flag(detector, images, args.out)
    written.append(path)
    print(
        f"{flagged:,} of {len(images.files):,} images flagged by {detector.score} (threshold "
        f"{detector.thresholds[detector.score]:.4g}, false-positive rate {detector.fpr:g} on the validation faces)"
    )
    print(f"→ {', '.join(map(str, written))}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .evaluation.probe import probe
    from .use.trained import load

    names = [n.strip() for n in args.attributes.split(",") if n.strip()] if args.attributes else None
    result = probe(load(args.run, device=args.device), args.out, args.data, args.split, args.folds, args.seed, names)
    print((Path(args.out) / "probe.md").read_text())
    print(f"→ {Path(args.out) / 'probe.csv'}, {Path(args.out) / 'probe.png'}  ({len(result['rows']):,} rows)")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from .use.edits import edit
    from .use.trained import load

    path, counts = edit(load(args.run, device=args.device), args.image, args.attribute, args.amounts, args.out,
                        args.data, args.split)  # fmt: skip
    print(f"{args.attribute}: the mean code of {counts['with']:,} labelled faces with it minus that of "
          f"{counts['without']:,} without ({counts['unlabelled']:,} faces of the split carry no labels)")  # fmt: skip
    print(f"→ {path}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .use.latent import interpolate
    from .use.trained import load

    print(interpolate(load(args.run, device=args.device), args.a, args.b, args.out, args.steps))
    return 0


def cmd_neighbours(args: argparse.Namespace) -> int:
    from .use.latent import neighbours

    found = neighbours(*_split_images(args), args.query, args.out, args.k, args.metric)
    for name, distance in found:
        print(f"{distance:.5f}  {name}")
    print(f"→ {args.out}")
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    import numpy as np

    from .use.edits import run_attributes
    from .use.latent import code_map

    trained, images = _split_images(args)
    colour, label = None, "reconstruction MSE"
    if args.attribute:
        attributes = run_attributes(trained, args.data)
        column, (index, labels) = attributes.column(args.attribute), attributes.of(images.files)
        if not len(index):
            raise CelebaeError(f"no image of {images.name} carries labels in {attributes.source}; choose --split")
        colour, label = np.full(len(images.files), np.nan), args.attribute
        colour[index] = labels[:, column]
    path, trust = code_map(trained, images, args.out, args.method, colour, label)
    print(f"trustworthiness {trust:.3f} (5 neighbours; 1: the map keeps every neighbourhood)\n→ {path}")
    return 0


def cmd_rd(args: argparse.Namespace) -> int:
    from .evaluation.rd import rate_distortion

    for path in rate_distortion(args.runs, args.out, args.data, args.split, args.limit, args.device):
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format != "hub":
        if args.with_onnx or args.push_to:
            raise CelebaeError("--with-onnx and --push-to go with --format hub")
        from .use.export import export

        paths = export(args.run, args.format, args.out, args.checkpoint)
    else:
        from .evaluation.share import export_hub, push

        paths = export_hub(args.run, args.out, args.with_onnx)
        if args.push_to:
            paths.append(push(args.out, args.push_to))
    for path in paths:
        print(path)
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    try:
        from .use.app import launch
    except ImportError as err:
        raise CelebaeError(f"the explorer needs Gradio ({err.name} is missing): pip install 'celebae[app]'") from None
    from .use.explorer import Explorer

    explorer = Explorer(args.runs, args.data, args.split, args.limit, args.device)
    log.info("codes of %d faces ready in %.1f s", len(explorer.split.files), explorer.setup_seconds)
    launch(explorer, args.host, args.port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo

    print(demo(args.out, args.data, quick=args.quick))
    return 0


# ---- the parser, as data ---------------------------------------------------------------------------------------


def rate(text: str) -> float:
    """An argparse type: a rate strictly between 0 and 1 (a false-positive rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value:g}")
    return value


def amounts(text: str) -> list[float]:
    """An argparse type: comma-separated finite numbers (-2,-1,0,1,2)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers separated by commas, got {text!r}")
    return values


def at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than ``low`` (counts, steps, limits) and, where given, no larger
    than ``high`` (what a figure can draw, a port)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"must be at least {low}, got {value}" if value < low else f"must be at most {high}, got {value}"
            )
        return value

    parse.__name__ = f"integer ≥ {low}" if high is None else f"integer {low}–{high}"
    return parse


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class SettingsFlags:
    """The run-setting flags a command takes: all of them, ``only`` some, or all but ``exclude``."""

    only: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()


RUN = arg("run", help="run directory")
DEVICE = arg("--device", default="auto")
CHECKPOINT = arg("--checkpoint", default="best", choices=("best", "last"))
QUIET = arg("--quiet", action="store_true", help="no progress bars")
CONFIG = arg("--config", help="TOML file of settings (flags given here override it)")
DATA_SETTINGS = (
    "data",
    "synthetic_size",
    "crop",
    "limit_train",
    "limit_val",
    "limit_test",
    "split_seed",
    "strict_images",
    "follow_links",
    "cache_dir",
    "image_size",  # caches are keyed by size: a 256-px cache can be prepared ahead of training
)


def latent_args(out_help: str) -> list[Arg | SettingsFlags]:
    """The arguments every tool that reads a split of images takes."""
    return [
        RUN,
        arg("--out", required=True, help=out_help),
        arg("--data", help="a CelebA folder, an image folder or synthetic (default: the run's data)"),
        arg("--split", default="test", choices=("train", "val", "test", "all")),
        arg("--limit", type=at_least(1), help="only the first N images of the split"),
        DEVICE,
    ]


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, list[Arg | SettingsFlags]]] = {
    "train": (cmd_train, "Train an autoencoder into a run directory.", [
        CONFIG,
        arg("--resume", action="store_true", help="continue the run in --out from its last checkpoint"),
        arg("--overwrite", action="store_true", help="replace the run already in --out (its files are removed)"),
        arg(
            "--auto-resume",
            action="store_true",
            help="resume --out if it has a checkpoint, else start it; exit 0 if it has finished (requeued jobs)",
        ),
        QUIET,
        SettingsFlags(),
    ]),
    "evaluate": (cmd_evaluate, "Score a trained run: MSE and PSNR on a split.", [
        RUN,
        arg("--split", default="test", choices=("train", "val", "test")),
        CHECKPOINT,
        arg("--data", help="score on this data instead of the run's own"),
        arg("--baselines", help="comma-separated: pca,jpeg (codes no larger than the model's)"),
        arg("--per-image", help="write the model's per-image MSE/PSNR/SSIM to this CSV"),
        arg("--anomalies", action="store_true",
            help="instead: how well the run's anomaly scores, and PCA's, tell the test faces from out-of-distribution "
                 "sets (AUROC, AP, 95%% intervals; celebae[apps])"),
        arg("--limit", type=at_least(20, 100_000), help="--anomalies: images per set (default 200)"),
        arg("--fpr", type=rate, help="--anomalies: the validation false-positive rate of the "
            "threshold whose flags are counted (default 0.05)"),
        arg("--out", help="--anomalies: folder for ood.csv and ood.md (default RUN/anomaly-eval)"),
        DEVICE,
    ]),
    "reconstruct": (cmd_reconstruct, "Reconstruct image files: a grid, inputs above, outputs below.", [
        RUN,
        arg("images", nargs="+", help="image files (any size; cropped as the run was trained)"),
        arg("--out", default="reconstructions.png", help="grid PNG to write"),
        CHECKPOINT,
        DEVICE,
    ]),
    "prepare": (cmd_prepare, "Decode a data set's splits into the uint8 cache ahead of training.", [
        CONFIG, QUIET, SettingsFlags(only=DATA_SETTINGS),
    ]),
    "sweep": (cmd_sweep, "Run every point of a study into one sweep folder: a built-in study (exp1 …; "
              "--list names them) or your own TOML file.", [
        arg("study", nargs="?", help="a built-in study's name (exp1) or a study TOML file"),
        arg("--list", action="store_true", help="list the built-in studies"),
        arg("--out", dest="sweep_out", help="sweep folder (default runs/<study name>)"),
        arg("--dry-run", action="store_true", help="list the expanded runs and their state; train nothing"),
        arg("--parallel", type=at_least(1), help="runs at once (default: one per GPU when there are several)"),
        arg("--seeds", help="every point once per seed: a count (3 → 0,1,2) or a list (0,4,7); overrides the study's"),
        SettingsFlags(exclude=("out",)),
    ]),
    "report": (cmd_report, "Write report.md for a sweep folder: table, figures, the report's claims.", [
        arg("sweep", help="sweep folder written by `celebae sweep`"),
        arg("--out", help="report file (default SWEEP/report.md)"),
    ]),
    "compare": (cmd_compare, "Is A really better than B? Test error, with an interval over seeds and images.", [
        arg("a", nargs="+", help="runs of A: run directories, point folders of seed-* runs, or globs"),
        arg("--vs", nargs="+", required=True, help="runs of B, the same way"),
    ]),
    "plot": (cmd_plot, "Plot loss curves of any runs into one figure.", [
        arg("runs", nargs="+", help="run directories"),
        arg("--out", required=True, help="PNG to write"),
        arg("--metric", choices=("val", "train"), default="val", help="val: per epoch; train: per step"),
        arg("--x", choices=("epoch", "step", "images"), default="epoch", help="horizontal axis"),
        arg("--smooth", type=at_least(1), default=1, help="moving mean over this many points"),
        arg("--title"),
    ]),
    "encode": (cmd_encode, "Write the codes of a split (.npy) and its file names (.csv).", [
        *latent_args("codes file (.npy); the names go beside it as .csv"),
    ]),
    "anomalies": (cmd_anomalies, "Rank images by reconstruction error; grid of the extremes.", [
        *latent_args("folder for ranking.csv and anomalies.png (and scores.csv, with a detector)"),
        arg("--top", type=at_least(1, MAX_GRID_IMAGES), default=8, help="images shown at each end"),
        arg("--fpr", type=rate, help="fit a detector on the training split, threshold it at this false-positive "
            "rate on the validation split, save it with the run, and flag the images (celebae[apps])"),
        arg("--score", choices=SCORES,
            help=f"the score that flags (default: {DEFAULT_SCORE}, or the saved detector's)"),
        arg("--fit-limit", type=at_least(10), help="--fpr: only the first N images of each split fit and calibrate"),
    ]),
    "probe": (cmd_probe, "Linear probes from a run's codes to CelebA's attributes, beside PCA, pixels and chance.", [
        RUN,
        arg("--out", required=True, help="folder for probe.csv, probe.md and probe.png"),
        arg("--data", help="a CelebA folder with list_attr_celeba.txt or .csv (default: the run's data)"),
        arg("--split", default="train", choices=("train", "val", "test"),
            help="the split to cross-validate on when the training and test splits are not both labelled"),
        arg("--folds", type=at_least(2, 20), default=5),
        arg("--attributes", help="comma-separated attribute names (default: all 40)"),
        arg("--seed", type=at_least(0), default=0),
        DEVICE,
    ]),
    "edit": (cmd_edit, "Move a face's code along an attribute's direction (mean code with it − without); a strip.", [
        RUN,
        arg("image", help="the face to edit"),
        arg("--attribute", required=True, help="a CelebA attribute name (Smiling, Eyeglasses, …)"),
        arg("--amounts", type=amounts, default="-2,-1,0,1,2",
            help="multiples of the direction, as --amounts=-2,-1,0,1,2 (the default)"),
        arg("--out", default="edit.png", help="strip PNG to write"),
        arg("--data", help="the labelled CelebA folder (default: the run's data)"),
        arg("--split", default="train", choices=("train", "val", "test"),
            help="whose labelled faces make the direction"),
        DEVICE,
    ]),
    "neighbours": (cmd_neighbours, "Nearest images to a query in code space, as a grid.", [
        *latent_args("grid PNG"),
        arg("query", help="query image file"),
        arg("--k", type=at_least(1, MAX_GRID_IMAGES), default=8, help="neighbours to show"),
        arg("--metric", choices=("cosine", "euclidean"), default="cosine"),
    ]),
    "map": (cmd_map, "A 2-D map of a split's codes (PCA or t-SNE), its trustworthiness, coloured by error or an "
            "attribute.", [
        *latent_args("PNG"),
        arg("--method", choices=("pca", "tsne"), default="pca"),
        arg("--attribute", help="colour by this CelebA attribute (labelled images only)"),
    ]),
    "interpolate": (cmd_interpolate, "Decode straight-line mixes of two images' codes into a strip.", [
        RUN,
        arg("a", help="first image"),
        arg("b", help="second image"),
        arg("--steps", type=at_least(2, MAX_GRID_IMAGES), default=8, help="decoded mixes, both ends included"),
        arg("--out", default="interpolation.png"),
        DEVICE,
    ]),
    "rd": (cmd_rd, "Rate–distortion: quality against bytes per image for runs' codes, PCA, JPEG, WebP, AVIF.", [
        arg("runs", nargs="+", help="run directories (one image size); different code sizes make a curve"),
        arg("--out", required=True, help="folder for rd.csv and rd.png"),
        arg("--data", help="a CelebA folder, an image folder or synthetic (default: the first run's data)"),
        arg("--split", default="test", choices=("train", "val", "test")),
        arg("--limit", type=at_least(1), help="only the first N images of the split (codecs are slow)"),
        DEVICE,
    ]),
    "export": (cmd_export, "Export the encoder and decoder as ONNX or TorchScript, or the run as a Hub model folder.", [
        RUN,
        arg("--format", choices=("onnx", "torchscript", "hub"), required=True,
            help="hub: a model folder in the Hugging Face Hub's layout with a model card (celebae[hub])"),
        arg("--out", required=True, help="folder for the files"),
        CHECKPOINT,
        arg("--with-onnx", action="store_true", help="hub: add encoder.onnx and decoder.onnx"),
        arg("--push-to", metavar="USER/NAME", help="hub: upload the folder to this Hub repository"),
    ]),
    "explore": (cmd_explore, "A browser page (Gradio, offline) to reconstruct, compare, interpolate, find neighbours "
                "and anomalies, and walk the code space of one or more runs.", [
        arg("runs", nargs="+", metavar="RUN", help="run directories or model folders (several: compared)"),
        arg("--data", help="the faces to explore (default: the first run's data)"),
        arg("--split", default="test", choices=("train", "val", "test", "all")),
        arg("--limit", type=at_least(1, MAX_EXPLORE), default=2000, help="faces of the split to load (default 2000)"),
        arg("--host", default="127.0.0.1", help="address to serve on (default: this machine only)"),
        arg("--port", type=at_least(1, 65535), default=7860),
        arg("--device", default="cpu"),
    ]),
    "demo": (cmd_demo, "Train conv and pool briefly (synthetic faces, or ./data/celeba if present) and write "
             "curves, reconstructions and summaries.", [
        arg("--out", default="runs/demo", help="folder for the demo's runs and figures"),
        arg("--data", help="data to use (default: ./data/celeba if present, else synthetic)"),
        arg("--quick", action="store_true", help="a few steps only (a smoke test)"),
    ]),
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celebae", description="Deep convolutional autoencoders for CelebA faces (train, evaluate, use)."
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error (also CELEBAE_DEBUG=1)")
    parser.add_argument("--version", action="version", version=f"celebae {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, help_text, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func, command_parser=p)
        # also after the subcommand; SUPPRESS keeps the top-level value when it is not given here
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for a in arguments:
            if isinstance(a, SettingsFlags):
                add_settings_arguments(p, a.only, a.exclude)
            else:
                p.add_argument(*a.flags, **a.options)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("celebae")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"{record.levelname.lower()}: {text}" if record.levelno >= logging.WARNING else text


def describe_os_error(err: OSError) -> str:
    """``<what> at <path>: <reason>`` for a disk, permission or file-system error."""
    writing = err.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG)
    what = "cannot write" if writing else "cannot access"
    where = f" at {err.filename}" if err.filename else ""
    return f"{what}{where}: {err.strerror or err}"


def main(argv: Sequence[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # a wrong flag after a subcommand: that subcommand's usage, not the top-level one
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    debug = args.debug or os.environ.get("CELEBAE_DEBUG", "") not in ("", "0")
    # Messages go to stderr as plain lines while the command runs; the logger is left as found after.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    saved = log.handlers[:], log.level, log.propagate
    log.handlers[:], log.propagate = [handler], False
    log.setLevel(logging.INFO)
    try:
        return args.func(args)
    except CelebaeError as err:
        if debug:
            raise
        print(f"celebae: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # full or read-only disks, permissions: the user's to fix, not a bug
        if debug:
            raise
        print(f"celebae: error: {describe_os_error(err)} (--debug shows the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:  # a training run has saved its checkpoint (Stopped) or nothing ran
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"celebae: stopped by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum  # the shell's code for a process ended by that signal: 130, 143, 138
    finally:
        log.handlers[:], log.propagate = saved[0], saved[2]
        log.setLevel(saved[1])


if __name__ == "__main__":
    sys.exit(main())
