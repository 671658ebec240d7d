"""Packing: which pending runs train together in one packed network, and running such a pack to K records."""

from __future__ import annotations

import json
import signal
from typing import Any

from benchmark.config import SuiteError
from benchmark.data.base import DataError, LTData
from benchmark.runner import (
    RunJob,
    RunOutcome,
    done_record,
    failed_record,
    finish_job,
    load_cached,
    record_base,
    run_job,
    save_weights,
    should_run,
    start_tracking,
    stop_on_sigterm,
    wandb_dir,
)
from benchmark.tracking import make_tracker

AUTO_PACK = 8  # runs per pack on a CUDA device when no --runs-per-gpu is given


def auto_pack_size(jobs: list[RunJob], requested: int | None) -> int:
    """The requested size, else AUTO_PACK when the runs train on CUDA, else 1 (no packing)."""
    if requested is not None:
        return requested
    from benchmark.train import resolve_device

    cuda = any(resolve_device(j.run.settings.train.device).type == "cuda" for j in jobs)
    return AUTO_PACK if cuda else 1


def group_jobs(jobs: list[RunJob], k: int) -> list[list[RunJob]]:
    """Units of work in plan order: runs that differ only in seed (and resume at the same epoch) in groups of up
    to k when they can be packed; every other run alone."""
    from benchmark.checkpoint import checkpoint_epoch
    from benchmark.packed_train import pack_blocker

    units: list[list[RunJob]] = []
    open_units: dict[str, list[RunJob]] = {}
    for job in jobs:
        s = job.run.settings
        if k <= 1 or pack_blocker(s) is not None:
            units.append([job])
            continue
        epoch = 0 if job.force else checkpoint_epoch(job.path.with_suffix(".ckpt"))
        key = json.dumps([s.model_dump(mode="json", exclude={"seed"}), epoch], sort_keys=True)
        unit = open_units.get(key)
        if unit is None or len(unit) >= k:
            unit = open_units[key] = []
            units.append(unit)
        unit.append(job)
    return units


def run_unit(unit: list[RunJob], progress: Any = None, index: int = 0, total: int = 1,
             cache: dict[str, LTData] | None = None) -> list[RunOutcome]:
    """One run alone, or a pack."""
    if len(unit) == 1:
        return [run_job(unit[0], progress, index, total, cache)]
    return run_pack(unit, progress, index, total, cache)


def run_pack(jobs: list[RunJob], progress: Any = None, index: int = 0, total: int = 1,
             cache: dict[str, LTData] | None = None) -> list[RunOutcome]:
    """Train runs of one configuration together; each gets its own record, checkpoint, weights and tracker run.

    Every run is locked as in `run_job`; runs held elsewhere or already finished are left out of the pack.
    """
    from filelock import FileLock, Timeout

    from benchmark.checkpoint import CheckpointError
    from benchmark.packed_train import fit_packed
    from benchmark.train import Preempted

    try:
        data = load_cached(jobs[0].run.settings.data, cache if cache is not None else {})
    except DataError as e:
        raise SuiteError(str(e)) from None
    outcomes: list[RunOutcome] = []
    active, locks = [], []
    for job in jobs:
        job.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(job.path.with_suffix(".lock")), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            outcomes.append(RunOutcome(job.run, "running elsewhere", job.path))
            continue
        go, status = should_run(job.path, job.retry_failed, job.force)
        if not go:
            lock.release()
            outcomes.append(RunOutcome(job.run, f"skipped ({status})", job.path))
            continue
        active.append(job)
        locks.append(lock)
    if len(active) < 2:
        for lock in locks:
            lock.release()
        return outcomes + [run_job(j, progress, index, total, cache) for j in active]
    previous = stop_on_sigterm()
    try:
        for job in active:
            if job.force:
                job.path.with_suffix(".ckpt").unlink(missing_ok=True)
        trackers = [make_tracker(j.tracker, wandb_dir()) for j in active]
        bases = [record_base(j.run, data) for j in active]
        hooks = [start_tracking(j.run, t, progress.start_run(j.run, index + i, total) if progress else None)
                 for i, (j, t) in enumerate(zip(active, trackers, strict=True))]
        try:
            results: list[Any] = fit_packed([j.run.settings for j in active], data, hooks,
                                            [j.path.with_suffix(".ckpt") for j in active],
                                            [j.run.run_id for j in active])
        except (Preempted, CheckpointError):
            for t in trackers:
                t.finish({"status": "preempted"}, None, failed=True)
            raise
        except Exception as e:  # the pack as a whole failed: every member gets the failed record
            results = [e] * len(active)
        for job, base, tracker, res in zip(active, bases, trackers, results, strict=True):
            if isinstance(res, BaseException):
                rec = failed_record(base, tracker, res)
            else:
                save_weights(res.model, job.path.with_suffix(".weights.pt"))
                rec = done_record(base, job.run, data, tracker, res, None)
            outcomes.append(finish_job(job, rec, progress))
        return outcomes
    finally:
        for lock in locks:
            lock.release()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
