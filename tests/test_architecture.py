"""Dependency direction: components and the loop know nothing of YAML, W&B, files of results or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "benchmark"
COMPONENTS = ["data", "backbones", "methods", "registry.py", "settings.py", "components.py"]
ENGINE = ["engine"]
FORBIDDEN = {"wandb", "yaml", "typer", "benchmark.config", "benchmark.records", "benchmark.tracking",
             "benchmark.runner", "benchmark.report", "benchmark.cli", "benchmark.executors", "benchmark.packing",
             "benchmark.worker", "benchmark.bench"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import (use the absolute module path)"
            if node.module == "benchmark":  # from benchmark import x
                names.update(f"benchmark.{a.name}" for a in node.names)
            elif node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    return names


def _files(entry: str) -> list[Path]:
    p = PKG / entry
    return sorted(p.rglob("*.py")) if p.is_dir() else [p]


def _forbidden(path: Path, forbidden: set[str]) -> set[str]:
    return {m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden)}


@pytest.mark.parametrize("path", [f for e in COMPONENTS for f in _files(e)], ids=lambda p: str(p.relative_to(PKG)))
def test_components_do_not_import_the_engine_or_outer_layers(path: Path) -> None:
    bad = _forbidden(path, FORBIDDEN | {"benchmark.engine"})
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [f for e in ENGINE for f in _files(e)], ids=lambda p: str(p.relative_to(PKG)))
def test_engine_does_not_import_the_outer_layers(path: Path) -> None:
    bad = _forbidden(path, FORBIDDEN)
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _files("report") + _files("records.py") + _files("config.py") + _files("settings.py"),
                         ids=lambda p: str(p.relative_to(PKG)))
def test_reporting_side_never_imports_torch(path: Path) -> None:
    bad = {m for m in _imports(path) if m == "torch" or m.startswith("torch.") or m.startswith("benchmark.engine.loop")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def import_graph(pkg: Path) -> dict[str, set[str]]:
    """Module -> the package's own modules it imports, at module level or inside functions alike."""
    mods = {".".join(p.relative_to(pkg.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in pkg.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for imported in _imports(path):
            # `from benchmark.data import x` names a module x or a symbol of benchmark.data: take the longest module
            parts = imported.split(".")
            for k in range(len(parts), 0, -1):
                if ".".join(parts[:k]) in mods:
                    deps.add(".".join(parts[:k]))
                    break
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {d for d in deps if d != name and not (package.startswith(d) and d != package)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (None: the graph has none); package __init__s that only import their
    own submodules for registration count like any other module."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycles() -> None:
    assert find_cycle(import_graph(PKG)) is None, find_cycle(import_graph(PKG))


def test_a_planted_cycle_is_found(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "benchmark"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert find_cycle(import_graph(copy)) is None
    registry = copy / "registry.py"
    registry.write_text(registry.read_text() + "\n\ndef _late() -> None:\n    from benchmark import cli  # noqa\n")
    cycle = find_cycle(import_graph(copy))
    assert cycle is not None and "benchmark.registry" in cycle and "benchmark.cli" in cycle
    registry.write_text(registry.read_text().rsplit("\n\ndef _late", 1)[0] + "\n")
    losses = copy / "methods" / "losses.py"  # the bottom-of-file registration import this layout removed
    losses.write_text(losses.read_text() + "from benchmark.methods import las  # noqa\n")
    cycle = find_cycle(import_graph(copy))
    assert cycle is not None and {"benchmark.methods.losses", "benchmark.methods.las"} <= set(cycle)
