"""Suite YAML schema, loading (include, strict validation) and expansion into planned runs (no torch)."""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from benchmark.schema.settings import RunSettings, Strict

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITES_DIR = REPO_ROOT / "suites"

# Overrides applied by --smoke: a handful of batches, a trimmed test set, the mixer active in every epoch.
SMOKE_OVERRIDES: dict[str, Any] = {
    "train.epochs": 2,
    "train.steps_per_epoch": 3,
    "train.batch_size": 32,
    "eval.test_limit_per_class": 10,
    "mixer.start": -1,
    "mixer.end": 0,
}


class SuiteError(ValueError):
    """A suite or override problem, phrased as one line that says what to fix."""


class Shots(Strict):
    """Many/medium/few thresholds on train counts: many n > many_above, few n < few_below."""

    many_above: int = 100
    few_below: int = 20


class ColumnSpec(Strict):
    """A column whose value is a setting (e.g. imbalance ratio 100 / 50 / 10)."""

    name: str
    set: dict[str, Any] = Field(default_factory=dict)


class RowSpec(Strict):
    """One table row: display name as in the paper, method axes, overrides and the paper's values."""

    name: str = Field(min_length=1)
    method: dict[str, str] = Field(default_factory=dict, description="loss / rule / mixer")
    set: dict[str, Any] = Field(default_factory=dict, description="overrides, nested or dotted keys")
    paper: dict[str, Any] = Field(default_factory=dict, description="metric -> value, or column -> {metric}")
    cited: bool = Field(False, description="the paper copies this row from another paper: never run")
    note: str | None = None

    @field_validator("method")
    @classmethod
    def _axes(cls, v: dict[str, str]) -> dict[str, str]:
        bad = set(v) - {"loss", "rule", "mixer"}
        if bad:
            raise ValueError(f"unknown method axis {sorted(bad)}; use loss, rule, mixer")
        return v


class SuiteSpec(Strict):
    """A paper table as a suite of training runs."""

    suite: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    version: int = Field(ge=1)
    title: str
    source: str | None = Field(None, description="where the paper numbers come from")
    defaults: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(min_length=1)
    shots: Shots = Shots()
    metrics: list[str] = Field(default_factory=lambda: ["acc/all", "acc/many", "acc/medium", "acc/few"],
                               min_length=1)
    columns: list[ColumnSpec] = Field(default_factory=list)
    rows: list[RowSpec] = Field(min_length=1)
    smoke: dict[str, Any] = Field(default_factory=dict, description="extra overrides for --smoke")
    report_epoch: Literal["best", "last"] = Field("best", description="which epoch the table shows (code: best)")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if any(s < 0 or s >= 2**32 for s in v) or len(set(v)) != len(v):
            raise ValueError("seeds must be distinct integers in [0, 2^32)")
        return v


@dataclass(frozen=True)
class RunSpec:
    """One planned training run."""

    suite: str
    suite_version: int
    row: str
    column: str | None
    seed: int
    settings: RunSettings
    smoke: bool

    @property
    def cell(self) -> str:
        """Path-safe name of the table cell (row, and column when the table has columns)."""
        return slug(self.row) + (f"__{slug(self.column)}" if self.column else "")

    @property
    def config_hash(self) -> str:
        return self.settings.config_hash()

    @property
    def run_hash(self) -> str:
        """The settings hash with seed and (from version 2 on) the suite's version: the run's identity."""
        return self.settings.run_hash(self.suite_version)

    @property
    def run_id(self) -> str:
        """Stable id: cell, seed and the hash of the resolved settings (a changed setting, a new id)."""
        prefix = "smoke-" if self.smoke else ""
        return f"{prefix}{self.cell}-s{self.seed}-{self.run_hash}"


