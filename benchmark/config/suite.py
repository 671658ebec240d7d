"""Suite YAML schema, loading (include, strict validation) and expansion into planned runs (no torch)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from benchmark.config.suite_files import SuiteError, deep_merge, raw_with_includes
from benchmark.schema.settings import RunSettings, Strict
from benchmark.schema.suggest import did_you_mean

REPO_ROOT = Path(__file__).resolve().parents[2]


def shipped_dir(name: str, checkout: Path) -> Path:
    """A data folder the wheel ships inside the package (benchmark/<name>/, copied at build time by setup.py), else
    the checkout's own folder (a source tree or an editable install: one source of truth)."""
    packaged = Path(__file__).resolve().parents[1] / name
    return packaged if packaged.is_dir() else checkout


SUITES_DIR = shipped_dir("suites", REPO_ROOT / "suites")
PERF_DIR = shipped_dir("perf", REPO_ROOT / "reports" / "perf")

# Overrides applied by --smoke: a handful of batches, a trimmed test set, the mixer active in every epoch.
SMOKE_OVERRIDES: dict[str, Any] = {
    "train.epochs": 2,
    "train.steps_per_epoch": 3,
    "train.batch_size": 32,
    "eval.test_limit_per_class": 10,
    "mixer.start": -1,
    "mixer.end": 0,
}


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
    method: dict[str, Any] = Field(default_factory=dict, description="loss / rule / mixer, and their *_args")
    set: dict[str, Any] = Field(default_factory=dict, description="overrides, nested or dotted keys")
    paper: dict[str, Any] = Field(default_factory=dict, description="metric -> value, or column -> {metric}")
    cited: bool = Field(False, description="the paper copies this row from another paper: never run")
    note: str | None = None

    @field_validator("method")
    @classmethod
    def _axes(cls, v: dict[str, Any]) -> dict[str, Any]:
        axes = {"loss", "rule", "mixer"}
        bad = set(v) - axes - {f"{a}_args" for a in axes}
        if bad:
            raise ValueError(f"unknown method axis {sorted(bad)}; use loss, rule, mixer (options in loss_args, "
                             f"rule_args, mixer_args)")
        for k, val in v.items():
            if not isinstance(val, dict if k.endswith("_args") else str):
                raise ValueError(f"method.{k} must be {'a mapping' if k.endswith('_args') else 'a component name'}")
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
    timed: bool = Field(False, description="the rows' training times are compared: they train one after another in "
                                           "one process on one device, never packed or data-parallel (Table 16)")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if any(s < 0 or s >= 2**32 for s in v) or len(set(v)) != len(v):
            raise ValueError("seeds must be distinct integers in [0, 2^32)")
        return v

    @model_validator(mode="after")
    def _rows_and_paper_keys(self) -> SuiteSpec:
        seen: dict[str, str] = {}
        for row in self.rows:  # rows share a results folder (the slug) when their names differ only by case
            if slug(row.name) in seen:
                raise ValueError(f"rows: two rows named '{seen[slug(row.name)]}' and '{row.name}' (names must "
                                 f"differ beyond case and punctuation); rename one")
            seen[slug(row.name)] = row.name
        columns = [c.name for c in self.columns]
        for row in self.rows:
            for key, value in row.paper.items():
                if isinstance(value, dict) and key in columns:
                    bad = [m for m in value if m not in self.metrics]
                    where = f"rows: '{row.name}': paper: '{key}'"
                else:
                    bad = [key] if key not in self.metrics else []
                    where = f"rows: '{row.name}': paper"
                if bad:
                    choices = self.metrics + ([] if isinstance(value, dict) and key in columns else columns)
                    raise ValueError(f"{where}: unknown metric '{bad[0]}'.{did_you_mean(bad[0], choices)} "
                                     f"Metrics: {', '.join(self.metrics)}")
        return self


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
    hint = did_you_mean(name_or_path, known)
    raise SuiteError(f"no suite named '{name_or_path}' in {suites_dir}.{hint} Run 'lt-bench suites list'.")


def list_suite_names(suites_dir: Path = SUITES_DIR) -> list[str]:
    """Names of the suites in a folder (files starting with '_' are include-only bases)."""
    return sorted(p.stem for p in suites_dir.glob("*.yaml") if not p.name.startswith("_"))


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
    raw = raw_with_includes(path, suites_dir)
    try:
        spec = SuiteSpec.model_validate(raw)
    except ValidationError as e:
        raise SuiteError(f"{path}: {format_validation_error(e, SuiteSpec)}") from None
    if spec.suite != path.stem:
        raise SuiteError(f"{path}: suite: '{spec.suite}' differs from the file name '{path.stem}'; "
                         f"make them the same (records are filed under the suite name)")
    check_row_names(spec.rows, str(path))
    for col in spec.columns or [None]:
        for row in spec.rows:
            _resolve(spec, row, col, seed=spec.seeds[0], overrides={}, where=str(path))
    return spec, path


def format_validation_error(e: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first pydantic error as 'field.path: message' (plus a count of the others); an unknown key of `model`
    (or of a model nested in it) gets a "did you mean" among the keys valid there."""
    errs = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")  # a misspelt key explains most
    first = errs[0]
    loc = ".".join(str(x) for x in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        keys = _keys_at(model, first["loc"][:-1]) if model is not None else []
        msg = f"unknown key.{did_you_mean(str(first['loc'][-1]), keys)} (check the spelling; 'lt-bench suites " \
              f"show' lists a valid suite)"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {msg}{more}" if first["loc"] else f"{msg}{more}"


def _keys_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at `path` inside `model` ([] when the path leaves the models)."""
    node: Any = model
    for part in path:
        field = node.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        found = [a for a in (field.annotation, *get_args(field.annotation))
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        if not found:
            return []
        node = found[0]
    return list(node.model_fields)


# ---------------------------------------------------------------------------------------------- merging


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
        raise SuiteError(f"{where}: {cell}: {format_validation_error(e, RunSettings)}") from None


def select_rows(spec: SuiteSpec, rows: list[str] | None) -> set[str]:
    """Row names selected by display name or slug (all rows when None); an unknown one is an error."""
    if rows is None:
        return {r.name for r in spec.rows}
    by_key = {k: r.name for r in spec.rows for k in (r.name, slug(r.name))}
    missing = [r for r in rows if r not in by_key]
    if missing:
        hint = did_you_mean(missing[0], by_key)
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
