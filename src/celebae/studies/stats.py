"""Is A really better than B? A paired, hierarchical bootstrap of reconstruction error, and the decision rule.

Each configuration is a group of runs that differ only in their seed; every run has the per-image MSE of
the same images in the same order (``test_errors.npy``, or ``val_errors.npy`` after some epoch). One
resample draws, with replacement, the seeds of A and the seeds of B (seed-to-seed variation), then the
images (image sampling), the same images for both (the pairing), and takes the ratio of the two mean
errors. The effect is reported in dB of PSNR (10·log10(MSE_B / MSE_A), positive when A's error is lower)
and as A's relative MSE (MSE_A / MSE_B − 1), each with the 2.5–97.5 % percentile interval.

The rule: a claim that A is better is **supported** when the whole interval is above zero,
**contradicted** when the whole interval is below zero, and **inconclusive** otherwise. With one seed per
configuration the seed variation is unknown and only image sampling is covered; the result says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
METHOD = (
    f"paired hierarchical bootstrap ({RESAMPLES} resamples: seeds within each configuration, then test images, "
    f"the same images for both), {LEVEL:.0%} percentile interval"
)


@dataclass(frozen=True)
class Effect:
    """How much lower A's error is than B's, with its interval, and the verdict on "A is better"."""

    db: float  # 10·log10(MSE_B / MSE_A): positive when A is better
    db_low: float
    db_high: float
    seeds_a: int
    seeds_b: int
    images: int

    @property
    def relative(self) -> tuple[float, float, float]:
        """A's MSE relative to B's, minus one (negative when A is better): estimate, low, high."""
        return tuple(10 ** (-d / 10) - 1 for d in (self.db, self.db_high, self.db_low))

    @property
    def verdict(self) -> str:
        if self.db_low > 0:
            return "supported"
        if self.db_high < 0:
            return "contradicted"
        return "inconclusive"

    @property
    def covers(self) -> str:
        if min(self.seeds_a, self.seeds_b) < 2:
            return "image sampling only (one seed per configuration: seed variation unknown)"
        return "seed variation and image sampling"

    def describe(self) -> str:
        rel, rel_lo, rel_hi = self.relative
        return (
            f"{self.db:+.2f} dB [{self.db_low:+.2f}, {self.db_high:+.2f}], "
            f"MSE {rel:+.1%} [{rel_lo:+.1%}, {rel_hi:+.1%}] "
            f"({self.seeds_a} vs {self.seeds_b} seeds, {self.images:,} images; covers {self.covers})"
        )


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> Effect:
    """``a`` and ``b``: per-image errors, seeds × images, the same images in the same order for both."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired errors need the same images: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    stats = np.empty(resamples)
    for start in range(0, resamples, 250):  # chunks keep the image weights small (250 × images)
        count = min(250, resamples - start)
        mean_a = a[rng.integers(0, len(a), (count, len(a)))].mean(1)  # count × images: seeds resampled
        mean_b = b[rng.integers(0, len(b), (count, len(b)))].mean(1)
        weights = rng.multinomial(n, np.full(n, 1 / n), size=count)  # images resampled, shared by A and B
        stats[start : start + count] = 10 * np.log10((weights * mean_b).sum(1) / (weights * mean_a).sum(1))
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return Effect(10 * math.log10(b.mean() / a.mean()), float(low), float(high), len(a), len(b), n)


def ratio_of_means(a: list[float], b: list[float], resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, ...]:
    """mean(a) / mean(b) and its interval, resampling the values of each group (repeated timings)."""
    a_, b_ = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    stats = rng.choice(a_, (resamples, len(a_))).mean(1) / rng.choice(b_, (resamples, len(b_))).mean(1)
    low, high = np.quantile(stats, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(a_.mean() / b_.mean()), float(low), float(high)
