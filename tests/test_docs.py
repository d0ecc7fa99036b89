"""The front door stays true: every Python and shell block of the README and the docs runs (at its tiny size)
or says why not, the command-line reference is the parser's, and the wheel's metadata is complete."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"(?:<!-- not run: (?P<reason>[^>]*?) -->\n)?```(?P<lang>python|bash)\n(?P<code>.*?)```", re.S)
GENERATED = ("model-card", "-sample")  # study reports and an example card, written by celebae itself


def _blocks() -> list[tuple[str, int, str, str, str | None]]:
    found = []
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        if any(part in name for part in GENERATED):
            continue
        text = page.read_text()
        for m in FENCE.finditer(text):
            found.append((name, text[: m.start()].count("\n") + 1, m["lang"], m["code"], m["reason"]))
    return found


BLOCKS = _blocks()
RUN = [b for b in BLOCKS if b[4] is None]


def test_every_block_runs_or_says_why_not() -> None:
    assert len(BLOCKS) >= 10 and len(RUN) >= 2  # the rest need CelebA, a trained run, a GPU or a cluster
    unexplained = [f"{page}:{line}" for page, line, _, _, reason in BLOCKS if reason is not None and len(reason) < 10]
    assert not unexplained, f"blocks marked not run without a reason: {unexplained}"


@pytest.mark.parametrize("page,line,lang,code,reason", RUN, ids=[f"{b[0]}:{b[1]}" for b in RUN])
def test_block_runs(page: str, line: int, lang: str, code: str, reason: None, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{page}:{line} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def test_cli_reference_is_the_parsers() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 170
    for link in re.findall(r"\]\(([^)#]+)\)", text):  # links that work on a package index page too
        assert link.startswith("https://"), f"README link {link} is relative; PyPI cannot follow it"


def test_wheel_metadata() -> None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and "LICENSE" in project["license-files"]
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(project["urls"])
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (ROOT / "src" / "celebae" / "py.typed").exists()


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_example_runs(example: str, tmp_path: Path) -> None:
    """The walk-throughs in examples/ run as written, at their default (tiny) size."""
    done = subprocess.run([sys.executable, str(ROOT / "examples" / example)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
