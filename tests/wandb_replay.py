"""A stand-in for `wandb.Api` that replays recorded API responses (runs with config, summary and files) offline.

The recorded form, one JSON: {"projects": {"<entity>/<project>": [{"id", "name", "group", "job_type", "state",
"tags", "created_at", "config", "summary", "files": {"<name>": "<text>"}}, ...]}}. `recorded_from_offline` makes it
from the folders an offline W&B client wrote (what `wandb sync` would upload), merging the attempts of one run id.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.wandb_reader import read_run


class ReplayFile:
    def __init__(self, name: str, text: str | None) -> None:
        self.name, self.text = name, text
        self.size = 0 if text is None else len(text)

    def download(self, root: str = ".", replace: bool = False, exist_ok: bool = False, api: Any = None) -> Any:
        if self.text is None:
            raise ValueError(f"file {self.name} not found")
        path = Path(root) / self.name
        if path.exists() and not replace:
            if exist_ok:
                return open(path)  # noqa: SIM115
            raise ValueError("File already exists, pass replace=True to overwrite")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text)
        return open(path)  # noqa: SIM115


class ReplayRun:
    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d
        self.id, self.name, self.group, self.job_type = d["id"], d["name"], d.get("group"), d.get("job_type")
        self.state, self.tags, self.created_at = d["state"], d.get("tags", []), d.get("created_at")
        self.config, self.summary = d.get("config", {}), d.get("summary", {})

    def file(self, name: str) -> ReplayFile:
        return ReplayFile(name, self._d.get("files", {}).get(name))


def _matches(run: dict[str, Any], filters: dict[str, Any]) -> bool:
    for key, want in filters.items():
        if key == "$and":
            if not all(_matches(run, f) for f in want):
                return False
        elif key.startswith("config.") and isinstance(want, dict) and set(want) == {"$regex"}:
            if not re.search(want["$regex"], str(run.get("config", {}).get(key.removeprefix("config."), ""))):
                return False
        elif key.startswith("config."):
            if run.get("config", {}).get(key.removeprefix("config.")) != want:
                return False
        elif key in ("group", "state", "jobType"):
            if run.get({"jobType": "job_type"}.get(key, key)) != want:
                return False
        else:
            raise NotImplementedError(f"replay filter {key}")
    return True


class ReplayApi:
    """Answers `runs(path, filters, order, ...)` from a recorded project; unknown projects fail like W&B's 404."""

    def __init__(self, recorded: dict[str, Any]) -> None:
        self.recorded = recorded
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def runs(self, path: str, filters: dict[str, Any] | None = None, order: str = "+created_at",
             per_page: int = 50, include_sweeps: bool = False, lazy: bool = True) -> list[ReplayRun]:
        self.calls.append((path, filters or {}))
        if path not in self.recorded["projects"]:
            raise ValueError(f"Could not find project {path}")
        runs = [r for r in self.recorded["projects"][path] if _matches(r, filters or {})]
        runs.sort(key=lambda r: r.get("created_at") or "", reverse=order.startswith("-"))
        return [ReplayRun(r) for r in runs]


def recorded_from_offline(wandb_dir: Path) -> list[dict[str, Any]]:
    """The runs an offline client wrote under wandb_dir/wandb, as the API would list them once synced."""
    by_id: dict[str, dict[str, Any]] = {}
    for f in sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb")):  # start-time order
        r = read_run(f)
        run = by_id.setdefault(r["run"]["id"], {"id": r["run"]["id"], "config": {}, "summary": {}, "files": {},
                                                 "created_at": f.parent.name.split("-")[2]})
        run.update(name=r["run"]["name"], group=r["run"]["group"], job_type=r["run"]["job_type"],
                   tags=r["run"]["tags"], state="finished" if r["exit_code"] == 0 else "failed")
        run["config"].update(r["config"])
        run["summary"].update(r["summary"])
        for p in (f.parent / "files").glob("*.json"):
            run["files"][p.name] = p.read_text()
    return list(by_id.values())


def write_recorded(path: Path, project: str, runs: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"projects": {project: runs}}, indent=1))
