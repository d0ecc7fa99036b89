"""The report's claims, each tested on a sweep's points by the stated decision rule (``stats``), at equal
epochs, equal optimiser steps and equal training compute (``points.FOOTINGS``)."""

from __future__ import annotations

import itertools

from .points import FOOTINGS, Point
from .stats import Effect, paired_bootstrap, ratio_of_means


def effect_at(a: Point, b: Point, footing: str) -> tuple[Effect | None, str]:
    """How much lower A's error is than B's at ``footing`` (budget: the smaller of the two totals)."""
    budget = min(a.total(footing), b.total(footing))
    ea, eb = a.errors(footing, budget), b.errors(footing, budget)
    if ea is None or eb is None:
        why = "a run has no per-image errors there" if footing == "epochs" else "a run has no epoch within the budget"
        return None, f"not testable ({why})"
    if ea[0].shape[1] != eb[0].shape[1]:
        return None, "not testable (the runs were scored on different images)"
    where = ea[1] if ea[1] == eb[1] else f"{ea[1]} vs {eb[1]}"
    return paired_bootstrap(ea[0], eb[0]), where


def _pair_lines(a: Point, b: Point, claimed: int, prefix: str) -> tuple[list[str], list[str]]:
    """Lines for one pair at every footing, and the verdict on the claim at each (``claimed``: +1 when the
    claim is that A is better, −1 when it is that A is not better)."""
    lines, verdicts = [], []
    for footing, name in FOOTINGS.items():
        effect, where = effect_at(a, b, footing)
        if effect is None:
            lines.append(f"  - {prefix}, {name}: {where}")
            continue
        verdict = (
            effect.verdict
            if claimed > 0
            else {"supported": "contradicted", "contradicted": "supported"}.get(effect.verdict, "inconclusive")
        )
        verdicts.append((footing, verdict))
        lines.append(f"  - {prefix}, {name} ({where}): **{verdict}**: {a.label} vs {b.label}: {effect.describe()}")
    return lines, verdicts


def _overall(verdicts: list[tuple[str, str]]) -> str:
    """The claim's verdict at the authors' footing (equal epochs) over all its pairs."""
    at_epochs = {v for footing, v in verdicts if footing == "epochs"}
    if not at_epochs:
        return "not testable here"
    return f"**{at_epochs.pop()}**" if len(at_epochs) == 1 else "**mixed**"


def conv_beats_pool(points: list[Point]) -> list[str]:
    pairs = [
        (c, p)
        for c in points
        for p in points
        if c.summary["model"] == "conv"
        and p.summary["model"] == "pool"
        and (c.summary["batch_size"], c.summary["epochs"]) == (p.summary["batch_size"], p.summary["epochs"])
    ]
    lines, verdicts, speed = [], [], []
    for c, p in pairs:
        pair_lines, pair_verdicts = _pair_lines(c, p, +1, f"batch {c.summary['batch_size']}")
        lines += pair_lines
        verdicts += pair_verdicts
        speed.append(_speed_line(p, c))
    params = all(p.summary["params"] < c.summary["params"] for c, p in pairs)
    return [
        f"- *Model 1 (conv) beats Model 2 (pool) on reconstruction error* (the report: at equal epochs): "
        f"{_overall(verdicts)}",
        *lines,
        "- *Model 2 trains faster with far fewer parameters*: fewer parameters "
        f"{'**supported**' if params and pairs else 'not testable here'} (exact counts); speed:",
        *speed,
    ]


def _speed_line(fast: Point, slow: Point) -> str:
    a, b = fast.values("train_images_per_s"), slow.values("train_images_per_s")
    ratio, low, high = ratio_of_means(a, b)
    where = f"batch {fast.summary['batch_size']}: {fast.label} {ratio:.2f}× the images/s of {slow.label}"
    if min(len(a), len(b)) < 2:
        return f"  - {where}, measured once per configuration on a shared machine (no interval)"
    verdict = "supported" if low > 1 else "contradicted" if high < 1 else "inconclusive"
    return f"  - {where} [{low:.2f}, {high:.2f}] over {len(a)} and {len(b)} timed runs: **{verdict}**"


def _conv(points: list[Point]) -> list[Point]:
    return [p for p in points if p.summary["model"] == "conv"]


def bigger_is_better(points: list[Point]) -> list[str]:
    """The loss falls as batch size grows (width fixed) and as width grows (batch size fixed)."""
    out = []
    for vary, fixed in (("batch_size", "nf"), ("nf", "batch_size")):
        lines, verdicts = [], []
        conv = _conv(points)
        for value in sorted({p.summary[fixed] for p in conv}):
            group = sorted((p for p in conv if p.summary[fixed] == value), key=lambda p: p.summary[vary])
            for small, large in itertools.pairwise(group):
                if small.summary[vary] == large.summary[vary]:  # points that differ in something else (a recipe)
                    continue
                prefix = f"{fixed} {value}: {vary} {small.summary[vary]} → {large.summary[vary]}"
                pair_lines, pair_verdicts = _pair_lines(large, small, +1, prefix)
                lines += pair_lines
                verdicts += pair_verdicts
        if lines:
            name = vary.replace("_", " ")
            out += [f"- *Loss falls as {name} grows* (the report: at equal epochs): {_overall(verdicts)}", *lines]
    return out


def larger_runs_beat_baseline(points: list[Point]) -> list[str]:
    base = [p for p in _conv(points) if (p.summary["batch_size"], p.summary["nf"]) == (64, 64)]
    larger = [
        p
        for p in _conv(points)
        if p not in base and p.summary["batch_size"] >= 64 and p.summary["nf"] >= 64
    ]  # fmt: skip
    if not base or not larger:
        return []
    lines, verdicts = [], []
    for p in larger:
        pair_lines, pair_verdicts = _pair_lines(p, base[0], -1, p.label)
        lines += pair_lines
        verdicts += pair_verdicts
    return [f"- *Larger batches and widths do not beat [bs 64, nf 64]*: {_overall(verdicts)}", *lines]


def all_verdicts(points: list[Point]) -> list[str]:
    verdicts = conv_beats_pool(points) if any(p.summary["model"] == "pool" for p in points) else []
    verdicts += bigger_is_better(points) + larger_runs_beat_baseline(points)
    return verdicts or ["- none of the report's comparisons applies to these runs"]
