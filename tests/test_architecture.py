"""Dependency direction: components and the loop know nothing of YAML, W&B, files of results or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "benchmark"
COMPONENTS = ["data", "backbones", "methods", "metrics.py", "train.py", "checkpoint.py", "stage2.py", "packed.py"]
FORBIDDEN = {"wandb", "yaml", "typer", "benchmark.config", "benchmark.records", "benchmark.tracking",
             "benchmark.runner", "benchmark.report", "benchmark.cli", "benchmark.executors"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _files(entry: str) -> list[Path]:
    p = PKG / entry
    return sorted(p.rglob("*.py")) if p.is_dir() else [p]


@pytest.mark.parametrize("path", [f for e in COMPONENTS for f in _files(e)], ids=lambda p: str(p.relative_to(PKG)))
def test_components_do_not_import_the_outer_layers(path: Path) -> None:
    bad = {m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _files("report") + _files("records.py") + _files("config.py") + _files("settings.py"),
                         ids=lambda p: str(p.relative_to(PKG)))
def test_reporting_side_never_imports_torch(path: Path) -> None:
    bad = {m for m in _imports(path) if m == "torch" or m.startswith("torch.") or m.startswith("benchmark.train")}
    assert not bad, f"{path.name} imports {sorted(bad)}"
