"""W&B round trip: an offline run of a CLI suite run, read back from the files W&B wrote."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.run.records import read_record
from benchmark.run.tracking import wandb_run_id
from tests.test_faults import SLOW_SUITE, _cli
from tests.wandb_reader import flush_wandb, read_run


def test_offline_run_read_back(tiny_suite: Path, tmp_path: Path, wandb_offline: Path) -> None:
    res = CliRunner().invoke(app, ["run", "suite", str(tiny_suite), "--results-dir", str(tmp_path / "res"),
                                   "--tracker", "wandb"])
    assert res.exit_code == 0, res.output
    flush_wandb()
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


def test_sigterm_resumed_run_is_one_wandb_run(tmp_path: Path, wandb_offline: Path) -> None:
    """Pre-empted after some epochs, resumed by the same command: both attempts log to the W&B id of the record,
    and the steps (= epochs) of the two attempts follow each other with no gap and no repeat."""
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SLOW_SUITE.replace("epochs: 3", "epochs: 6"))
    args = ["run", "suite", str(suite), "--results-dir", str(tmp_path / "res"), "--tracker", "wandb", "--seeds", "0",
            "--rows", "CE"]
    proc = _cli(args)
    deadline = time.time() + 240
    while not list((tmp_path / "res").glob("tiny/*/*.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 3, out
    assert len(list(wandb_offline.glob("wandb/offline-run-*/run-*.wandb"))) == 1
    rerun = _cli(args)
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out
    record = read_record(next((tmp_path / "res").glob("tiny/ce/*.json")))
    files = sorted(wandb_offline.glob("wandb/offline-run-*/run-*.wandb"))  # folder names start with the time
    assert len(files) == 2
    attempts = [read_run(f) for f in files]
    assert {a["run"]["id"] for a in attempts} == {record.run_id} == {wandb_run_id(record.run_id)}
    assert record.tracker["wandb_run_id"] == record.run_id
    steps = [[h["_step"] for h in a["history"]] for a in attempts]
    assert steps[0] and steps[1] and steps[0] + steps[1] == list(range(6)), steps
    assert [h["epoch"] for a in attempts for h in a["history"]] == list(range(6))
    assert attempts[0]["exit_code"] == 1 and attempts[1]["exit_code"] == 0
    assert attempts[1]["config"]["git_commit"] == record.environment["git_commit"]
    assert f"wandb sync {wandb_offline / 'wandb'}/offline-run-*" in out
