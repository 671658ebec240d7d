"""Run a suite: plan, check components, skip finished runs, train, write records, track; failures isolated."""

from __future__ import annotations

import json
import os
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.choices import choices_for
from benchmark.components import load_dataset
from benchmark.config import REPO_ROOT, RunSpec, SuiteError, SuiteSpec, slug
from benchmark.data.base import DataError, LTData
from benchmark.data.profile import shot_groups
from benchmark.engine.checkpoint import CheckpointError
from benchmark.engine.distributed import rank_world
from benchmark.engine.loop import Run, fit, train_pack
from benchmark.engine.parts import build_model
from benchmark.engine.runtime import Preempted, request_stop
from benchmark.jobs import RunJob, existing_status, should_run
from benchmark.packing import auto_pack_size, group_jobs
from benchmark.planning import plan_suites, resolve_plan, write_link
from benchmark.records import RunRecord, environment, read_record, write_record
from benchmark.settings import DataSettings
from benchmark.tracking import Tracker, make_tracker


@dataclass
class RunOutcome:
    """What happened to one planned run."""

    run: RunSpec
    status: str  # done | failed | skipped | planned
    path: Path
    acc: float | None = None
    error: str | None = None


CACHED_DATASETS = 4  # datasets kept in memory between units (a pack may hold runs on several)


def load_cached(d: DataSettings, cache: dict[str, LTData]) -> LTData:
    """The dataset of these settings, loaded once; one object per settings, so a pack's runs share it."""
    key = d.model_dump_json()
    if key not in cache:
        if len(cache) >= CACHED_DATASETS:
            cache.pop(next(iter(cache)))
        cache[key] = load_dataset(d)
    return cache[key]


def tags_for(r: RunSpec) -> list[str]:
    s = r.settings
    tags = [s.data.name, f"ir{s.data.imbalance_ratio:g}", s.backbone.name, f"loss:{s.method.loss}",
            f"rule:{s.method.rule}", f"mixer:{s.method.mixer}", f"seed{r.seed}", f"suite:{r.suite}"]
    return tags + (["smoke"] if r.smoke else [])


def record_base(r: RunSpec, data: LTData) -> dict[str, Any]:
    """The record fields known before training."""
    return dict(run_id=r.run_id, config_hash=r.config_hash, suite=r.suite, suite_version=r.suite_version,
                row=r.row, column=r.column, seed=r.seed, smoke=r.smoke, settings=r.settings.model_dump(mode="json"),
                choices=choices_for(r.settings, data), environment=environment())


def start_tracking(r: RunSpec, tracker: Tracker,
                   on_epoch: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None]:
    """Open the run's tracker; returns the per-epoch hook that logs there and to `on_epoch`."""
    meta = {"suite": r.suite, "job_type": slug(r.row)[:60], "run_id": r.run_id, "row": r.row, "column": r.column,
            "suite_version": r.suite_version,
            "name": f"{r.row}" + (f" [{r.column}]" if r.column else "") + f" s{r.seed}"}
    tracker.start(meta, r.settings.model_dump(mode="json"), tags_for(r))

    def hook(row: dict[str, Any]) -> None:
        tracker.log_epoch(row)
        if on_epoch:
            on_epoch(row)
    return hook


def failed_record(base: dict[str, Any], tracker: Tracker, e: BaseException) -> RunRecord:
    """Close the tracker as failed; the record keeps the exception and the traceback's last lines."""
    tb = traceback.format_exception(e)
    tb_lines = "".join(tb).strip().splitlines()
    tracker.finish({"status": "failed"}, None, failed=True)
    return RunRecord(status="failed", error=f"{type(e).__name__}: {e}\n" + "\n".join(tb_lines[-12:]),
                     tracker=tracker.info(), **base)


