"""Plan several suites at once: one training per settings hash, linked records, and a costed dry run (no torch)."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmark.config.suite import RunSpec, SuiteError, SuiteSpec, load_suite, plan, slug
from benchmark.config.validation import check_plan
from benchmark.run.jobs import should_run
from benchmark.run.records import RunRecord, read_record, record_path, write_record
from benchmark.run.states import RunState, Status
from benchmark.schema.suggest import did_you_mean

# What a planned run needs:
#   train  - the one occurrence of its settings hash that goes to the executor (the "primary")
#   link   - another occurrence of a hash trained in this invocation: gets a copy of the primary's record
#   reuse  - a finished record with the same hash exists (any suite): gets a copy of it now, no training
#   done   - its own record is finished (skipped, as before)
#   failed - its own record failed and --retry-failed is not given (skipped, as before)
Action = Literal["train", "link", "reuse", "done", "failed"]
RunKey = tuple[str, bool]  # (RunSpec.run_hash, smoke)


_RECORD_NAME = re.compile(r"-s\d+-([0-9a-f]{10})$")  # <cell>-s<seed>-<run_hash>


# ------------------------------------------------------------------------------------------------ planning


@dataclass
class PlannedRun:
    """One planned run of one suite, with what this invocation does for it."""

    run: RunSpec
    path: Path  # its own record
    key: RunKey
    action: Action
    source: Path | None = None  # reuse: the finished record to copy; link: the primary's record path
    primary: PlannedRun | None = None  # link: the occurrence that trains
    origin: dict[str, str] | None = None  # reuse / link: {"suite", "run_id", "path"} of the training record

    @property
    def label(self) -> str:
        return f"{self.run.suite}/{self.run.run_id}"


@dataclass
class MultiPlan:
    """All runs of the named suites, planned together."""

    suites: list[tuple[SuiteSpec, Path]]
    runs: list[PlannedRun]
    results_dir: Path
    force: bool = False
    index: dict[str, list[Path]] = field(default_factory=dict)  # run hash -> record files under results_dir

    @property
    def primaries(self) -> list[PlannedRun]:
        return [p for p in self.runs if p.action == "train"]

    def followers(self, primary: PlannedRun) -> list[PlannedRun]:
        return [p for p in self.runs if p.primary is primary]


def load_suites(names: list[str]) -> list[tuple[SuiteSpec, Path]]:
    """Load every named suite once; the same name from two different files is an error."""
    out: list[tuple[SuiteSpec, Path]] = []
    for name in names:
        spec, path = load_suite(name)
        same = [p for s, p in out if s.suite == spec.suite]
        if same and same[0].resolve() != path.resolve():
            raise SuiteError(f"suite '{spec.suite}' is named twice ({same[0]} and {path}); its records would mix")
        if not same:
            out.append((spec, path))
    return out


def plan_suites(suites: list[tuple[SuiteSpec, str | Path]], *, seeds: list[int] | None = None,
                overrides: dict[str, Any] | None = None, smoke: bool = False,
                rows: list[str] | None = None) -> list[RunSpec]:
    """Every run of every suite, in order, components checked. With several suites, `rows` selects, in each suite,
    the rows it has (a name no suite has is an error); with one suite an unknown row is an error, as before."""
    if rows is not None and len(suites) > 1:
        known = {k for spec, _ in suites for r in spec.rows for k in (r.name, slug(r.name))}
        unknown = [r for r in rows if r not in known]
        if unknown:
            hint = did_you_mean(unknown[0], sorted(known))
            raise SuiteError(f"no row '{unknown[0]}' in suites {', '.join(s.suite for s, _ in suites)}.{hint}")
    runs: list[RunSpec] = []
    for spec, where in suites:
        sel = rows
        if rows is not None and len(suites) > 1:
            names = {k for r in spec.rows for k in (r.name, slug(r.name))}
            sel = [r for r in rows if r in names]
        suite_runs = plan(spec, seeds=seeds, overrides=overrides, smoke=smoke, where=str(where), rows=sel)
        check_plan(suite_runs, str(where) or spec.suite)
        runs += suite_runs
    return runs


def run_key(r: RunSpec) -> RunKey:
    """A run's identity across suites: its settings hash with seed, and the smoke flag."""
    return r.run_hash, r.smoke


def finished_index(results_dir: Path) -> dict[str, list[Path]]:
    """Record files under results/<suite>/<cell>/ by the run hash their name ends with (records are not read)."""
    out: dict[str, list[Path]] = {}
    if not results_dir.is_dir():
        return out
    for p in sorted(results_dir.glob("*/*/*.json")):
        m = _RECORD_NAME.search(p.stem)
        if m and not p.name.startswith("."):
            out.setdefault(m.group(1), []).append(p)
    return out


