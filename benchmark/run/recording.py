"""A run's result record and its tracker run: fields known before training, the done or failed record, the outcome."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config.choices import choices_for
from benchmark.config.suite import REPO_ROOT, RunSpec, slug
from benchmark.data.base import LTData
from benchmark.data.profile import shot_groups
from benchmark.run.faults import os_error_line
from benchmark.run.jobs import RunJob
from benchmark.run.records import RunRecord, environment, write_record
from benchmark.run.tracking import Tracker


@dataclass
class RunOutcome:
    """What happened to one planned run."""

    run: RunSpec
    status: str  # done | failed | skipped | planned
    path: Path
    acc: float | None = None
    error: str | None = None


def tags_for(r: RunSpec) -> list[str]:
    s = r.settings
    tags = [s.data.name, f"ir{s.data.imbalance_ratio:g}", s.backbone.name, f"loss:{s.method.loss}",
            f"rule:{s.method.rule}", f"mixer:{s.method.mixer}", f"seed{r.seed}", f"suite:{r.suite}"]
    return tags + (["smoke"] if r.smoke else [])


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


def wandb_dir() -> Path:
    """Where W&B writes its run folders: $WANDB_DIR, else the repository root."""
    return Path(os.environ.get("WANDB_DIR") or REPO_ROOT)


def record_base(r: RunSpec, data: LTData) -> dict[str, Any]:
    """The record fields known before training."""
    return dict(run_id=r.run_id, config_hash=r.config_hash, suite=r.suite, suite_version=r.suite_version,
                row=r.row, column=r.column, seed=r.seed, smoke=r.smoke, settings=r.settings.model_dump(mode="json"),
                choices=choices_for(r.settings, data), environment=environment())


def failed_record(base: dict[str, Any], tracker: Tracker, e: BaseException) -> RunRecord:
    """Close the tracker as failed; the record keeps the exception and the traceback's last lines."""
    tb = traceback.format_exception(e)
    tb_lines = "".join(tb).strip().splitlines()
    tracker.finish({"status": "failed"}, None, failed=True)
    first = f"{type(e).__name__}: {os_error_line(e)}" if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
    return RunRecord(status="failed", error=first + "\n" + "\n".join(tb_lines[-12:]),
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


def finish_job(job: RunJob, rec: RunRecord, progress: Any = None) -> RunOutcome:
    """Write the record atomically, then remove the run's checkpoint; report the outcome."""
    write_record(job.path, rec)
    job.path.with_suffix(".ckpt").unlink(missing_ok=True)
    out = RunOutcome(job.run, rec.status, job.path, (rec.metrics.get("best") or {}).get("acc/all"), rec.error)
    if progress:
        progress.end_run(out)
    return out
