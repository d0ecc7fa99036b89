"""The decision rule's interval on numbers with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from celebae.studies.stats import paired_bootstrap, ratio_of_means


def test_the_interval_covers_the_true_effect_about_95_percent_of_the_time() -> None:
    """Per-image errors: a shared difficulty per image times independent noise; B's errors are 5 % higher in
    expectation, so the true effect is 10·log10(1.05) dB. Over 200 fresh test sets the 95 % interval should
    contain it about 190 times (binomial spread: 184-196 holds 99 % of the time)."""
    rng = np.random.default_rng(1)
    truth = 10 * math.log10(1.05)
    hits = 0
    for trial in range(200):
        difficulty = rng.lognormal(0, 0.5, 300)
        a = difficulty * rng.normal(1, 0.2, 300)
        b = 1.05 * difficulty * rng.normal(1, 0.2, 300)
        effect = paired_bootstrap(b, a, resamples=1000, seed=trial)  # "B better than A": expect −truth
        hits += effect.db_low <= -truth <= effect.db_high
    assert 180 <= hits <= 198, hits


def test_pairing_and_seeds_shape_the_interval() -> None:
    rng = np.random.default_rng(0)
    difficulty = rng.lognormal(0, 1, (1, 500))
    a, b = difficulty * 1.0, difficulty * 1.1  # B is exactly 10 % worse on every image
    sharp = paired_bootstrap(a, b)
    assert sharp.verdict == "supported" and sharp.db_high - sharp.db_low < 1e-9
    assert sharp.db == pytest.approx(10 * math.log10(1.1)) and sharp.relative[0] == pytest.approx(1 / 1.1 - 1)
    assert "seed variation unknown" in sharp.covers
    # seeds that scatter as much as the difference itself make it inconclusive
    seeds_a = difficulty * rng.normal(1, 0.15, (3, 1))
    seeds_b = difficulty * 1.1 * rng.normal(1, 0.15, (3, 1))
    wide = paired_bootstrap(seeds_a, seeds_b)
    assert wide.verdict == "inconclusive" and wide.covers == "seed variation and image sampling"
    assert paired_bootstrap(b, a).verdict == "contradicted"


def test_ratio_of_means() -> None:
    est, low, high = ratio_of_means([10, 11, 9], [5, 5.5, 4.5])
    assert est == pytest.approx(2) and low < 2 < high and low > 1.5
