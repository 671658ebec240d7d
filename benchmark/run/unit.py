"""One unit of work, a run or a pack of runs, trained under per-run locks and recorded; the in-process executor."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from benchmark.config.catalog import load_dataset
from benchmark.config.suite import SuiteError
from benchmark.data.base import DataError, LTData
from benchmark.engine.checkpoint import CheckpointError
from benchmark.engine.distributed import rank_world
from benchmark.engine.loop import Run, train_pack
from benchmark.engine.runtime import Preempted, request_stop
from benchmark.engine.stage2 import finetune
from benchmark.run.jobs import RunJob, should_run
from benchmark.run.packing import auto_pack_size, group_jobs
from benchmark.run.recording import (
    RunOutcome,
    done_record,
    failed_record,
    finish_job,
    record_base,
    start_tracking,
    wandb_dir,
)
from benchmark.run.stage1 import save_weights, stage1_model
from benchmark.run.states import RunState
from benchmark.run.tracking import make_tracker
from benchmark.schema.settings import DataSettings

CACHED_DATASETS = 4  # datasets kept in memory between units (a pack may hold runs on several)


def load_cached(d: DataSettings, cache: dict[str, LTData]) -> LTData:
    """The dataset of these settings, loaded once; one object per settings, so a pack's runs share it."""
    key = d.model_dump_json()
    if key not in cache:
        if len(cache) >= CACHED_DATASETS:
            cache.pop(next(iter(cache)))
        cache[key] = load_dataset(d)
    return cache[key]


def run_unit(unit: list[RunJob], progress: Any = None, index: int = 0, total: int = 1,
             cache: dict[str, LTData] | None = None) -> list[RunOutcome]:
    """Train one run, or a pack of runs, under per-run file locks; each gets its own record, checkpoint, weights and
    tracker run. Runs held by another process or already finished are left out (re-checked under the lock); a record
    is written atomically before its checkpoint is removed. A stop request or an unusable checkpoint propagates (the
    run resumes, or the user fixes the input); any other failure becomes failed records.
    """

    cache = cache if cache is not None else {}
    try:  # before anything is created: missing files must leave no trace
        datas = [load_cached(j.run.settings.data, cache) for j in unit]
    except DataError as e:
        raise SuiteError(str(e)) from None
    rank, world = rank_world()
    if rank > 0:  # another process of a multi-process run: train alongside rank 0, which alone records
        job = unit[0]
        if should_run(job.path, job.retry_failed, job.force, job.run)[0]:
            train_pack([Run(job.run.settings, datas[0], job.run.run_id, job.path.with_suffix(".ckpt"))])
        return [RunOutcome(job.run, RunState.RANK, job.path, detail=f"{rank} of {world}")]
    outcomes: list[RunOutcome] = []
    active: list[tuple[RunJob, LTData]] = []
    locks = []
    for job, data in zip(unit, datas, strict=True):
        job.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(job.path.with_suffix(".lock")), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            outcomes.append(RunOutcome(job.run, RunState.RUNNING, job.path, detail="elsewhere"))
            continue
        go, status = should_run(job.path, job.retry_failed, job.force, job.run)
        if not go:
            lock.release()
            outcomes.append(RunOutcome(job.run, RunState.SKIPPED, job.path, detail=str(status)))
            continue
        clean_stale_temps(job)
        active.append((job, data))
        locks.append(lock)
    for out in outcomes if progress else []:  # left to another process: off the suite's ETA
        progress.end_run(out)
    previous = stop_on_signals() if active else {}
    try:
        if active:
            outcomes += _train_and_record(active, progress, index, total)
        return outcomes
    finally:
        for lock in locks:
            lock.release()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _train_and_record(active: list[tuple[RunJob, LTData]], progress: Any, index: int,
                      total: int) -> list[RunOutcome]:
    """Open the trackers, train the runs together (a two-stage run alone), write each record."""
    for job, _ in active:
        if job.force:
            job.path.with_suffix(".ckpt").unlink(missing_ok=True)  # --force starts from scratch
    trackers = [make_tracker(job.tracker, wandb_dir()) for job, _ in active]
    bases = [record_base(job.run, data) for job, data in active]
    hooks = [start_tracking(job, t, progress.start_run(job.run, index + i, total) if progress else None)
             for i, ((job, _), t) in enumerate(zip(active, trackers, strict=True))]
    stage1: dict[str, Any] | None = None
    try:
        job, data = active[0]
        if job.run.settings.stage2 is not None:  # a two-stage run is never packed

            model, stage1 = stage1_model(job.run, data, job.path, hooks[0])
            results: list[Any] = [finetune(job.run.settings, data, model, on_epoch=hooks[0])]
        else:
            results = train_pack([Run(j.run.settings, d, j.run.run_id, j.path.with_suffix(".ckpt"), hook)
                                  for (j, d), hook in zip(active, hooks, strict=True)])
    except (Preempted, CheckpointError):
        for t in trackers:
            t.finish({"status": "preempted"}, None, failed=True)
        raise
    except Exception as e:  # the unit as a whole failed: every run gets the failed record
        results = [e] * len(active)
    outcomes = []
    for (job, data), base, tracker, res in zip(active, bases, trackers, results, strict=True):
        if not isinstance(res, BaseException):
            try:
                save_weights(res.model, job.path.with_suffix(".weights.pt"))
            except OSError as e:  # e.g. a full disk: the run is recorded failed, with the cause, not lost
                res = e
        if isinstance(res, BaseException):
            rec = failed_record(base, tracker, res)
        else:
            rec = done_record(base, job.run, data, tracker, res, stage1)
        outcomes.append(finish_job(job, rec, progress))
    return outcomes


def clean_stale_temps(job: RunJob) -> list[Path]:
    """Remove the run's temp files (partial checkpoint, weights or record writes) older than its lock, which this
    process has just taken: only a killed writer leaves them. Says so for each; returns them."""
    lock = job.path.with_suffix(".lock")
    os.utime(lock)  # the lock's time is now: every temp file of this run from before is stale
    since = lock.stat().st_mtime
    gone = []
    for p in sorted(job.path.parent.glob(f".{job.run.run_id}.*tmp")):
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_mtime < since:
                p.unlink()
                gone.append(p)
                print(f"lt-bench: removed stale temp file {p} (left by an interrupted write)", file=sys.stderr)
    return gone


def stop_on_signals() -> dict[int, Any]:
    """SIGTERM and SIGINT (Ctrl-C) ask the loop to stop at the next step, which checkpoints; a second Ctrl-C
    interrupts at once (main thread only). Returns the previous handlers by signal."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    asked: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and signal.SIGINT in asked:
            raise KeyboardInterrupt
        asked.append(signum)
        request_stop(signum)
    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}


class InlineExecutor:
    """Runs jobs one after another in this process (tests, debugging, a single GPU).

    Runs that can share a step train as packs of up to `pack` (None: sized to the GPU's free memory; none on the
    CPU).
    """

    def __init__(self, pack: int | None = None) -> None:
        self.pack = pack

    def run(self, jobs: list[RunJob], progress: Any = None) -> list[RunOutcome]:
        cache: dict[str, Any] = {}
        outs: list[RunOutcome] = []
        for unit in group_jobs(jobs, auto_pack_size(jobs, self.pack)):
            outs += run_unit(unit, progress, len(outs), len(jobs), cache)
        return outs