def slug(name: str) -> str:
    """Lower-case, path- and W&B-safe form of a display name ("CE + CMO" -> "ce-cmo")."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower().replace("+", " ")).strip("-")
    return s or "x"


# ---------------------------------------------------------------------------------------------- loading


def find_suite(name_or_path: str, suites_dir: Path = SUITES_DIR) -> Path:
    """A suite file by path, or by name in the suites folder."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise SuiteError(f"{p}: no such suite file")
        return p
    cand = suites_dir / f"{name_or_path}.yaml"
    if cand.is_file():
        return cand
    known = list_suite_names(suites_dir)
    import difflib

    close = difflib.get_close_matches(name_or_path, known, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise SuiteError(f"no suite named '{name_or_path}' in {suites_dir}.{hint} Run 'lt-bench suites list'.")


def list_suite_names(suites_dir: Path = SUITES_DIR) -> list[str]:
    """Names of the suites in a folder (files starting with '_' are include-only bases)."""
    return sorted(p.stem for p in suites_dir.glob("*.yaml") if not p.name.startswith("_"))


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


def _raw_with_includes(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    data = read_yaml(path)
    inc = data.pop("include", None)
    if inc is None:
        return data
    if not isinstance(inc, str) or not inc.strip():
        raise SuiteError(f"{path}: include must be a file name, e.g. include: _cifar100_lt.yaml")
    base_path = (path.parent / inc).resolve()  # relative to the suite's folder
    if Path(inc).is_absolute() and not _under_allowed(base_path, path):
        raise SuiteError(f"{path}: include '{inc}' is outside the suites and working folders; "
                         f"copy the base next to the suite")
    if base_path in seen:
        raise SuiteError(f"{path}: include cycle through {base_path.name}")
    if not base_path.is_file():
        raise SuiteError(f"{path}: include '{inc}' not found next to the suite")
    return deep_merge(_raw_with_includes(base_path, (*seen, base_path)), data)


def _under_allowed(target: Path, suite_path: Path) -> bool:
    """An absolute include must lie under the suites folder, the suite's own folder or the working folder."""
    roots = [SUITES_DIR, suite_path.parent]
    with contextlib.suppress(OSError):  # an unsearchable working folder admits nothing
        roots.append(Path.cwd())
    return any(target.is_relative_to(r.resolve()) for r in roots)


def check_row_names(rows: list[RowSpec], where: str) -> None:
    """Rows must differ beyond letter case and punctuation: run ids and record folders come from the name's slug."""
    first: dict[str, str] = {}
    for row in rows:
        key = slug(row.name)
        other = first.setdefault(key, row.name)
        if other == row.name:
            continue  # the very same name: left to the exact-duplicate check
        if other.lower() == row.name.lower():
            raise SuiteError(f"{where}: rows '{other}' and '{row.name}' differ only in case; rename one")
        raise SuiteError(f"{where}: rows '{other}' and '{row.name}' share the folder name '{key}'; rename one")


def load_suite(name_or_path: str, suites_dir: Path = SUITES_DIR) -> tuple[SuiteSpec, Path]:
    """Load, include and validate a suite; every row's settings are resolved once to catch bad values."""
    path = find_suite(name_or_path, suites_dir)
    raw = _raw_with_includes(path)
    try:
        spec = SuiteSpec.model_validate(raw)
    except ValidationError as e:
        raise SuiteError(f"{path}: {format_validation_error(e)}") from None
    if spec.suite != path.stem:
        raise SuiteError(f"{path}: suite: '{spec.suite}' differs from the file name '{path.stem}'; "
                         f"make them the same (records are filed under the suite name)")
    check_row_names(spec.rows, str(path))
    for col in spec.columns or [None]:
        for row in spec.rows:
            _resolve(spec, row, col, seed=spec.seeds[0], overrides={}, where=str(path))
    return spec, path


def format_validation_error(e: ValidationError) -> str:
    """The first pydantic error as 'field.path: message' (plus a count of the others)."""
    errs = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")  # a misspelt key explains most
    first = errs[0]
    loc = ".".join(str(x) for x in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; 'lt-bench suites show' lists a valid suite)"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {msg}{more}"


# ---------------------------------------------------------------------------------------------- merging


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `over` wins; inputs are not modified."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{'train.epochs': 2} -> {'train': {'epochs': 2}}; nested values pass through and merge."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = value
        for part in reversed(str(key).split(".")):
            node = {part: node}
        out = deep_merge(out, node)
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """Command-line `--set key=value` pairs; values are YAML scalars (0.5, true, [160, 180])."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SuiteError(f"--set '{item}': expected key=value, e.g. --set train.epochs=10")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _resolve(spec: SuiteSpec, row: RowSpec, col: ColumnSpec | None, seed: int,
             overrides: dict[str, Any], where: str) -> RunSettings:
    layers = [
        nest(spec.defaults),
        {"eval": {"many_above": spec.shots.many_above, "few_below": spec.shots.few_below}},
        nest(col.set) if col else {},
        {"method": dict(row.method)},
        nest(row.set),
        nest(overrides),
        {"seed": seed},
    ]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    try:
        return RunSettings.model_validate(merged)
    except ValidationError as e:
        cell = f"row '{row.name}'" + (f", column '{col.name}'" if col else "")
        raise SuiteError(f"{where}: {cell}: {format_validation_error(e)}") from None


def select_rows(spec: SuiteSpec, rows: list[str] | None) -> set[str]:
    """Row names selected by display name or slug (all rows when None); an unknown one is an error."""
    if rows is None:
        return {r.name for r in spec.rows}
    by_key = {k: r.name for r in spec.rows for k in (r.name, slug(r.name))}
    missing = [r for r in rows if r not in by_key]
    if missing:
        import difflib

        close = difflib.get_close_matches(missing[0], list(by_key), n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise SuiteError(f"suite '{spec.suite}' has no row '{missing[0]}'.{hint}")
    return {by_key[r] for r in rows}


def plan(spec: SuiteSpec, *, seeds: list[int] | None = None, overrides: dict[str, Any] | None = None,
         smoke: bool = False, where: str = "", rows: list[str] | None = None) -> list[RunSpec]:
    """Expand a suite into runs: (columns x) rows x seeds, in table order; cited rows are not run.

    A smoke plan runs the first seed only unless `seeds` is given; `rows` (display names or slugs) selects rows.
    Settings precedence: suite defaults < column < row < overrides (--set).

    Example:
        >>> spec, path = load_suite("quickstart")
        >>> [r.run_id for r in plan(spec)]  # doctest: +SKIP
    """
    over = dict(overrides or {})
    if "seed" in over:
        raise SuiteError("--set seed=... would be replaced by each planned seed: use --seeds instead")
    if smoke:
        over = {**SMOKE_OVERRIDES, **spec.smoke, **over}
    wanted = select_rows(spec, rows)
    runs = []
    for col in spec.columns or [None]:
        for row in spec.rows:
            if row.cited or row.name not in wanted:
                continue
            for seed in seeds if seeds is not None else (spec.seeds[:1] if smoke else spec.seeds):
                settings = _resolve(spec, row, col, seed, over, where or spec.suite)
                runs.append(RunSpec(spec.suite, spec.version, row.name, col.name if col else None,
                                    seed, settings, smoke))
    return runs
