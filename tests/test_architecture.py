"""The package's shape: layers that import only downwards, no import cycles, short functions, one module that
knows the run directory."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import celebae

PACKAGE = Path(celebae.__file__).parent
MAX_FUNCTION_LINES = 60
# docs/design.md's layers, bottom first: a module imports only from its own layer and the ones before it
LAYERS = (
    "errors",
    "files",
    "data",
    "models",
    "quality",
    "training",
    "use",
    "evaluation",
    "studies",
    "demo",
    "cli",
    "__main__",
)
RUN_FILES = ("summary.json", "config.json", "metrics.csv", "failed.json", ".safetensors", "eval-")


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from . import checkpoint` imports a module; `from .data import Batches` imports the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # a package's __init__ re-exports its submodules; a submodule's import of a sibling is not through it
    for name in graph:
        graph[name] -= {p for p in graph[name] if name.startswith(p + ".")}
    assert graph["celebae.training.loop"] >= {"celebae.training.rundir", "celebae.quality.metrics"}  # sees real imports
    assert _cycle(graph) is None, " → ".join(_cycle(graph))


def _layer(module: str) -> int:
    """The position in LAYERS of a module's layer (``celebae`` itself, the public API, is above them all)."""
    parts = module.split(".")
    return len(LAYERS) if len(parts) == 1 else LAYERS.index(parts[1])


def _upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} → {b}" for a, targets in graph.items() for b in targets if _layer(b) > _layer(a))


def test_layers_import_only_downwards() -> None:
    modules = _modules()
    assert {m.split(".")[1] for m in modules if m != "celebae"} == set(LAYERS)  # every room is a known layer
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _upward_imports(graph) == []
    # the rule has teeth: the loop importing the trained-run loader would be an upward import
    assert _upward_imports({"celebae.training.loop": {"celebae.use.trained"}}) == [
        "celebae.training.loop → celebae.use.trained"
    ]


def test_every_subpackage_says_what_it_owns() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "Imports only from" in doc, f"{init.relative_to(PACKAGE)} needs a docstring with its layer rule"


def test_no_long_functions() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({lines} lines)")
    assert not long, long


def _strings_outside_docstrings(tree: ast.AST) -> list[str]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_only_rundir_spells_run_directory_files() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("rundir.py", "checkpoint.py", "hub.py"):  # the layout; checkpoints' and Hub folders' own
            continue
        for text in _strings_outside_docstrings(ast.parse(path.read_text())):
            if any(f in text for f in RUN_FILES):
                offenders.append(f"{path.relative_to(PACKAGE)}: {text!r}")
    assert not offenders, offenders


@pytest.mark.parametrize("module", ["training", "evaluation", "training.rundir", "models", "quality.losses", "use"])
def test_modules_are_not_shadowed_by_functions(module: str) -> None:
    import importlib

    assert importlib.import_module(f"celebae.{module}").__name__ == f"celebae.{module}"
    assert callable(celebae.train) and callable(celebae.evaluate)
