"""W&B round trip: an offline run of a CLI suite run, read back from the files W&B wrote."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from benchmark.cli import app
from tests.wandb_reader import read_run


def test_offline_run_read_back(tiny_suite: Path, tmp_path: Path, wandb_offline: Path) -> None:
    res = CliRunner().invoke(app, ["run", "suite", str(tiny_suite), "--results-dir", str(tmp_path / "res"),
                                   "--tracker", "wandb"])
    assert res.exit_code == 0, res.output
    files = sorted(wandb_offline.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2  # one W&B run per training run (the cited row is not run)
    runs = {r["run"]["name"]: r for r in map(read_run, files)}
    run = runs["CE + CMO s0"]
    assert run["run"]["group"] == "tiny" and run["run"]["job_type"] == "ce-cmo"
    assert {"mixer:cmo", "seed0", "synthetic_lt"} <= set(run["run"]["tags"])
    assert run["config"]["method"]["mixer"] == "cmo"
    assert run["config"]["train"]["epochs"] == 2
    record = json.loads(next((tmp_path / "res" / "tiny" / "ce-cmo").glob("*.json")).read_text())
    assert run["config"]["run_id"] == record["run_id"]
    assert run["summary"]["best/acc/all"] == record["metrics"]["best"]["acc/all"]
    assert run["summary"]["last/acc/few"] == record["metrics"]["last"]["acc/few"]
    assert [h["epoch"] for h in run["history"] if "epoch" in h] == [0, 1]
    table = run["summary"]["per_class"]
    assert table["_type"] == "table-file" and table["nrows"] == 4
    run_dir = files[[read_run(f)["run"]["name"] for f in files].index("CE + CMO s0")].parent
    table_json = json.loads((run_dir / "files" / table["path"]).read_text())
    assert table_json["columns"][:3] == ["class", "name", "train_count"]
    assert [row[2] for row in table_json["data"]] == record["class_counts"]
    assert run["exit_code"] == 0
    assert record["tracker"]["mode"] == "offline" and record["tracker"]["ok"] is True


def test_tracker_none_writes_no_wandb_files(tiny_suite: Path, tmp_path: Path, wandb_offline: Path) -> None:
    res = CliRunner().invoke(app, ["run", "suite", str(tiny_suite), "--results-dir", str(tmp_path / "res"),
                                   "--tracker", "none", "--seeds", "3"])
    assert res.exit_code == 0, res.output
    assert not list(wandb_offline.glob("**/*.wandb"))
    assert len(list((tmp_path / "res" / "tiny").glob("*/*.json"))) == 2
