"""Checkpoints: a run interrupted after any epoch, or killed with SIGKILL, resumes to identical results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.config.catalog import load_dataset
from benchmark.engine.checkpoint import CheckpointError
from benchmark.engine.loop import fit
from benchmark.schema.settings import RunSettings

SETTINGS = {"data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 48,
                     "test_per_class": 4, "image_size": 8},
            "train": {"epochs": 4, "batch_size": 8, "warmup_epochs": 1, "device": "cpu", "checkpoint_every_s": 0},
            "method": {"mixer": "cmo"}, "mixer": {"start": -1, "end": 0}}


def _no_time(d: dict) -> dict:
    """Everything but wall-clock measurements (which differ between any two runs)."""
    return {k: v for k, v in d.items() if "time" not in k}


class Stop(Exception):
    pass


def test_interrupted_run_resumes_identically(tmp_path: Path) -> None:
    s = RunSettings.model_validate(SETTINGS)
    data = load_dataset(s.data)
    full = fit(s, data)
    ckpt = tmp_path / "run.ckpt"

    def stop_after_epoch_1(row: dict) -> None:
        if row["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        fit(s, data, on_epoch=stop_after_epoch_1, checkpoint=ckpt, run_id="r1")
    resumed_epochs: list[int] = []
    res = fit(s, data, on_epoch=lambda row: resumed_epochs.append(row["epoch"]), checkpoint=ckpt, run_id="r1")
    assert resumed_epochs == [2, 3]  # epochs 0 and 1 came from the checkpoint
    assert [_no_time(r) for r in res.curve] == [_no_time(r) for r in full.curve]
    assert _no_time(res.last) == _no_time(full.last) and _no_time(res.best) == _no_time(full.best)
    assert res.per_class_last == full.per_class_last
    with pytest.raises(CheckpointError, match="not 'r2'"):
        fit(s, data, checkpoint=ckpt, run_id="r2")


SUITE = """
suite: killme
version: 1
title: kill test
defaults:
  data: {name: synthetic_lt, imbalance_ratio: 4, num_classes: 4, max_per_class: 200, test_per_class: 4, image_size: 16}
  train: {epochs: 6, batch_size: 8, warmup_epochs: 1, device: cpu, checkpoint_every_s: 0}
  mixer: {start: -1, end: 0}
seeds: [0]
rows:
  - name: CMO
    method: {mixer: cmo}
"""


def _run(suite: Path, results: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", "suite", str(suite), "--results-dir",
                             str(results), "--tracker", "none"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    suite = tmp_path / "killme.yaml"
    suite.write_text(SUITE)
    assert _run(suite, tmp_path / "ref").wait(timeout=300) == 0
    proc = _run(suite, tmp_path / "res")
    deadline = time.time() + 240
    while not list((tmp_path / "res").glob("killme/*/*.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # now inside a later epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((tmp_path / "res").glob("killme/*/*.json"))  # no record for a killed run
    assert _run(suite, tmp_path / "res").wait(timeout=300) == 0
    ref = json.loads(next((tmp_path / "ref").glob("killme/*/*.json")).read_text())
    got = json.loads(next((tmp_path / "res").glob("killme/*/*.json")).read_text())
    assert got["run_id"] == ref["run_id"]
    assert {k: _no_time(v) for k, v in got["metrics"].items()} == {k: _no_time(v) for k, v in ref["metrics"].items()}
    assert [c["train/loss"] for c in got["curve"]] == [c["train/loss"] for c in ref["curve"]]
    assert not list((tmp_path / "res").glob("killme/*/*.ckpt"))  # removed once the record exists
