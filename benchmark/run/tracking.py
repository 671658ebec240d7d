"""Experiment trackers: W&B (offline automatically without an API key) and a no-op; failures never spread.

One W&B run per result record: its id is `wandb_run_id(record run id)` and it is opened with resume="allow", so a
pre-empted run that resumes from its checkpoint continues the same W&B run, its steps being the epochs.
"""

from __future__ import annotations

import hashlib
import json
import netrc
import os
import re
import warnings
from pathlib import Path
from typing import Any, Protocol

RECORD_FILE = "lt-bench-record.json"  # the run's full result record, saved as a W&B run file (see `lt-bench pull`)
WANDB_ID_MAX = 64  # W&B sets no length limit; ours keeps run folders and URLs short
_WANDB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def wandb_run_id(run_id: str, suffix: str = "") -> str:
    """The W&B run id of a record: the record's run id itself when it only has letters, digits, '.', '_', '-' and
    fits in 64 characters with `suffix` (always the case for lt-bench's ids); otherwise the unsafe characters become
    '-' and the id is cut to leave room for '-' + 8 hex digits of the sha1 of the original id, so distinct run ids
    keep distinct W&B ids. `suffix` (e.g. '-f20261130T234500' under --force) is appended after the mapping."""
    safe = _WANDB_ID_UNSAFE.sub("-", run_id)
    if safe == run_id and len(run_id) + len(suffix) <= WANDB_ID_MAX:
        return run_id + suffix
    digest = hashlib.sha1(run_id.encode()).hexdigest()[:8]
    return f"{safe[:WANDB_ID_MAX - len(suffix) - 9]}-{digest}{suffix}"


class Tracker(Protocol):
    """One tracker per training run: start, per-epoch rows, finish with the summary."""

    def start(self, meta: dict[str, Any], config: dict[str, Any], tags: list[str]) -> None: ...

    def log_epoch(self, row: dict[str, Any], step: int | None = None) -> None: ...

    def finish(self, summary: dict[str, Any], per_class: dict[str, list[Any]] | None, failed: bool,
               record: dict[str, Any] | None = None) -> None: ...

    def info(self) -> dict[str, Any]: ...


class NullTracker:
    """Tracks nothing (--tracker none)."""

    def start(self, meta: dict[str, Any], config: dict[str, Any], tags: list[str]) -> None:
        pass

    def log_epoch(self, row: dict[str, Any], step: int | None = None) -> None:
        pass

    def finish(self, summary: dict[str, Any], per_class: dict[str, list[Any]] | None, failed: bool,
               record: dict[str, Any] | None = None) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {"tracker": "none"}


