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
