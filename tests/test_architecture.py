"""The layers and their dependency direction, checked on the source: who may import whom, no cycles, no hidden imports.

schema <- components (data, backbones, methods) <- engine, config <- run <- tools <- cli; report reads config.suite and
run.records only (and schema.files: atomic writes). Components and the engine know nothing of YAML, W&B, result files
or the CLI.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "benchmark"
COMPONENTS = {"data", "backbones", "methods"}
# area -> the areas (or modules) of the package it may import besides itself
ALLOWED: dict[str, set[str]] = {
    "schema": set(),
    "data": {"schema"},
    "backbones": {"schema", "data"},
    "methods": {"schema", "data"},
    "engine": {"schema"} | COMPONENTS,
    "config": {"schema"} | COMPONENTS,
    "report": {"config.suite", "run.records", "schema.files"},
    "run": {"schema", "engine", "config"} | COMPONENTS,
    "tools": {"schema", "engine", "config", "run"} | COMPONENTS,
    "cli": {"schema", "engine", "config", "run", "tools", "report", "cli_team", "cli_data", "cli_files", "cli_common",
            "__init__"} | COMPONENTS,
    "__main__": {"cli"},
    "__init__": set(),
}
EXTERNAL_FORBIDDEN = {"wandb", "yaml", "typer", "rich", "submitit"}
LOW_LAYERS = ["schema", "engine", *sorted(COMPONENTS)]


def _imports(path: Path, *, nested_only: bool = False) -> set[str]:
    """Modules named by the file's imports (`from pkg import name` adds pkg.name too); relative imports fail."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree)
    if nested_only:
        nodes = (n for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import (use the absolute module path)"
            if node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    return names


def _area(path: Path, pkg: Path = PKG) -> str:
    rel = path.relative_to(pkg)
    return rel.parts[0] if len(rel.parts) > 1 else "cli" if rel.stem.startswith("cli_") else rel.stem


def _own(names: set[str]) -> set[str]:
    return {n.removeprefix("benchmark.") for n in names if n.startswith("benchmark.")} | (
        {"__init__"} if "benchmark" in names else set())


ALL = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(PKG)))
def test_each_module_imports_only_the_layers_below_it(path: Path) -> None:
    area = _area(path)
    allowed = ALLOWED[area] | {area}
    bad = {n for n in _own(_imports(path)) if not any(n == a or n.startswith(a + ".") for a in allowed)
           and n.split(".")[0] in ALLOWED}
    assert not bad, f"{path.relative_to(PKG)} ({area}) imports {sorted(bad)}; it may import {sorted(ALLOWED[area])}"


@pytest.mark.parametrize("path", [p for p in ALL if _area(p) in LOW_LAYERS], ids=lambda p: str(p.relative_to(PKG)))
def test_components_and_engine_know_nothing_of_yaml_wandb_or_the_cli(path: Path) -> None:
    bad = {m for m in _imports(path) if m.split(".")[0] in EXTERNAL_FORBIDDEN}
    assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [p for p in ALL if _area(p) == "report"] + [PKG / "config" / "suite.py",
                                  PKG / "run" / "records.py", PKG / "schema" / "settings.py"],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_reporting_side_never_imports_torch(path: Path) -> None:
    bad = {m for m in _imports(path) if m == "torch" or m.startswith("torch.")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [p for p in ALL if _area(p) not in ("cli", "cli_data", "cli_files", "cli_team")],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_no_function_level_import_of_the_package_outside_the_cli(path: Path) -> None:
    hidden = sorted(n for n in _imports(path, nested_only=True) if n == "benchmark" or n.startswith("benchmark."))
    assert not hidden, f"{path.relative_to(PKG)} hides imports of {hidden} inside functions; import at module level"


def test_the_layer_rules_catch_a_crossing(tmp_path: Path) -> None:
    copy = tmp_path / "benchmark"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    planted = copy / "methods" / "planted.py"
    planted.write_text("from benchmark import run\nfrom benchmark.engine.loop import fit\n")
    names = _own(_imports(planted))
    assert {"run", "engine.loop"} <= names
    assert not any(n.startswith(a) for n in names for a in ALLOWED["methods"] | {"methods"})
    planted.write_text("from . import losses\n")
    with pytest.raises(AssertionError, match="relative import"):
        _imports(planted)


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
    copy = tmp_path / "benchmark"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert find_cycle(import_graph(copy)) is None
    registry = copy / "schema" / "registry.py"
    registry.write_text(registry.read_text() + "\n\ndef _late() -> None:\n    from benchmark import cli  # noqa\n")
    cycle = find_cycle(import_graph(copy))
    assert cycle is not None and "benchmark.schema.registry" in cycle and "benchmark.cli" in cycle
    registry.write_text(registry.read_text().rsplit("\n\ndef _late", 1)[0] + "\n")
    losses = copy / "methods" / "losses.py"  # the bottom-of-file registration import this layout removed
    losses.write_text(losses.read_text() + "from benchmark.methods import las  # noqa\n")
    cycle = find_cycle(import_graph(copy))
    assert cycle is not None and {"benchmark.methods.losses", "benchmark.methods.las"} <= set(cycle)