def done_record(base: dict[str, Any], r: RunSpec, data: LTData, tracker: Tracker, res: Any,
                stage1: dict[str, Any] | None) -> RunRecord:
    """Log the run's summary and per-class table, close the tracker, and build the finished record."""
    summary = {**{f"last/{k}": v for k, v in res.last.items()}, **{f"best/{k}": v for k, v in res.best.items()},
               "best_epoch": res.best_epoch, "status": "done"}
    names = data.class_names or [str(k) for k in range(data.num_classes)]
    groups = shot_groups(res.class_counts, r.settings.eval.many_above, r.settings.eval.few_below)
    group_of = {k: g for g in ("many", "medium", "few") for k in getattr(groups, g)}
    per_class = {"class": list(range(data.num_classes)), "name": names, "train_count": res.class_counts,
                 "group": [group_of[k] for k in range(data.num_classes)], "acc_last": res.per_class_last,
                 "acc_best": res.per_class_best}
    tracker.finish(summary, per_class, failed=False)
    base["environment"]["device"] = res.device
    base["environment"]["execution"] = res.execution
    return RunRecord(status="done", stage1=stage1, metrics={"last": res.last, "best": res.best},
                     best_epoch=res.best_epoch,
                     per_class={"last": res.per_class_last, "best": res.per_class_best},
                     class_counts=res.class_counts, shot_groups=res.groups, curve=res.curve,
                     wall_time_s=res.wall_time_s, num_params=res.num_params, tracker=tracker.info(), **base)


def stage1_model(r: RunSpec, data: LTData, path: Path, hook: Callable[[dict[str, Any]], None]
                 ) -> tuple[Any, dict[str, Any]]:
    """The stage-1 model of a two-stage run: the weights of a finished run of the suite with exactly the stage-1
    settings (e.g. the 'CE-DRW + CMO' row for 'CE-DRW + CMO + LAS'; for a linked copy, the weights of the run it
    names in `reused_from`), else trained here first."""
    import torch

    s1 = r.settings.stage1()
    suite_dir = path.parent.parent
    for cand in sorted(suite_dir.glob(f"*/*-{s1.run_hash(r.suite_version)}.json")):
        if existing_status(cand) != "done":
            continue
        rec = read_record(cand)
        weights = cand.with_suffix(".weights.pt")
        if not weights.is_file() and rec.reused_from:  # a linked copy: the weights are the training run's
            weights = (suite_dir.parent / rec.reused_from["path"]).with_suffix(".weights.pt")
        if weights.is_file():
            model = build_model(s1, data.num_classes)
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            return model, {"run_id": rec.run_id, "source": "reused", "metrics": rec.metrics}
    own = path.with_name(path.stem + ".stage1.weights.pt")  # trained here by an earlier, interrupted attempt
    info_file = own.with_suffix(".json")
    if own.is_file() and info_file.is_file():
        model = build_model(s1, data.num_classes)
        model.load_state_dict(torch.load(own, map_location="cpu", weights_only=True))
        return model, json.loads(info_file.read_text())
    ckpt = path.with_name(path.stem + ".stage1.ckpt")
    res = fit(s1, data, on_epoch=hook, checkpoint=ckpt, run_id=f"{r.run_id}/stage1")
    info = {"run_id": f"{r.run_id}/stage1", "source": "trained", "metrics": {"last": res.last, "best": res.best}}
    save_weights(res.model, own)
    info_file.write_text(json.dumps(info))
    ckpt.unlink(missing_ok=True)
    return res.model, info


