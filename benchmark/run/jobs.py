"""A pending run as a job: where its record goes, how an existing record is treated, its JSON for other processes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmark.config.suite import RunSpec
from benchmark.run.records import read_record
from benchmark.schema.settings import RunSettings


@dataclass(frozen=True)
class RunJob:
    """One run to execute: the planned run, where its record goes, and how to treat an existing record."""

    run: RunSpec
    path: Path
    tracker: str = "wandb"
    retry_failed: bool = False
    force: bool = False

    def to_json(self) -> str:
        r = self.run
        return json.dumps({"suite": r.suite, "suite_version": r.suite_version, "row": r.row, "column": r.column,
                           "seed": r.seed, "smoke": r.smoke, "settings": r.settings.model_dump(mode="json"),
                           "path": str(self.path), "tracker": self.tracker, "retry_failed": self.retry_failed,
                           "force": self.force})

    @classmethod
    def from_json(cls, text: str) -> RunJob:
        d = json.loads(text)
        run = RunSpec(d["suite"], d["suite_version"], d["row"], d["column"], d["seed"],
                      RunSettings.model_validate(d["settings"]), d["smoke"])
        return cls(run, Path(d["path"]), d["tracker"], d["retry_failed"], d["force"])


def should_run(path: Path, retry_failed: bool, force: bool) -> tuple[bool, str | None]:
    """(run it?, existing status): finished runs are never redone unless forced; failed ones on request."""
    status = existing_status(path)
    if force or status is None:
        return True, status
    return status == "failed" and retry_failed, status


def existing_status(path: Path) -> str | None:
    """'done' / 'failed' for a readable record, None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        return read_record(path).status
    except (ValueError, OSError):
        return None
