"""Suite files on disk: safe YAML with duplicate keys refused, `include:` bases merged, one-line errors."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import yaml


class SuiteError(ValueError):
    """A suite or override problem, phrased as one line that says what to fix."""


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `over` wins; inputs are not modified."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (plain safe_load keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """Safe-load a YAML mapping (duplicate keys refused); errors name the file and line, never echo its content."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}: not UTF-8 text (byte {e.start}); save the suite as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SuiteError(f"{where}: malformed YAML: {problem}") from None
    except OSError as e:
        raise SuiteError(f"{path}: cannot read: {e.strerror}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a YAML mapping")
    return data


def raw_with_includes(path: Path, suites_dir: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The suite file as a mapping, its `include:` base merged under it (relative to the suite's folder)."""
    data = read_yaml(path)
    inc = data.pop("include", None)
    if inc is None:
        return data
    if not isinstance(inc, str) or not inc.strip():
        raise SuiteError(f"{path}: include must be a file name, e.g. include: _cifar100_lt.yaml")
    base_path = (path.parent / inc).resolve()  # relative to the suite's folder
    if Path(inc).is_absolute() and not _under_allowed(base_path, path, suites_dir):
        raise SuiteError(f"{path}: include '{inc}' is outside the suites and working folders; "
                         f"copy the base next to the suite")
    if base_path in seen:
        raise SuiteError(f"{path}: include cycle through {base_path.name}")
    if not base_path.is_file():
        raise SuiteError(f"{path}: include '{inc}' not found next to the suite")
    return deep_merge(raw_with_includes(base_path, suites_dir, (*seen, base_path)), data)


def _under_allowed(target: Path, suite_path: Path, suites_dir: Path) -> bool:
    """An absolute include must lie under the suites folder, the suite's own folder or the working folder."""
    roots = [suites_dir, suite_path.parent]
    with contextlib.suppress(OSError):  # an unsearchable working folder admits nothing
        roots.append(Path.cwd())
    return any(target.is_relative_to(r.resolve()) for r in roots)
