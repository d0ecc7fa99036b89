"""What a code costs: its true size beside the image's, and the code stored in fewer bits per number."""

from __future__ import annotations

import torch

REPORT_STATED_REDUCTION = 95.31  # percent; the report's figure, which its own sizes contradict
RANGE_FIT_IMAGES = 4096  # training images whose codes fit the per-dimension ranges of a quantised code


def compression(code_size: int, image_numel: int) -> dict[str, float]:
    """The true size reduction of a code, beside the report's stated one."""
    return {
        "input_numbers": image_numel,
        "code_numbers": code_size,
        "kept_percent": round(100 * code_size / image_numel, 4),
        "reduction_percent": round(100 * (1 - code_size / image_numel), 4),
        "ratio": image_numel / code_size,
        "report_stated_reduction_percent": REPORT_STATED_REDUCTION,
    }


class CodeQuantiser:
    """Uniform ``bits``-bit storage of each code dimension over its range in training codes
    (values outside the range are clipped to it)."""

    def __init__(self, train_codes: torch.Tensor, bits: int):
        self.lo = train_codes.min(0).values
        self.levels = 2**bits - 1
        self.step = (train_codes.max(0).values - self.lo).clamp_min(1e-8) / self.levels

    def round_trip(self, codes: torch.Tensor) -> torch.Tensor:
        """The codes as they come back after being stored at ``bits`` per number."""
        return ((codes - self.lo) / self.step).round().clamp(0, self.levels) * self.step + self.lo