def find_finished(index: dict[str, list[Path]], key: RunKey, exclude: Collection[Path] = ()) -> Path | None:
    """A finished record with this run hash and smoke flag: one that trained the run before a linked copy."""
    copies = []
    for p in index.get(key[0], []):
        if p in exclude:
            continue
        try:
            rec = read_record(p)
        except (ValueError, OSError):
            continue
        if rec.status != "done" or rec.smoke != key[1] or not rec.run_id.endswith(key[0]):
            continue
        if rec.reused_from is None:
            return p
        copies.append(p)
    return copies[0] if copies else None


def origin_of(source: Path, results_dir: Path) -> dict[str, str]:
    """{"suite", "run_id", "path"} of the record that trained the run whose record is `source`."""
    rec = read_record(source)
    return dict(rec.reused_from) if rec.reused_from else {"suite": rec.suite, "run_id": rec.run_id,
                                                          "path": _relative(source, results_dir)}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _in_progress(path: Path) -> bool:
    """A checkpoint to resume, or another process holding the run's lock."""
    if path.with_suffix(".ckpt").is_file():
        return True
    lock_path = path.with_suffix(".lock")
    if not lock_path.exists():
        return False
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(lock_path), timeout=0):
            return False
    except Timeout:
        return True


def resolve_plan(suites: list[tuple[SuiteSpec, Path]], runs: list[RunSpec], results_dir: Path, *,
                 retry_failed: bool = False, force: bool = False) -> MultiPlan:
    """Decide per planned run: skip (own record), reuse a finished record of the same hash, train (one occurrence
    per hash: one with a checkpoint or held elsewhere first, else the first in plan order) or link to that one.

    --force reuses nothing: the primary retrains and the others are linked again.
    """
    index = finished_index(results_dir)
    items: list[PlannedRun] = []
    pending: dict[RunKey, list[PlannedRun]] = {}
    seen: set[Path] = set()
    for r in runs:
        path = record_path(results_dir, r.suite, r.cell, r.run_id)
        if path in seen:
            continue
        seen.add(path)
        go, status = should_run(path, retry_failed, force, r)
        item = PlannedRun(r, path, run_key(r), "train" if go else ("done" if status == "done" else "failed"))
        items.append(item)
        if go:
            pending.setdefault(item.key, []).append(item)
    for key, group in pending.items():
        src = None if force else find_finished(index, key, {g.path for g in group})
        if src is not None:
            origin = origin_of(src, results_dir)
            for g in group:
                g.action, g.source, g.origin = "reuse", src, origin
            continue
        primary = next((g for g in group if _in_progress(g.path)), group[0])
        origin = {"suite": primary.run.suite, "run_id": primary.run.run_id,
                  "path": _relative(primary.path, results_dir)}
        for g in group:
            if g is not primary:
                g.action, g.source, g.primary, g.origin = "link", primary.path, primary, origin
    return MultiPlan(suites, items, results_dir, force, index)


def linked_record(source: Path, run: RunSpec, results_dir: Path) -> RunRecord:
    """A copy of a finished record for another occurrence of the same run: suite, version, row, column and run id
    of `run`, and `reused_from` naming the record that trained it."""
    rec = read_record(source)
    if rec.status != "done" or rec.smoke != run.smoke or not rec.run_id.endswith(run.run_hash):
        raise SuiteError(f"{source}: not a finished record of run {run.run_id}'s settings")
    return rec.model_copy(update={"suite": run.suite, "suite_version": run.suite_version, "row": run.row,
                                  "column": run.column, "run_id": run.run_id,
                                  "reused_from": origin_of(source, results_dir)}, deep=True)


def write_link(item: PlannedRun, source: Path, results_dir: Path, *, retry_failed: bool = False,
               force: bool = False) -> Status:
    """Write `item`'s linked record (atomically, under the run's lock); returns its outcome's status.

    A record written meanwhile is kept (re-checked under the lock), and a finished record of another run id at
    the path is never overwritten.
    """
    from filelock import FileLock, Timeout

    path = item.path
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.with_suffix(".lock")), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return Status(RunState.RUNNING, "elsewhere")
    try:
        go, status = should_run(path, retry_failed, force, item.run)
        if not go:
            return Status(RunState.SKIPPED, str(status))
        if path.is_file():
            try:
                old = read_record(path)
            except (ValueError, OSError):
                old = None
            if old is not None and old.status == "done" and old.run_id != item.run.run_id:
                return Status(RunState.SKIPPED, f"done record of {old.run_id} kept")
        rec = linked_record(source, item.run, results_dir)
        write_record(path, rec)
        origin = rec.reused_from or {}
        return Status(RunState.REUSED, f"{origin.get('suite')}/{origin.get('run_id')}")
    finally:
        lock.release()
