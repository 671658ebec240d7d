"""A run's result record and its tracker run: fields known before training, the done or failed record, the outcome."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark.config.choices import choices_for
from benchmark.config.suite import RunSpec, slug
from benchmark.data.base import LTData
from benchmark.data.profile import shot_groups
from benchmark.run.faults import os_error_line
from benchmark.run.jobs import RunJob
from benchmark.run.records import RunRecord, environment, git_state, read_record, write_record
from benchmark.run.states import RunState, Status
from benchmark.run.tracking import Tracker, offline_sync_hint, wandb_run_id


@dataclass
class RunOutcome:
    """What happened to one planned run."""

    run: RunSpec
    state: RunState
    path: Path
    acc: float | None = None
    error: str | None = None
    detail: str = ""

    @property
    def status(self) -> str:
        """The state as shown: 'state (detail)'."""
        return str(Status(self.state, self.detail))


def tags_for(r: RunSpec) -> list[str]:
    s = r.settings
    tags = [s.data.name, f"ir{s.data.imbalance_ratio:g}", s.backbone.name, f"loss:{s.method.loss}",
            f"rule:{s.method.rule}", f"mixer:{s.method.mixer}", f"seed{r.seed}", f"suite:{r.suite}"]
    return tags + (["smoke"] if r.smoke else [])


def tracker_id(job: RunJob) -> str:
    """The W&B id of a job's run: `wandb_run_id(run id)`; under --force a new one (suffix -f<UTC time>), kept in
    <record>.wandb-id while the run's checkpoint lives, so that a resumed forced run continues the forced W&B run."""
    id_file = job.path.with_suffix(".wandb-id")
    if job.tracker != "wandb":
        return wandb_run_id(job.run.run_id)
    if job.force:
        wid = wandb_run_id(job.run.run_id, "-f" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S"))
        job.path.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(wid)
        return wid
    if id_file.is_file() and job.path.with_suffix(".ckpt").is_file():
        return id_file.read_text().strip()
    id_file.unlink(missing_ok=True)
    return wandb_run_id(job.run.run_id)


def start_tracking(job: RunJob, tracker: Tracker,
                   on_epoch: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None]:
    """Open the run's tracker; returns the per-epoch hook that logs there (step = epoch, a second stage's epochs
    after the first stage's) and to `on_epoch`."""
    r = job.run
    try:
        version = metadata.version("lt-bench")
    except metadata.PackageNotFoundError:
        version = None
    meta = {"suite": r.suite, "group": f"{r.suite}-smoke" if r.smoke else r.suite, "job_type": slug(r.row)[:60],
            "run_id": r.run_id, "wandb_id": tracker_id(job), "row": r.row, "column": r.column,
            "suite_version": r.suite_version, "smoke": r.smoke, "lt_bench_version": version, **git_state(),
            "name": f"{r.row}" + (f" [{r.column}]" if r.column else "") + f" s{r.seed}"}
    tracker.start(meta, r.settings.model_dump(mode="json"), tags_for(r))
    stage1_epochs = r.settings.train.epochs

    def hook(row: dict[str, Any]) -> None:
        epoch = row.get("epoch")
        step = None if epoch is None else int(epoch) + (stage1_epochs if row.get("stage") == 2 else 0)
        tracker.log_epoch(row, step=step)
        if on_epoch:
            on_epoch(row)
    return hook


def wandb_dir() -> Path:
    """Where W&B writes its run folders (<dir>/wandb/): $WANDB_DIR, else the working directory."""
    return Path(os.environ.get("WANDB_DIR") or Path.cwd())


def record_base(r: RunSpec, data: LTData) -> dict[str, Any]:
    """The record fields known before training."""
    return dict(run_id=r.run_id, config_hash=r.config_hash, suite=r.suite, suite_version=r.suite_version,
                row=r.row, column=r.column, seed=r.seed, smoke=r.smoke, settings=r.settings.model_dump(mode="json"),
                choices=choices_for(r.settings, data), environment=environment())


def failed_record(base: dict[str, Any], tracker: Tracker, e: BaseException) -> RunRecord:
    """Close the tracker as failed; the record keeps the exception and the traceback's last lines."""
    tb = traceback.format_exception(e)
    tb_lines = "".join(tb).strip().splitlines()
    first = f"{type(e).__name__}: {os_error_line(e)}" if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
    rec = RunRecord(status="failed", error=first + "\n" + "\n".join(tb_lines[-12:]), tracker=tracker.info(), **base)
    return _close(tracker, rec, {"status": "failed"}, None)


def _close(tracker: Tracker, rec: RunRecord, summary: dict[str, Any],
           per_class: dict[str, list[Any]] | None) -> RunRecord:
    """Finish the tracker with the record itself (the tracker keeps a copy); a tracker that failed meanwhile says so
    in the local record."""
    tracker.finish(summary, per_class, failed=rec.status != "done", record=rec.model_dump(mode="json"))
    info = tracker.info()
    return rec if info == rec.tracker else rec.model_copy(update={"tracker": info})


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
    base["environment"]["device"] = res.device
    base["environment"]["execution"] = res.execution
    rec = RunRecord(status="done", stage1=stage1, metrics={"last": res.last, "best": res.best},
                    best_epoch=res.best_epoch,
                    per_class={"last": res.per_class_last, "best": res.per_class_best},
                    class_counts=res.class_counts, shot_groups=res.groups, curve=res.curve,
                    wall_time_s=res.wall_time_s, num_params=res.num_params, tracker=tracker.info(),
                    timing=res.timing or None, **base)
    return _close(tracker, rec, summary, per_class)


def finish_job(job: RunJob, rec: RunRecord, progress: Any = None) -> RunOutcome:
    """Write the record atomically, then remove the run's checkpoint; report the outcome."""
    write_record(job.path, rec)
    job.path.with_suffix(".ckpt").unlink(missing_ok=True)
    job.path.with_suffix(".wandb-id").unlink(missing_ok=True)
    out = RunOutcome(job.run, RunState(rec.status), job.path, (rec.metrics.get("best") or {}).get("acc/all"), rec.error)
    if progress:
        progress.end_run(out)
    return out


def offline_runs_hint(outcomes: list[RunOutcome]) -> str | None:
    """Where the W&B runs of the runs trained here went when offline, with the `wandb sync` line (None: none)."""
    infos = []
    for o in outcomes:
        if o.state in (RunState.DONE, RunState.FAILED) and o.path.is_file():
            try:
                infos.append(read_record(o.path).tracker)
            except (ValueError, OSError):
                continue
    return offline_sync_hint(infos)


def outcome_json(o: RunOutcome) -> dict[str, Any]:
    """An outcome as a worker reports it to its parent (one JSON object per line)."""
    return {"run_id": o.run.run_id, "state": o.state.value, "detail": o.detail, "acc": o.acc, "error": o.error}


def outcome_of(job: RunJob, r: dict[str, Any]) -> RunOutcome:
    """The outcome a worker reported for `job`."""
    return RunOutcome(job.run, RunState(r["state"]), job.path, r.get("acc"), r.get("error"), r.get("detail", ""))
