"""Table 16 done fairly: every run records data wait vs step time; a timed suite trains its rows in one process
(no packs, no other executor) and its report shows both parts with the overhead against the first row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.config.suite import load_suite, plan
from benchmark.engine import timing
from benchmark.engine.timing import EpochClock, timing_summary
from benchmark.report import build_report
from benchmark.run.records import RunRecord, read_record, record_path, write_record
from benchmark.run.runner import run_suite
from benchmark.run.unit import InlineExecutor
from benchmark.schema.settings import RunSettings

TIMED_SUITE = """
suite: tiny16
version: 2
timed: true
title: "Tiny Table 16"
source: "test"
defaults:
  data: {name: synthetic_lt, imbalance_ratio: 4, num_classes: 4, max_per_class: 24, test_per_class: 4,
         image_size: 8}
  train: {epochs: 3, batch_size: 8, warmup_epochs: 0, device: cpu, pipeline: reference, workers: 0}
  mixer: {start: 0, end: 1}
seeds: [0]
metrics: [time/batch_s, time/data_wait_s, time/step_s, acc/all]
rows:
  - name: CE
    method: {loss: ce}
    paper: {time/batch_s: 0.355}
  - name: CE + CMO
    method: {loss: ce, mixer: cmo}
    paper: {time/batch_s: 0.369}