def save_weights(model: Any, path: Path) -> None:
    """The final model's state dict, written atomically."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)


def run_unit(unit: list[RunJob], progress: Any = None, index: int = 0, total: int = 1,
             cache: dict[str, LTData] | None = None) -> list[RunOutcome]:
    """Train one run, or a pack of runs, under per-run file locks; each gets its own record, checkpoint, weights and
    tracker run. Runs held by another process or already finished are left out (re-checked under the lock); a record
    is written atomically before its checkpoint is removed. A stop request or an unusable checkpoint propagates (the
    run resumes, or the user fixes the input); any other failure becomes failed records.
    """
    from filelock import FileLock, Timeout

    cache = cache if cache is not None else {}
    try:  # before anything is created: missing files must leave no trace
        datas = [load_cached(j.run.settings.data, cache) for j in unit]
    except DataError as e:
        raise SuiteError(str(e)) from None
    rank, world = rank_world()
    if rank > 0:  # another process of a multi-process run: train alongside rank 0, which alone records
        job = unit[0]
        if should_run(job.path, job.retry_failed, job.force)[0]:
            train_pack([Run(job.run.settings, datas[0], job.run.run_id, job.path.with_suffix(".ckpt"))])
        return [RunOutcome(job.run, f"rank {rank} of {world}", job.path)]
    outcomes: list[RunOutcome] = []
    active: list[tuple[RunJob, LTData]] = []
    locks = []
    for job, data in zip(unit, datas, strict=True):
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
        active.append((job, data))
        locks.append(lock)
    previous = stop_on_sigterm() if active else None
    try:
        if active:
            outcomes += _train_and_record(active, progress, index, total)
        return outcomes
    finally:
        for lock in locks:
            lock.release()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _train_and_record(active: list[tuple[RunJob, LTData]], progress: Any, index: int,
                      total: int) -> list[RunOutcome]:
    """Open the trackers, train the runs together (a two-stage run alone), write each record."""
    for job, _ in active:
        if job.force:
            job.path.with_suffix(".ckpt").unlink(missing_ok=True)  # --force starts from scratch
    trackers = [make_tracker(job.tracker, wandb_dir()) for job, _ in active]
    bases = [record_base(job.run, data) for job, data in active]
    hooks = [start_tracking(job.run, t, progress.start_run(job.run, index + i, total) if progress else None)
             for i, ((job, _), t) in enumerate(zip(active, trackers, strict=True))]
    stage1: dict[str, Any] | None = None
    try:
        job, data = active[0]
        if job.run.settings.stage2 is not None:  # a two-stage run is never packed
            from benchmark.engine.stage2 import finetune

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
        if isinstance(res, BaseException):
            rec = failed_record(base, tracker, res)
        else:
            save_weights(res.model, job.path.with_suffix(".weights.pt"))
            rec = done_record(base, job.run, data, tracker, res, stage1)
        outcomes.append(finish_job(job, rec, progress))
    return outcomes


def wandb_dir() -> Path:
    """Where W&B writes its run folders: $WANDB_DIR, else the repository root."""
    return Path(os.environ.get("WANDB_DIR") or REPO_ROOT)


def finish_job(job: RunJob, rec: RunRecord, progress: Any = None) -> RunOutcome:
    """Write the record atomically, then remove the run's checkpoint; report the outcome."""
    write_record(job.path, rec)
    job.path.with_suffix(".ckpt").unlink(missing_ok=True)
    out = RunOutcome(job.run, rec.status, job.path, (rec.metrics.get("best") or {}).get("acc/all"), rec.error)
    if progress:
        progress.end_run(out)
    return out


def stop_on_sigterm() -> Any:
    """SIGTERM asks the loop to stop at the next step (main thread only); returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: request_stop())


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


def run_suite(spec: SuiteSpec, *, where: str = "", seeds: list[int] | None = None,
              overrides: dict[str, Any] | None = None, smoke: bool = False, dry_run: bool = False,
              results_dir: Path = REPO_ROOT / "results", tracker: str = "wandb", retry_failed: bool = False,
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
               results_dir: Path = REPO_ROOT / "results", tracker: str = "wandb", retry_failed: bool = False,
               force: bool = False, executor: Any = None, progress: Any = None,
               rows: list[str] | None = None) -> list[RunOutcome]:
    """Plan several suites together and train each distinct run (settings hash with seed, smoke flag) once.

    A run with a finished record of the same hash anywhere under `results_dir` gets a linked copy of it; runs of
    one hash pending in this invocation train once and the others get linked copies when it finishes `done`
    (`benchmark.planning`). Outcomes come in plan order, one per planned run.
    """
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
    if jobs:
        if executor is None:
            executor = InlineExecutor()
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
                outcomes[f.path] = RunOutcome(f.run, f"pending ({primary.label}: {why})", f.path)
    return list(outcomes.values())


def planned_outcomes(mp: Any) -> list[RunOutcome]:
    """Before anything runs: planned (trains), reuses / shares <suite>/<run_id> (gets a copy), skipped (own record)."""
    out = []
    for p in mp.runs:
        status = {"train": "planned", "done": "skipped (done)", "failed": "skipped (failed)"}.get(p.action)
        if status is None:
            status = f"{'reuses' if p.action == 'reuse' else 'shares'} {p.origin['suite']}/{p.origin['run_id']}"
        out.append(RunOutcome(p.run, status, p.path, _best_acc(p.path) if p.action == "done" else None))
    return out


def _best_acc(path: Path) -> float | None:
    try:
        return (read_record(path).metrics.get("best") or {}).get("acc/all")
    except (ValueError, OSError):
        return None


def _linked_outcome(p: Any, status: str) -> RunOutcome:
    return RunOutcome(p.run, status, p.path, _best_acc(p.path) if status.startswith("reused") else None)


def _check_writable(results_dir: Path) -> None:
    """The results folder (or its first existing parent) must be writable; nothing is created here."""
    probe = results_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not (probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)):
        raise SuiteError(f"results directory {results_dir} is not writable (checked {probe}); "
                         f"choose another with --results-dir")
