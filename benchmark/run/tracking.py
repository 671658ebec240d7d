"""Experiment trackers: W&B (offline automatically without an API key) and a no-op; failures never spread."""

from __future__ import annotations

import netrc
import os
import warnings
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    """One tracker per training run: start, per-epoch rows, finish with the summary."""

    def start(self, meta: dict[str, Any], config: dict[str, Any], tags: list[str]) -> None: ...

    def log_epoch(self, row: dict[str, Any]) -> None: ...

    def finish(self, summary: dict[str, Any], per_class: dict[str, list[Any]] | None, failed: bool) -> None: ...

    def info(self) -> dict[str, Any]: ...


class NullTracker:
    """Tracks nothing (--tracker none)."""

    def start(self, meta: dict[str, Any], config: dict[str, Any], tags: list[str]) -> None:
        pass

    def log_epoch(self, row: dict[str, Any]) -> None:
        pass

    def finish(self, summary: dict[str, Any], per_class: dict[str, list[Any]] | None, failed: bool) -> None:
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
    """One W&B run per training run: group = suite, job_type = row, name = row + seed.

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
        kwargs = dict(project=self.project, entity=self.entity, group=meta["suite"],
                      job_type=meta["job_type"], name=meta["name"], tags=[t[:64] for t in tags],
                      config={**config, "run_id": meta["run_id"], "suite_version": meta["suite_version"],
                              "row": meta["row"], "column": meta["column"]},
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

    def log_epoch(self, row: dict[str, Any]) -> None:
        self._guard("log", lambda: self.run.log({k: v for k, v in row.items() if v is not None}))

    def finish(self, summary: dict[str, Any], per_class: dict[str, list[Any]] | None, failed: bool) -> None:
        def _finish() -> None:
            import wandb

            for k, v in summary.items():
                self.run.summary[k] = v
            if per_class:
                cols = list(per_class)
                rows = [list(r) for r in zip(*per_class.values(), strict=True)]
                self.run.summary["per_class"] = wandb.Table(columns=cols, data=rows)
            self.run.finish(exit_code=1 if failed else 0)

        self._guard("finish", _finish)

    def info(self) -> dict[str, Any]:
        if self.run is None:
            return {"tracker": "wandb", "mode": self.mode, "ok": False}
        return {"tracker": "wandb", "mode": self.mode, "ok": not self._failed, "project": self.project,
                "wandb_run_id": getattr(self.run, "id", None), "dir": getattr(self.run, "dir", None)}


def make_tracker(kind: str, wandb_dir: Path | None = None) -> Tracker:
    if kind == "none":
        return NullTracker()
    if kind == "wandb":
        return WandbTracker(wandb_dir=wandb_dir)
    raise ValueError(f"unknown tracker '{kind}': use wandb or none")
