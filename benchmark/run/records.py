"""Result records: one JSON per run, the schema, atomic writes, lookup, and environment capture (no torch)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from benchmark.schema.files import atomic_write_text

SCHEMA_VERSION = 1


class RunRecord(BaseModel):
    """What one training run leaves behind; reports read nothing else."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    status: Literal["done", "failed"]
    run_id: str  # cell, seed and hash of the resolved settings
    config_hash: str  # hash without the seed: the runs of one table cell share it
    suite: str
    suite_version: int
    row: str  # display name as in the paper
    column: str | None = None  # column name for tables whose columns are settings
    seed: int
    smoke: bool = False
    settings: dict[str, Any]  # the fully resolved RunSettings
    choices: dict[str, str] = Field(default_factory=dict)  # code-vs-paper choices this run used
    metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)  # {"last": {...}, "best": {...}}
    best_epoch: int | None = None
    per_class: dict[str, list[float]] = Field(default_factory=dict)  # {"last": [...], "best": [...]}
    class_counts: list[int] = Field(default_factory=list)
    shot_groups: dict[str, int] = Field(default_factory=dict)  # group sizes
    curve: list[dict[str, Any]] = Field(default_factory=list)  # one row per epoch
    wall_time_s: float | None = None
    # where a training batch's time goes, over the timing window (CMO's active epochs): data_wait_s_per_batch,
    # step_s_per_batch, batch_s_per_batch, batches, step_samples, epochs, how measured; None in older records
    timing: dict[str, Any] | None = None
    num_params: int | None = None
    error: str | None = None  # failed runs: the exception and the traceback's last lines
    environment: dict[str, Any] = Field(default_factory=dict)
    tracker: dict[str, Any] = Field(default_factory=dict)  # e.g. W&B mode, run path
    stage1: dict[str, Any] | None = None  # two-stage runs: the stage-1 run id, where it came from, its metrics
    # a linked copy (same settings hash trained once): {"suite", "run_id", "path"} of the record that trained it,
    # path relative to the results folder; None for a record of a run trained under its own id
    reused_from: dict[str, str] | None = None
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    # sha256 of the record's other fields (record_digest), written with them; None in records of older versions
    digest: str | None = None


class DamagedRecordError(ValueError):
    """A record whose content does not match the digest written with it."""


def record_digest(record: RunRecord) -> str:
    """sha256 over the record's fields except the digest, as canonical JSON (key order and spacing fixed)."""
    body = record.model_dump(mode="json", exclude={"digest"})
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def record_path(results_dir: Path, suite: str, cell: str, run_id: str) -> Path:
    """results/<suite>/<cell>/<run_id>.json"""
    return results_dir / suite / cell / f"{run_id}.json"


def write_record(path: Path, record: RunRecord) -> None:
    """Write atomically with its digest: a temp file in the same folder, fsync, then rename over the target."""
    plain = RunRecord.model_validate_json(record.model_dump_json(exclude={"digest"}))  # the values as read back
    text = plain.model_copy(update={"digest": record_digest(plain)}).model_dump_json(indent=1)
    try:
        atomic_write_text(path, text, fsync=True)
    except OSError as e:
        if e.filename is None:  # a failed write names no file: name the target
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def read_record(path: Path) -> RunRecord:
    """A record, its digest checked (records of older versions have none); DamagedRecordError on a mismatch."""
    rec = RunRecord.model_validate_json(path.read_bytes())
    if rec.digest is not None and record_digest(rec) != rec.digest:
        raise DamagedRecordError(f"{path}: damaged record (its content does not match the digest written with it); "
                                 f"delete it or rerun with --force to train the run again")
    return rec


def load_records(results_dir: Path, suite: str) -> list[RunRecord]:
    """Every readable record of a suite (unreadable files are skipped with a warning)."""
    out = []
    for p in sorted((results_dir / suite).glob("*/*.json")):
        try:
            out.append(read_record(p))
        except DamagedRecordError as e:
            print(f"lt-bench: skipping {e}")
        except (ValueError, OSError) as e:
            print(f"lt-bench: skipping unreadable record {p}: {str(e).splitlines()[0]}")
    return out


def environment() -> dict[str, Any]:
    """Package versions, Python, host and git commit (with a dirty flag); the device comes from training."""
    pkgs = {}
    for name in ("torch", "torchvision", "timm", "numpy", "wandb", "lt-bench"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "host": platform.node(),
            "pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "packages": pkgs, **git_state()}


def git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": sha or None, "git_dirty": dirty if sha else None}

