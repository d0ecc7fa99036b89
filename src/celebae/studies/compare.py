"""``celebae compare A... --vs B...``: is one group of runs really better than another? One screen, by the
same decision rule as the report's claims (``stats``)."""

from __future__ import annotations

import numpy as np

from ..errors import CelebaeError
from .points import Point, expand_runs
from .stats import METHOD, paired_bootstrap, ratio_of_means


def _group(patterns: list[str], name: str) -> Point:
    runs = expand_runs(patterns)
    errors = [r.test_errors() for r in runs]
    missing = [str(r.path) for r, e in zip(runs, errors, strict=True) if e is None]
    if missing:
        raise CelebaeError(f"{missing[0]} has no test_errors.npy (trained before celebae wrote it); train it again")
    return Point(name, runs)


def compare(a: list[str], b: list[str]) -> str:
    """The answer, as text: each group's test scores, the effect of A against B with its interval, the verdict."""
    group_a, group_b = _group(a, "A"), _group(b, "B")
    ea = np.stack([r.test_errors() for r in group_a.runs])
    eb = np.stack([r.test_errors() for r in group_b.runs])
    sa, sb = group_a.summary, group_b.summary
    if ea.shape[1] != eb.shape[1] or (sa["data"], sa["splits"]["test"]) != (sb["data"], sb["splits"]["test"]):
        raise CelebaeError(
            f"A and B were tested on different images ({sa['data']}: {ea.shape[1]} vs {sb['data']}: "
            f"{eb.shape[1]} test images); compare runs of the same data and limits"
        )
    effect = paired_bootstrap(ea, eb)
    answer = {
        "supported": "A has the lower error",
        "contradicted": "B has the lower error",
        "inconclusive": "no difference shown (the interval holds zero)",
    }[effect.verdict]
    lines = []
    for name, group in (("A", group_a), ("B", group_b)):
        mse, mse_sd = group.mean_std("test_mse")
        psnr, psnr_sd = group.mean_std("test_psnr")
        spread = f" ± {mse_sd:.5f}" if mse_sd is not None else ""
        lines.append(
            f"{name}: {len(group.runs)} run(s) of {group.label}: test MSE {mse:.5f}{spread}, "
            f"PSNR {psnr:.2f}{f' ± {psnr_sd:.2f}' if psnr_sd is not None else ''} dB "
            f"({sa['epochs'] if name == 'A' else sb['epochs']} epochs)"
        )
    lines += [f"A against B: {effect.describe()}", f"Verdict: {answer} ({effect.verdict} that A is better)."]
    ips_a, ips_b = group_a.values("train_images_per_s"), group_b.values("train_images_per_s")
    if ips_a and ips_b:
        ratio, low, high = ratio_of_means(ips_a, ips_b)
        interval = f" [{low:.2f}, {high:.2f}]" if min(len(ips_a), len(ips_b)) > 1 else " (timed once each)"
        lines.append(f"Training speed: A runs at {ratio:.2f}×{interval} the images/s of B.")
    lines.append(f"Method: {METHOD}.")
    return "\n".join(lines)
