"""benchmarks/gpu_check.py, the one call a lent GPU gets, runs end to end here at toy size on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_as_a_cpu_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-dry-run", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "CUDA tests (`pytest -m cuda tests/test_cuda.py`): exit 0, 5 skipped" in text
    for heading in ("## Throughput against the authors' pipeline", "## One epoch of conv nf 64", "## Speed options",
                    "## A split larger than the GPU"):  # fmt: skip
        assert heading in text
    assert "streams from its memory map" in text and "| the improved recipe (cosine + warm-up, flips, EMA) |" in text
    assert "| conv nf=2 |" in text and "| pool nf=2 |" in text
    rows = [line for line in text.splitlines() if line.startswith(("| exp1 |", "| exp2 |", "| exp3 |"))]
    assert len(rows) == 4 + 4 + 3 + 3  # every point of the three studies, and each study's total
    assert "| all three |" in text and "# GPU check" in done.stdout
