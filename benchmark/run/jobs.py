"""A pending run as a job: where its record goes, how an existing record is treated, its JSON for other processes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmark.config.suite import RunSpec, SuiteError
from benchmark.run.records import DamagedRecordError, read_record
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


class UntrustedRecordError(SuiteError):
    """A record at a run's path that cannot be trusted: damaged, unreadable, or of another run."""


def should_run(path: Path, retry_failed: bool, force: bool, run: RunSpec | None = None) -> tuple[bool, str | None]:
    """(run it?, existing status): finished runs are never redone unless forced; failed ones on request. A record
    that cannot be trusted (see existing_status) stops the command unless forced."""
    if force and (path.is_file() or not path.exists()):
        try:
            return True, existing_status(path, run)
        except SuiteError:
            return True, None
    status = existing_status(path, run)
    if status is None:
        return True, status
    return status == "failed" and retry_failed, status


def existing_status(path: Path, run: RunSpec | None = None) -> str | None:
    """'done' / 'failed' for a record that can be trusted, None when absent. A damaged or unreadable record, or one
    whose run id is not its file name (or, given `run`, whose run id or settings hash are not the plan's), is an
    UntrustedRecordError: one line naming the file and what to do."""
    todo = "delete it or rerun with --force to overwrite it"
    if path.exists() and not path.is_file():
        raise UntrustedRecordError(f"{path}: a folder (or other non-file) where the run's record belongs; move it")
    if not path.is_file():
        return None
    try:
        rec = read_record(path)
    except DamagedRecordError as e:
        raise UntrustedRecordError(str(e)) from None
    except (ValueError, OSError) as e:
        raise UntrustedRecordError(f"{path}: unreadable record ({type(e).__name__}); {todo}") from None
    if rec.run_id != path.stem or (run is not None and (rec.run_id != run.run_id
                                                        or rec.config_hash != run.config_hash)):
        raise UntrustedRecordError(f"{path}: the record is of run '{rec.run_id}' (settings {rec.config_hash}), "
                                   f"not of the run planned at this path; {todo}")
    return rec.status
