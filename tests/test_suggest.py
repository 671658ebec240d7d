"""The shared did-you-mean helper and the validation errors that use it, each through the CLI: exit 2, one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.schema.suggest import did_you_mean
from tests.conftest import TINY_SUITE

runner = CliRunner()


def test_did_you_mean_helper() -> None:
    assert did_you_mean("epochz", ["epochs", "batch_size", "lr"]) == " Did you mean 'epochs'?"
    assert did_you_mean("ACC/ALL", ["acc/all", "acc/few"]) == " Did you mean 'acc/all'?"  # case-insensitive
    assert did_you_mean("zzz", ["epochs", "lr"]) == ""
    assert did_you_mean("cmoo", ["cmo", "cutmix", "mixup"], cutoff=0.5) == " Did you mean 'cmo'?"


def _one_error_line(out: str) -> str:
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(("edit", "expected"), [
    (("  - name: Cited\n", "  - name: ce\n    method: {loss: ce}\n  - name: Cited\n"),
     "two rows named 'CE' and 'ce'"),
    (("  - name: Cited\n", "  - name: CE+CMO\n    method: {loss: ce}\n  - name: Cited\n"),
     "two rows named 'CE + CMO' and 'CE+CMO'"),
    (("paper: {acc/all: 50.0}", "paper: {acc/al: 50.0}"), "unknown metric 'acc/al'. Did you mean 'acc/all'"),
    (("paper: {acc/all: 60.0, acc/few: 10.0}", "paper: {acc/all: 60.0, acc/feww: 10.0}"),
     "unknown metric 'acc/feww'. Did you mean 'acc/few'"),
    (("title:", "titel:"), "titel: unknown key. Did you mean 'title'"),
])
def test_suite_errors_exit_2_one_line(edit: tuple[str, str], expected: str, tmp_path: Path) -> None:
    assert edit[0] in TINY_SUITE
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_SUITE.replace(*edit))
    for args in (["validate", str(p)], ["run", "suite", str(p), "--dry-run"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2
        assert expected in _one_error_line(res.output), res.output


def test_paper_metric_of_a_column_is_checked(tmp_path: Path) -> None:
    text = TINY_SUITE.replace("seeds: [0]", "seeds: [0]\ncolumns:\n  - {name: '4', set: {data.imbalance_ratio: 4}}")
    p = tmp_path / "tiny.yaml"
    p.write_text(text.replace("paper: {acc/all: 50.0}", "paper: {'4': {acc/alll: 50.0}}"))
    res = runner.invoke(app, ["validate", str(p)])
    assert res.exit_code == 2
    assert "paper: '4': unknown metric 'acc/alll'. Did you mean 'acc/all'" in _one_error_line(res.output)
    p.write_text(text.replace("paper: {acc/all: 50.0}", "paper: {'4': {acc/all: 50.0}}"))
    assert runner.invoke(app, ["validate", str(p)]).exit_code == 0


@pytest.mark.parametrize(("setting", "expected"), [
    ("train.epochz=3", "train.epochz: unknown key. Did you mean 'epochs'?"),
    ("trian.epochs=3", "trian: unknown key. Did you mean 'train'?"),
    ("mixer.probb=0.5", "mixer.probb: unknown key. Did you mean 'prob'?"),
])
def test_unknown_set_key_did_you_mean(setting: str, expected: str, tiny_suite: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "suite", str(tiny_suite), "--set", setting, "--results-dir",
                              str(tmp_path / "res"), "--tracker", "none"])
    assert res.exit_code == 2
    assert expected in _one_error_line(res.output)
    assert not (tmp_path / "res").exists()


def test_no_other_did_you_mean_in_the_package() -> None:
    pkg = Path(__file__).resolve().parents[1] / "benchmark"
    users = sorted(p.name for p in pkg.rglob("*.py") if "difflib" in p.read_text())
    assert users == ["suggest.py"]
