"""The paper's table layout: "(+x.x)" deltas against the Vanilla column, row blocks per dataset (Table 9), and
the report header's provenance (smoke runs, settings that differ from the suite's plan)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from benchmark.config.suite import SMOKE_OVERRIDES, RunSpec, SuiteSpec, deep_merge, nest
from benchmark.run.records import RunRecord

BASELINE = "Vanilla"
DATASET_TITLES = {"cifar10_lt": "CIFAR-10-LT", "cifar100_lt": "CIFAR-100-LT", "imagenet_lt": "ImageNet-LT",
                  "inat2018": "iNaturalist 2018", "synthetic_lt": "synthetic-LT"}


def baseline_column(spec: SuiteSpec, column: str | None) -> str | None:
    """The Vanilla column a column is compared with ("+ROS" -> "Vanilla", "50 +CMO" -> "50 Vanilla"), or None when
    the suite has no such column (Tables 3, 5 and 13 have one)."""
    if column is None:
        return None
    prefix = column.rsplit(" ", 1)[0] + " " if " " in column.strip() else ""
    cand = f"{prefix}{BASELINE}"
    return cand if cand in {c.name for c in spec.columns} else None


def add_baseline_deltas(spec: SuiteSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Adds `base_delta` (ours − ours in the Vanilla column of the same row) and `paper_base_delta` (the paper's
    "(+x.x)") to every line whose column has a Vanilla column; None elsewhere."""
    f = frame.copy()
    f["base_delta"], f["paper_base_delta"] = None, None
    if frame.empty:
        return f
    index = {(r.row, r.column, r.metric, r.epoch): r for r in frame.itertuples()}
    base_d, paper_d = [], []
    for r in frame.itertuples():
        col = baseline_column(spec, r.column)
        b = index.get((r.row, col, r.metric, r.epoch)) if col else None
        base_d.append(_diff(r.mean, b.mean) if b is not None else None)
        paper_d.append(_diff(r.paper, b.paper) if b is not None else None)
    f["base_delta"] = pd.Series(base_d, index=f.index, dtype=object)
    f["paper_base_delta"] = pd.Series(paper_d, index=f.index, dtype=object)
    return f


def _diff(a: Any, b: Any) -> float | None:
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return None
    return float(a) - float(b)


def row_dataset(spec: SuiteSpec, row_set: dict[str, Any]) -> str:
    """The dataset a row trains on: the suite's defaults with the row's overrides."""
    merged = deep_merge(nest(spec.defaults), nest(row_set))
    return str(merged.get("data", {}).get("name", "cifar100_lt"))


def row_blocks(spec: SuiteSpec) -> list[tuple[str | None, list[int]]]:
    """Row indices grouped into the paper's blocks, one per dataset in first-seen order (Table 9's "CIFAR-100-LT"
    and "ImageNet-LT"); a single block with no title when every row uses one dataset."""
    blocks: dict[str, list[int]] = {}
    for i, row in enumerate(spec.rows):
        blocks.setdefault(row_dataset(spec, row.set), []).append(i)
    if len(blocks) == 1:
        return [(None, list(range(len(spec.rows))))]
    return [(DATASET_TITLES.get(name, name), idx) for name, idx in blocks.items()]


def block_row_name(name: str, block: str | None) -> str:
    """A row's name inside its block: 'CutMix (ImageNet-LT)' -> 'CutMix' under the ImageNet-LT header."""
    suffix = f" ({block})"
    return name[: -len(suffix)] if block and name.endswith(suffix) else name


@dataclass
class Provenance:
    """What the report header says about the runs: smoke runs, settings unlike the suite's plan."""

    smoke: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # the --set overrides the report was asked for
    differing: list[str] = field(default_factory=list)  # setting keys where records differ from the plan

    @property
    def comparable(self) -> bool:
        """Only runs with the suite's planned settings are compared with the paper."""
        return not (self.smoke or self.overrides or self.differing)

    def figure_note(self) -> str | None:
        """The line figures carry above their title when the runs are not the paper's settings."""
        if self.comparable:
            return None
        what = "SMOKE RUNS" if self.smoke else "SETTINGS DIFFER FROM THE SUITE"
        return f"{what}: not comparable with the paper"

    def notes(self) -> list[str]:
        out = []
        if self.smoke:
            out.append("**Smoke runs** (a few batches of a few epochs, trimmed test set): the numbers only show "
                       "that the pipeline runs.")
        if self.overrides:
            sets = ", ".join(f"`{k}={v}`" for k, v in self.overrides.items())
            out.append(f"**Overridden settings** (`--set`): {sets}.")
        if self.differing:
            out.append(f"**Records differ from the suite's planned settings** in: {', '.join(self.differing)}.")
        if out:
            out.append("These are not the paper's settings, so no Δ against the paper is shown.")
        return out


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def provenance(spec: SuiteSpec, planned: list[RunSpec], used: list[RunRecord], overrides: dict[str, Any] | None,
               smoke: bool) -> Provenance:
    """Compare the records a report uses with the suite's own plan (no overrides, no smoke) per (row, column,
    seed) on the settings that define the experiment (`RunSettings.identity`: not the device, workers or other
    execution details; keys a record predates are skipped): keys that differ are named; smoke records or a smoke
    report mark the report as smoke."""
    base = {(r.row, r.column, r.seed): _flat(r.settings.identity()) for r in planned}
    smoke_keys = set(_flat(nest(SMOKE_OVERRIDES))) | set(_flat(nest(spec.smoke)))
    differing: set[str] = set()
    is_smoke = smoke or any(r.smoke for r in used)
    for rec in used:
        plan_s = base.get((rec.row, rec.column, rec.seed))
        if plan_s is None:
            continue
        got = _flat(rec.settings)
        for k in set(plan_s) & set(got):
            if plan_s[k] != got[k] and not (is_smoke and k in smoke_keys):
                differing.add(k)
    overrides = dict(overrides or {})
    differing -= set(overrides)
    return Provenance(smoke=is_smoke, overrides=overrides, differing=sorted(differing))
