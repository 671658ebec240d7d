"""`lt-bench pull`: rebuild a suite's result records from its W&B runs (wandb.Api) into the normal results layout.

Each finished or failed W&B run of lt-bench holds its full record as the run file RECORD_FILE (see tracking.py);
runs are found by `config.suite`. The newest record per run id wins (an older W&B run of a --force re-run loses).
A planned run that W&B has no run of may be a linked copy (`reused_from`) of a run trained for another suite: that
run is found by its settings hash (the end of its run id), pulled into its own suite's folder, and the copy is made
from it as `run suite` makes it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.config.suite import RunSpec, slug
from benchmark.run.planning import linked_record
from benchmark.run.records import RunRecord, read_record, record_path, write_record
from benchmark.run.tracking import RECORD_FILE


class PullError(ValueError):
    """W&B cannot be read (no network, not logged in, unknown project), phrased as one line."""


@dataclass
class PullResult:
    """What `pull_suite` did."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    kept_local: list[Path] = field(default_factory=list)  # the local record is newer than W&B's
    linked: list[Path] = field(default_factory=list)  # copies of records trained for another suite
    skipped: list[str] = field(default_factory=list)  # "<W&B run id>: why"
    seen: int = 0  # W&B runs of the suite


def explain(e: BaseException, entity: str, project: str) -> str:
    """One line for a W&B API failure: not logged in, no network, unknown project, or the error itself."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    low = f"{type(e).__name__} {text}".lower()
    where = f"W&B project '{entity}/{project}'"
    if "api key" in low or "api_key" in low or ("login" in low and "failed to execute" not in low):
        return f"cannot read {where}: not logged in to W&B ({text}); run `wandb login` or set WANDB_API_KEY"
    if any(s in low for s in ("failed to execute api request", "connection", "timed out", "timeout",
                              "name resolution", "unreachable", "max retries")):
        return f"cannot reach W&B to read {where} ({text}); check the network or WANDB_BASE_URL"
    if any(s in low for s in ("could not find", "not found", "404", "does not exist")):
        return f"no {where}, or no access to it ({text}); check --entity and --project"
    return f"cannot read {where}: {type(e).__name__}: {text}"


def open_api() -> Any:
    """The real `wandb.Api()` (reads WANDB_API_KEY / netrc, WANDB_BASE_URL)."""
    import wandb

    return wandb.Api(timeout=30)


def suite_runs(api: Any, entity: str, project: str, suite: str) -> list[Any]:
    """The W&B runs whose config names the suite, oldest first."""
    return list(api.runs(f"{entity}/{project}", filters={"config.suite": suite}, order="+created_at"))


def fetch_record(run: Any, tmp: Path) -> RunRecord:
    """The record a W&B run carries as its RECORD_FILE."""
    folder = tmp / str(run.id)
    folder.mkdir(parents=True, exist_ok=True)
    run.file(RECORD_FILE).download(root=str(folder), replace=True).close()
    return read_record(folder / RECORD_FILE)


def cell_of(rec: RunRecord) -> str:
    """The record's folder under results/<suite>/ (as RunSpec.cell)."""
    return slug(rec.row) + (f"__{slug(rec.column)}" if rec.column else "")


def pull_suite(suite: str, entity: str, project: str, results_dir: Path, api: Any = None,
               planned: list[RunSpec] | None = None) -> PullResult:
    """Write the suite's records found in W&B to results_dir/<suite>/<cell>/<run_id>.json (atomically); for the
    `planned` runs W&B has no record of, linked copies of the same settings trained for another suite.

    A local record that is newer (`created`) than W&B's is kept; one with identical content is left alone.
    """
    try:
        api = api if api is not None else open_api()
        runs = suite_runs(api, entity, project, suite)
    except Exception as e:  # the client raises many types (UsageError, CommError, ValueError, requests errors)
        raise PullError(explain(e, entity, project)) from None
    out = PullResult(seen=len(runs))
    newest: dict[str, RunRecord] = {}
    with tempfile.TemporaryDirectory(prefix="lt-bench-pull-") as tmp:
        for run in runs:
            if getattr(run, "state", "finished") not in ("finished", "failed", "crashed"):
                out.skipped.append(f"{run.id}: {run.state}")
                continue
            try:
                rec = fetch_record(run, Path(tmp))
            except Exception as e:  # no record file (a pre-empted attempt, an older lt-bench), unreadable JSON
                out.skipped.append(f"{run.id}: no readable {RECORD_FILE} ({type(e).__name__})")
                continue
            if rec.suite != suite:
                out.skipped.append(f"{run.id}: record of suite '{rec.suite}'")
                continue
            if rec.run_id not in newest or rec.created >= newest[rec.run_id].created:
                newest[rec.run_id] = rec
    for rec in newest.values():
        _put(rec, results_dir, out)
    for r in planned or []:
        if r.run_id not in newest and not _done(record_path(results_dir, suite, r.cell, r.run_id)):
            _pull_link(api, f"{entity}/{project}", r, results_dir, out)
    return out


def _put(rec: RunRecord, results_dir: Path, out: PullResult) -> Path:
    """Write a pulled record to its place unless the local one is the same or newer."""
    path = record_path(results_dir, rec.suite, cell_of(rec), rec.run_id)
    local = _read_or_none(path)
    if local is not None and local.model_copy(update={"digest": None}) == rec.model_copy(update={"digest": None}):
        out.unchanged.append(path)
    elif local is not None and local.created > rec.created:
        out.kept_local.append(path)
    else:
        write_record(path, rec)
        out.written.append(path)
    return path


def _pull_link(api: Any, project: str, r: RunSpec, results_dir: Path, out: PullResult) -> None:
    """The linked copy of `r` from a finished W&B run of the same settings (hash with seed) in another suite."""
    try:
        runs = list(api.runs(project, filters={"config.run_id": {"$regex": f"-{r.run_hash}$"}},
                             order="+created_at"))
    except Exception as e:
        out.skipped.append(f"{r.run_id}: no W&B run of its settings found ({type(e).__name__})")
        return
    with tempfile.TemporaryDirectory(prefix="lt-bench-pull-") as tmp:
        for run in runs:
            try:
                rec = fetch_record(run, Path(tmp))
            except Exception:
                continue
            if rec.status == "done" and rec.smoke == r.smoke and rec.reused_from is None and \
                    rec.run_id.endswith(r.run_hash):
                source = _put(rec, results_dir, out)
                link = linked_record(source, r, results_dir)
                write_record(record_path(results_dir, r.suite, r.cell, r.run_id), link)
                out.linked.append(record_path(results_dir, r.suite, r.cell, r.run_id))
                return


def _done(path: Path) -> bool:
    rec = _read_or_none(path)
    return rec is not None and rec.status == "done"


def _read_or_none(path: Path) -> RunRecord | None:
    try:
        return read_record(path) if path.is_file() else None
    except (ValueError, OSError):
        return None
