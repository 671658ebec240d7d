"""Run suites: plan them together, link reused records, hand the runs to an executor, and say what happened to each."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from benchmark.config.suite import SuiteError, SuiteSpec
from benchmark.run.jobs import RunJob, existing_status
from benchmark.run.planning import plan_suites, resolve_plan, write_link
from benchmark.run.recording import RunOutcome
from benchmark.run.records import read_record
from benchmark.run.states import RunState, Status
from benchmark.run.unit import InlineExecutor

MIN_FREE_BYTES = 16 * 2**20  # less free space on the results disk than this refuses to start


def run_suite(spec: SuiteSpec, *, where: str = "", seeds: list[int] | None = None,
              overrides: dict[str, Any] | None = None, smoke: bool = False, dry_run: bool = False,
              results_dir: Path = Path("results"), tracker: str = "wandb", retry_failed: bool = False,
              force: bool = False, executor: Any = None, progress: Any = None,
              rows: list[str] | None = None) -> list[RunOutcome]:
    """Plan a suite and execute every run that has no finished record (in-process unless an executor is given).

    Example:
        >>> spec, path = load_suite("quickstart")
        >>> outcomes = run_suite(spec, tracker="none")  # doctest: +SKIP
    """
    return run_suites([(spec, Path(where) if where else Path(spec.suite))], seeds=seeds, overrides=overrides,
                      smoke=smoke, dry_run=dry_run, results_dir=results_dir, tracker=tracker,
                      retry_failed=retry_failed, force=force, executor=executor, progress=progress, rows=rows)


def run_suites(suites: list[tuple[SuiteSpec, Path]], *, seeds: list[int] | None = None,
               overrides: dict[str, Any] | None = None, smoke: bool = False, dry_run: bool = False,
               results_dir: Path = Path("results"), tracker: str = "wandb", retry_failed: bool = False,
               force: bool = False, executor: Any = None, progress: Any = None,
               rows: list[str] | None = None) -> list[RunOutcome]:
    """Plan several suites together and train each distinct run (settings hash with seed, smoke flag) once.

    A run with a finished record of the same hash anywhere under `results_dir` gets a linked copy of it; runs of
    one hash pending in this invocation train once and the others get linked copies when it finishes `done`
    (`benchmark.run.planning`). Outcomes come in plan order, one per planned run.
    """
    results_dir = Path(results_dir).absolute()  # relative: to the working directory (workers get absolute paths)
    executor = timed_executor(suites, executor) or executor  # before anything is written
    runs = plan_suites(suites, seeds=seeds, overrides=overrides, smoke=smoke, rows=rows)
    mp = resolve_plan(suites, runs, results_dir, retry_failed=retry_failed, force=force)
    outcomes = {o.path: o for o in planned_outcomes(mp)}
    if dry_run or all(p.action in ("done", "failed") for p in mp.runs):
        return list(outcomes.values())
    _check_writable(results_dir)
    for p in mp.runs:
        if p.action == "reuse" and p.source is not None:
            outcomes[p.path] = _linked_outcome(p, write_link(p, p.source, results_dir, retry_failed=retry_failed,
                                                                force=force))
    jobs = [RunJob(p.run, p.path, tracker, retry_failed, force) for p in mp.primaries]
    if any(spec.timed for spec, _ in suites):  # rows alternate (seed 0's CE, CE + CMO, then seed 1's): drift is shared
        jobs.sort(key=lambda j: j.run.seed)
    if jobs:
        if executor is None:
            executor = InlineExecutor()
        if hasattr(progress, "start_suite"):  # the suite bar's total: every epoch of the runs to train
            progress.start_suite([j.run for j in jobs])
        for o in executor.run(jobs, progress):
            outcomes[o.path] = o
    for primary in mp.primaries:
        followers = mp.followers(primary)
        if not followers:
            continue
        st = existing_status(primary.path)
        for f in followers:
            if st == "done":
                outcomes[f.path] = _linked_outcome(f, write_link(f, primary.path, results_dir,
                                                                 retry_failed=retry_failed, force=force))
            else:
                why = "failed" if st == "failed" else outcomes[primary.path].status
                outcomes[f.path] = RunOutcome(f.run, RunState.PENDING, f.path, detail=f"{primary.label}: {why}")
    return list(outcomes.values())


def timed_executor(suites: list[tuple[SuiteSpec, Path]], executor: Any) -> InlineExecutor | None:
    """For suites whose rows are timed against each other: this process, one run at a time (no packs); None for
    others. Another executor would spread the rows over processes, GPUs or nodes: a SuiteError."""
    timed = [spec.suite for spec, _ in suites if spec.timed]
    if not timed:
        return None
    if executor is not None and not isinstance(executor, InlineExecutor):
        raise SuiteError(f"suite {timed[0]} times its rows against each other in one process: run it with "
                         f"--executor inline (the default)")
    return InlineExecutor(pack=1)


def planned_outcomes(mp: Any) -> list[RunOutcome]:
    """Before anything runs: planned (trains), reuses / shares <suite>/<run_id> (gets a copy), skipped (own record)."""
    out = []
    for p in mp.runs:
        st = {"train": Status(RunState.PLANNED), "done": Status(RunState.SKIPPED, "done"),
              "failed": Status(RunState.SKIPPED, "failed")}.get(p.action)
        if st is None:
            st = Status(RunState.REUSES if p.action == "reuse" else RunState.SHARES,
                        f"{p.origin['suite']}/{p.origin['run_id']}")
        out.append(RunOutcome(p.run, st.state, p.path, _best_acc(p.path) if p.action == "done" else None,
                              detail=st.detail))
    return out


def _best_acc(path: Path) -> float | None:
    try:
        return (read_record(path).metrics.get("best") or {}).get("acc/all")
    except (ValueError, OSError):
        return None


def _linked_outcome(p: Any, st: Status) -> RunOutcome:
    return RunOutcome(p.run, st.state, p.path, _best_acc(p.path) if st.state == RunState.REUSED else None,
                      detail=st.detail)


def _check_writable(results_dir: Path) -> None:
    """The results folder (or its first existing parent) must be writable; nothing is created here."""
    probe = results_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise SuiteError(f"results directory {results_dir}: {probe} is a file, not a folder (not writable); "
                         f"choose another with --results-dir")
    free = shutil.disk_usage(probe).free
    if free < MIN_FREE_BYTES:  # a record would not fit after training: say so before anything runs
        raise SuiteError(f"results directory {results_dir}: only {free // 1024} KiB free on its disk; free some "
                         f"space or choose another with --results-dir")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SuiteError(f"results directory {results_dir} is not writable (checked {probe}); "
                         f"choose another with --results-dir")