"""


@pytest.fixture
def timed_suite(tmp_path: Path) -> Path:
    p = tmp_path / "suites" / "tiny16.yaml"
    p.parent.mkdir(parents=True)
    p.write_text(TIMED_SUITE)
    return p


def test_timing_summary_averages_the_window_by_hand() -> None:
    s = RunSettings.model_validate({"train": {"epochs": 5}, "mixer": {"start": 1, "end": 1}})  # window: epochs 2, 3
    curve = [{"epoch": e, "train/time_per_batch_s": t, "train/time_data_wait_per_batch_s": w,
              "train/time_step_per_batch_s": st, "train/time_steps_timed": k}
             for e, t, w, st, k in [(0, 9.0, 9.0, 9.0, 1), (1, 9.0, 9.0, 9.0, 1), (2, 0.4, 0.1, 0.2, 1),
                                    (3, 0.6, 0.3, 0.5, 3), (4, 9.0, 9.0, 9.0, 1)]]
    metrics, measured = timing_summary(curve, s, steps=10)
    assert metrics["time/batch_s"] == pytest.approx(0.5)
    assert metrics["time/data_wait_s"] == pytest.approx(0.2)
    assert metrics["time/step_s"] == pytest.approx((0.2 * 1 + 0.5 * 3) / 4)  # weighted by timed steps
    assert measured["batches"] == 20 and measured["step_samples"] == 4 and measured["epochs"] == [2, 3]


def test_epoch_clock_splits_fetch_and_step_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fake clock: 0.2 s fetching and 0.5 s stepping per batch, every batch counted."""
    now = [100.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    clock = EpochClock(4, torch.device("cpu"))
    for _ in range(4):
        with clock.fetching():
            now[0] += 0.2
        now[0] += 3.0  # bookkeeping between fetch and step counts as neither
        with clock.stepping():
            now[0] += 0.5
    row = clock.row()
    assert row["train/time_steps_timed"] == 4
    assert row["train/time_data_wait_per_batch_s"] == pytest.approx(0.2)
    assert row["train/time_step_per_batch_s"] == pytest.approx(0.5)


def test_timed_suite_records_timing_in_one_process_and_reports_both_parts(timed_suite: Path,
                                                                          tmp_path: Path) -> None:
    runner = CliRunner()
    res_dir, rep_dir = tmp_path / "res", tmp_path / "rep"
    out = runner.invoke(app, ["run", "suite", str(timed_suite), "--results-dir", str(res_dir), "--tracker", "none"])
    assert out.exit_code == 0, out.output
    records = [read_record(p) for p in sorted(res_dir.glob("tiny16/*/*.json"))]
    assert [r.row for r in records] == ["CE", "CE + CMO"] and all(r.status == "done" for r in records)
    assert len({r.environment["pid"] for r in records}) == 1  # one process
    for r in records:
        t = r.timing
        assert t is not None and t["epochs"] == [1] and t["batches"] == t["step_samples"] == 7  # 54 images / 8
        assert 0 < t["data_wait_s_per_batch"] < t["batch_s_per_batch"] and t["step_s_per_batch"] > 0
        assert r.metrics["best"]["time/data_wait_s"] == t["data_wait_s_per_batch"]
        assert r.metrics["best"]["time/step_s"] == t["step_s_per_batch"]
        assert r.environment["execution"]["pack_size"] == 1
        assert all("train/time_data_wait_per_batch_s" in row for row in r.curve)
    rep = runner.invoke(app, ["report", str(timed_suite), "--results-dir", str(res_dir), "--out-dir", str(rep_dir)])
    assert rep.exit_code == 0, rep.output
    md = (rep_dir / "tiny16.md").read_text()
    ce, cmo = (r.metrics["best"] for r in records)
    assert "|  | CE | CE + CMO | CE + CMO vs CE |" in md  # the paper's orientation: methods as columns
    assert "| Paper: Training time per batch (s) | 0.355 | 0.369 | +3.94 % |" in md
    for metric, label in (("time/data_wait_s", "Data wait per batch"), ("time/step_s", "Step time per batch"),
                          ("time/batch_s", "Training time per batch")):
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| Ours: {label}"))
        overhead = 100 * (cmo[metric] - ce[metric]) / ce[metric]
        assert f"| {ce[metric]:.3f} (n=1) | {cmo[metric]:.3f} (n=1) | {overhead:+.2f} % |" in line
    assert (rep_dir / "tiny16.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timed_suite_refuses_other_executors(timed_suite: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["run", "suite", str(timed_suite), "--results-dir", str(tmp_path / "res"),
                                   "--tracker", "none", "--executor", "local"])
    assert out.exit_code == 2 and "--executor inline" in out.output and len(out.output.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()


def test_timing_report_from_hand_made_records(timed_suite: Path, tmp_path: Path) -> None:
    """Mean over seeds per column and the overhead of the means: CE 0.40 / 0.44 s -> 0.42; CMO 0.462 -> +10 %."""
    spec, _ = load_suite(str(timed_suite))
    values = {("CE", 0): (0.40, 0.10, 0.28), ("CE", 1): (0.44, 0.12, 0.30), ("CE + CMO", 0): (0.462, 0.15, 0.30),
              ("CE + CMO", 1): (0.462, 0.15, 0.32)}
    for r in plan(spec, seeds=[0, 1]):
        wall, wait, step = values[(r.row, r.seed)]
        m = {"time/batch_s": wall, "time/data_wait_s": wait, "time/step_s": step, "acc/all": 50.0}
        write_record(record_path(tmp_path / "res", r.suite, r.cell, r.run_id), RunRecord(
            status="done", run_id=r.run_id, config_hash=r.config_hash, suite=r.suite, suite_version=2, row=r.row,
            seed=r.seed, settings=r.settings.model_dump(mode="json"), metrics={"best": m, "last": m}))
    files = build_report(spec, tmp_path / "res", tmp_path / "rep", seeds=[0, 1])
    md = files.markdown.read_text()
    assert "| Ours: Training time per batch (s): wall, data wait + step | 0.420 ± 0.028 (n=2) | 0.462 ± 0.000 (n=2) " \
           "| +10.00 % |" in md
    assert "| 0.110 ± 0.014 (n=2) | 0.150 ± 0.000 (n=2) | +36.36 % |" in md  # data wait
    assert "| Ours: Top-1 accuracy (%) | 50.0 ± 0.0 (n=2) | 50.0 ± 0.0 (n=2) | +0.0 pts |" in md
    csv = pd.read_csv(files.csv)
    assert set(csv.metric) == {"time/batch_s", "time/data_wait_s", "time/step_s", "acc/all"}


def test_old_records_without_timing_still_load(tmp_path: Path) -> None:
    rec = RunRecord(status="done", run_id="a", config_hash="b", suite="s", suite_version=1, row="r", seed=0,
                    settings={})
    blob = rec.model_dump(mode="json")
    del blob["timing"]
    assert RunRecord.model_validate(blob).timing is None


def test_timed_rows_alternate_by_seed(timed_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed by seed, the rows one after another (CE, CE + CMO, CE, CE + CMO): a slow drift of the machine falls on
    both rows alike. Nothing is trained here: the executor only reports the order it was given."""
    order: list[tuple[str, int, int | None]] = []

    def fake_run(self: InlineExecutor, jobs: list, progress: object = None) -> list:
        order.extend((j.run.row, j.run.seed, self.pack) for j in jobs)
        return []

    monkeypatch.setattr(InlineExecutor, "run", fake_run)
    spec, _ = load_suite(str(timed_suite))
    run_suite(spec, seeds=[0, 1], results_dir=tmp_path / "res", tracker="none")
    assert order == [("CE", 0, 1), ("CE + CMO", 0, 1), ("CE", 1, 1), ("CE + CMO", 1, 1)]
