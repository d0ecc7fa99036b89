"""Shared fixtures: a private cache, the real CelebA sample (skipped when absent), tiny settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from celebae import Settings

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-sample"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Prepared splits go to a temporary cache, shared by the whole session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CELEBAE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture
def celeba_sample() -> Path:
    if not (SAMPLE / "list_eval_partition.txt").exists():
        pytest.skip(f"the real CelebA sample is not at {SAMPLE} (it lives in the project's shared/ folder)")
    return SAMPLE


def flags(**values: object) -> list[str]:
    """Command-line flags for settings: ``flags(batch_size=16)`` → ``["--batch-size", "16"]``."""
    return [part for key, value in values.items() for part in (f"--{key.replace('_', '-')}", str(value))]


def tiny(tmp_path: Path, **changes) -> Settings:
    """Settings for a training run of a few seconds on synthetic faces."""
    values = dict(
        data="synthetic",
        synthetic_size=200,
        model="conv",
        nf=8,
        batch_size=16,
        epochs=2,
        limit_train=64,
        limit_val=32,
        limit_test=16,
        log_every=2,
        grid_images=4,
        out=str(tmp_path / "run"),
    )
    values.update(changes)
    return Settings(**values)