def wandb_api_key_configured() -> bool:
    """True when W&B can authenticate: WANDB_API_KEY or a netrc entry for a W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in h for h in hosts)


_WARNED_OFFLINE = False  # one warning per process when W&B cannot be reached


class WandbTracker:
    """One W&B run per training run: id from the record's run id (meta["wandb_id"]), group = suite (suite-smoke for
    smoke runs), job_type = row, name = row + seed.

    The mode is $WANDB_MODE when set, else online with an API key and offline without one. Any W&B
    error is reported once and tracking stops for that run; the local record is unaffected.
    """

    def __init__(self, project: str | None = None, entity: str | None = None, wandb_dir: Path | None = None):
        self.project = project or os.environ.get("WANDB_PROJECT") or "lt-bench"
        self.entity = entity or os.environ.get("WANDB_ENTITY")
        self.wandb_dir = wandb_dir
        self.mode = os.environ.get("WANDB_MODE") or ("online" if wandb_api_key_configured() else "offline")
        self.run: Any = None
        self._failed = False

    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._failed or (self.run is None and what != "init"):
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # W&B must never break a run
            self._failed = True
            warnings.warn(f"W&B {what} failed ({type(e).__name__}: {e}); continuing without W&B for this run",
                          stacklevel=2)
            return None

    def start(self, meta: dict[str, Any], config: dict[str, Any], tags: list[str]) -> None:
        import wandb

        if self.wandb_dir is not None:
            self.wandb_dir.mkdir(parents=True, exist_ok=True)
        keys = ("run_id", "suite", "suite_version", "row", "column", "smoke", "git_commit", "git_dirty",
                "lt_bench_version")
        kwargs = dict(project=self.project, entity=self.entity, group=meta["group"], id=meta.get("wandb_id"),
                      resume="allow", job_type=meta["job_type"], name=meta["name"], tags=[t[:64] for t in tags],
                      config={**config, **{k: meta[k] for k in keys if k in meta}},
                      dir=str(self.wandb_dir) if self.wandb_dir else None, reinit="create_new",
                      settings=wandb.Settings(silent=True, console="off",
                                              init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 60))))
        global _WARNED_OFFLINE
        if self.mode == "online" and not _WARNED_OFFLINE:
            try:
                self.run = wandb.init(mode="online", **kwargs)
                self._define_metrics()
                return
            except Exception as e:  # unreachable server, bad key: fall back to offline for this process
                _WARNED_OFFLINE = True
                warnings.warn(f"W&B online init failed ({type(e).__name__}: {str(e)[:200]}); logging offline "
                              f"instead (upload later with `wandb sync`)", stacklevel=2)
        if self.mode == "online":
            self.mode = "offline"
        self.run = self._guard("init", wandb.init, mode=self.mode, **kwargs)
        self._define_metrics()

    def _define_metrics(self) -> None:
        if self.run is not None:
            self._guard("define_metric", self.run.define_metric, "epoch")
            self._guard("define_metric", self.run.define_metric, "*", step_metric="epoch")

    def log_epoch(self, row: dict[str, Any], step: int | None = None) -> None:
        """One epoch's row; `step` (the epoch, counted across stages) keeps a resumed run's steps contiguous."""
        self._guard("log", lambda: self.run.log({k: v for k, v in row.items() if v is not None}, step=step))

    def log_files(self, files: dict[str, Path]) -> None:
        """Log report files: a .csv as a wandb.Table, a .png as a wandb.Image, under their keys."""
        def _log() -> None:
            import pandas as pd
            import wandb

            items: dict[str, Any] = {}
            for key, path in files.items():
                if path.suffix == ".csv":
                    items[key] = wandb.Table(dataframe=pd.read_csv(path, keep_default_na=False).astype(str))
                elif path.suffix == ".png":
                    items[key] = wandb.Image(str(path), caption=path.name)
            self.run.log(items)

        self._guard("log", _log)

    def finish(self, summary: dict[str, Any], per_class: dict[str, list[Any]] | None, failed: bool,
               record: dict[str, Any] | None = None) -> None:
        """Summary, per-class table and (finished or failed runs) the full record as the run file RECORD_FILE."""
        def _finish() -> None:
            import wandb

            if summary.get("status") == "preempted":
                self.run.mark_preempting()  # resumes under the same id (resume="allow")
            for k, v in summary.items():
                self.run.summary[k] = v
            if per_class:
                cols = list(per_class)
                rows = [list(r) for r in zip(*per_class.values(), strict=True)]
                self.run.summary["per_class"] = wandb.Table(columns=cols, data=rows)
            if record is not None:
                path = Path(self.run.dir) / RECORD_FILE
                tmp = path.with_name(f".{RECORD_FILE}.tmp")
                tmp.write_text(json.dumps(record, indent=1))
                os.replace(tmp, path)
                self.run.save(str(path), base_path=str(path.parent), policy="now")
            self.run.finish(exit_code=1 if failed else 0)

        self._guard("finish", _finish)

    def info(self) -> dict[str, Any]:
        if self.run is None:
            return {"tracker": "wandb", "mode": self.mode, "ok": False}
        return {"tracker": "wandb", "mode": self.mode, "ok": not self._failed, "project": self.project,
                "wandb_run_id": getattr(self.run, "id", None), "dir": getattr(self.run, "dir", None)}


def offline_sync_hint(infos: list[dict[str, Any]]) -> str | None:
    """Where the offline W&B runs of these tracker infos went and the exact `wandb sync` line (None: none offline)."""
    dirs = sorted({str(Path(i["dir"]).parent) for i in infos
                   if i.get("tracker") == "wandb" and i.get("mode") == "offline" and i.get("dir")})
    if not dirs:
        return None
    parents = sorted({str(Path(d).parent) for d in dirs})
    sync = "wandb sync " + " ".join(f"{p}/offline-run-*" for p in parents)  # every attempt of a resumed run too
    return f"W&B: {len(dirs)} offline run(s) written under {', '.join(parents)}; upload them with:\n  {sync}"


def make_tracker(kind: str, wandb_dir: Path | None = None) -> Tracker:
    if kind == "none":
        return NullTracker()
    if kind == "wandb":
        return WandbTracker(wandb_dir=wandb_dir)
    raise ValueError(f"unknown tracker '{kind}': use wandb or none")


def log_report(suite: str, files: dict[str, Path], smoke: bool = False, wandb_dir: Path | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One W&B run of job type "report" in the suite's group holding the report's tables and plots; returns its
    tracker info. Its config names the suite as `report_of` (not `suite`: `lt-bench pull` never meets it)."""
    t = WandbTracker(wandb_dir=wandb_dir)
    group = f"{suite}-smoke" if smoke else suite
    t.start({"group": group, "job_type": "report", "name": f"report {group}"},
            {"report_of": suite, "smoke": smoke, **(extra or {})}, [f"report:{suite}"])
    t.log_files(files)
    t.finish({"files": sorted(files)}, None, failed=False)
    return t.info()
