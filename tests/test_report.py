"""Reports: per-cell mean ± std over seeds and delta against the paper, from records alone; no torch import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from benchmark.config.suite import load_suite, plan
from benchmark.report import build_report
from benchmark.run.records import RunRecord, record_path, write_record


def _fake_records(spec_path: Path, res_dir: Path, accs: dict[str, list[float]]) -> None:
    spec, _ = load_suite(str(spec_path))
    runs = plan(spec, seeds=[0, 1, 2])
    for r in runs:
        acc = accs[r.row][r.seed]
        metrics = {"acc/all": acc, "acc/many": acc + 10, "acc/medium": acc, "acc/few": acc - 10}
        write_record(record_path(res_dir, r.suite, r.cell, r.run_id), RunRecord(
            status="done", run_id=r.run_id, config_hash=r.config_hash, suite=r.suite, suite_version=1,
            row=r.row, seed=r.seed, settings=r.settings.model_dump(mode="json"),
            metrics={"best": metrics, "last": {k: v - 1 for k, v in metrics.items()}}))


def test_report_mean_std_delta(tiny_suite: Path, tmp_path: Path) -> None:
    _fake_records(tiny_suite, tmp_path / "res", {"CE": [40.0, 42.0, 44.0], "CE + CMO": [61.0, 61.0, 64.0]})
    spec, _ = load_suite(str(tiny_suite))
    files = build_report(spec, tmp_path / "res", tmp_path / "rep", seeds=[0, 1, 2])
    md = files.markdown.read_text()
    # CE: mean 42, sample std 2; delta vs paper 50 is -8.  CMO: mean 62, std sqrt(3) = 1.7, delta +2.
    assert "| CE | 50.0 | 42.0 ± 2.0 (n=3) | -8.0 |" in md
    assert "| CE + CMO | 60.0 | 62.0 ± 1.7 (n=3) | +2.0 |" in md
    assert "| Cited (cited) | 70.0 | cited |" in md
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0] for ln in lines[1:]] == ["| CE", "| CE + CMO", "| Cited (cited)"]  # suite order
    csv = pd.read_csv(files.csv)
    last = csv[(csv.row == "CE") & (csv.metric == "acc/all") & (csv.epoch == "last")].iloc[0]
    assert last["mean"] == 41.0 and last["n"] == 3
    assert files.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_counts_missing_runs(tiny_suite: Path, tmp_path: Path) -> None:
    spec, _ = load_suite(str(tiny_suite))
    files = build_report(spec, tmp_path / "empty", tmp_path / "rep")
    assert "n/a (0/1)" in files.markdown.read_text() and "Records: 0/2" in files.markdown.read_text()


def test_report_does_not_import_torch(tiny_suite: Path, tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from benchmark.config.suite import load_suite; "
            "from benchmark.report import build_report; "
            f"spec, _ = load_suite({str(tiny_suite)!r}); build_report(spec, Path({str(tmp_path)!r}), "
            f"Path({str(tmp_path / 'rep')!r})); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
