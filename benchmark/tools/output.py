"""What the commands print with --json: outcomes, statuses, report cells and registries as plain data."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from benchmark.config.suite import RunSpec
from benchmark.run.executors import read_queue, run_status
from benchmark.run.records import record_path


def run_json(r: RunSpec) -> dict[str, Any]:
    """The identity of a planned run."""
    return {"suite": r.suite, "run_id": r.run_id, "row": r.row, "column": r.column, "seed": r.seed,
            "smoke": r.smoke}


def outcomes_json(outcomes: list[Any]) -> list[dict[str, Any]]:
    """`run suite --json`: per planned run its identity, status, best top-1, record path and error."""
    return [{**run_json(o.run), "state": o.state.value, "status": o.status, "best_acc": o.acc, "record": str(o.path),
             "error": o.error} for o in outcomes]


def status_rows(runs: list[RunSpec], results_dir: Path) -> list[dict[str, Any]]:
    """`status`: per planned run its identity and status (done, failed, running, interrupted, queued, not started)."""
    if not runs:
        return []
    queue = read_queue(results_dir / runs[0].suite)
    out = []
    for r in runs:
        path = record_path(results_dir, r.suite, r.cell, r.run_id)
        st = run_status(path, r.run_id, queue)
        out.append({**run_json(r), "state": st.state.value, "status": str(st), "record": str(path)})
    return out


def status_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many runs are in each state ('queued (123)' counts as queued)."""
    counts: dict[str, int] = {}
    for row in rows:
        key = row["state"]
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def report_json(suite: str, files: Any) -> dict[str, Any]:
    """`report --json`: the files written and the table's cells as the CSV holds them."""
    with open(files.csv, newline="") as f:
        cells = list(csv.DictReader(f))
    written = {k: str(v) for k, v in vars(files).items() if isinstance(v, Path)}
    return {"suite": suite, "files": written, "cells": cells}


def registries_json(regs: dict[str, list[tuple[str, str]]], kind: str | None) -> dict[str, list[dict[str, str]]]:
    """`ls --json`: registry -> [{name, description}]."""
    return {name: [{"name": n, "description": d} for n, d in entries] for name, entries in regs.items()
            if kind in (None, name)}
