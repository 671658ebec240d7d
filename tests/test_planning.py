"""Planning several suites: one training per settings hash, linked records, reuse across invocations, dry-run JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.config.suite import REPO_ROOT, load_suite, plan
from benchmark.run.planning import PlannedRun, run_key, write_link
from benchmark.run.profiles import interpolate, load_profile, parse_profile, save_profile
from benchmark.run.projection import DryRunPlan
from benchmark.run.records import RunRecord, read_record, record_path, write_record
from benchmark.run.states import RunState
from tests.conftest import TINY_SUITE, write_cifar

runner = CliRunner()

# Suite b shares its "Baseline" row with suite a's "CE" row (same resolved settings); "Other" is its own run.
SUITE_A = TINY_SUITE.replace("suite: tiny", "suite: a")
SUITE_B = TINY_SUITE.replace("suite: tiny", "suite: b").replace("  - name: CE + CMO\n", "  - name: Other\n").replace(
    "    method: {loss: ce, mixer: cmo}\n", "    method: {loss: ce, mixer: cmo}\n    set: {train.lr: 0.05}\n").replace(
    "  - name: CE\n", "  - name: Baseline\n")


def _suites(tmp_path: Path, a: str = SUITE_A, b: str = SUITE_B) -> tuple[Path, Path]:
    d = tmp_path / "suites"
    d.mkdir(exist_ok=True)
    (d / "a.yaml").write_text(a)
    (d / "b.yaml").write_text(b)
    return d / "a.yaml", d / "b.yaml"


def _weights(res: Path) -> list[Path]:
    return sorted(res.rglob("*.weights.pt"))


def _trained(output: str) -> int:
    return sum(line.startswith("run [") for line in output.splitlines())


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outcome tables unabridged (CliRunner's terminal is 80 columns wide)."""
    from rich.console import Console

    import benchmark.cli

    monkeypatch.setattr(benchmark.cli, "console", Console(width=300))


@pytest.fixture
def tiny_cifar100(tmp_path: Path) -> Path:
    """CIFAR-100 layout, 100 random train images per class (ratio 100 keeps one tail image), 2 test per class."""
    rng = np.random.default_rng(0)
    train_y = np.tile(np.arange(100), 100)
    rng.shuffle(train_y)
    test_y = np.repeat(np.arange(100), 2)
    write_cifar(tmp_path / "c100", 100, rng.integers(0, 256, (10000, 32, 32, 3), dtype=np.uint8), train_y,
                rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8), test_y, [f"c{i}" for i in range(100)])
    return tmp_path / "c100"


def _cell(csv: Path, row: str, column: str | None) -> pd.Series:
    f = pd.read_csv(csv)
    sel = f[(f["row"] == row) & (f["metric"] == "acc/all") & (f["epoch"] == "best")]
    sel = sel[sel["column"].isna()] if column is None else sel[sel["column"].astype(str) == column]
    return sel.iloc[0]


def test_paper_suites_together_train_each_configuration_once(tiny_cifar100: Path, tmp_path: Path) -> None:
    res, out = tmp_path / "res", tmp_path / "reports"
    sets = ["--set", f"data.root={tiny_cifar100}", "--set", "data.download=false", "--set", "train.epochs=1",
            "--set", "train.steps_per_epoch=2"]  # one short epoch per run
    args = ["run", "suite", "table2", "table3", "table9", "--smoke", "--tracker", "none", "--results-dir", str(res),
            "--rows", "CE,CE + CMO,CMO", *sets]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    # table2 CE + CMO x 3 ratios, table3 CE x 4 columns, table9 CMO: 8 runs, 6 distinct (r100 CE + CMO shared)
    records = sorted(res.glob("*/*/*.json"))
    assert len(records) == 8 and len(_weights(res)) == 6 and _trained(first.output) == 6
    primary = next(res.glob("table2/ce-cmo__100/*.json"))
    src = read_record(primary)
    assert src.reused_from is None
    for linked in (next(res.glob("table3/ce__cmo/*.json")), next(res.glob("table9/cmo/*.json"))):
        rec = read_record(linked)
        assert rec.reused_from == {"suite": "table2", "run_id": src.run_id, "path": str(primary.relative_to(res))}
        assert rec.run_id == linked.stem and rec.suite == linked.parts[-3] and rec.metrics == src.metrics
        assert not linked.with_suffix(".weights.pt").exists()
    assert first.output.count(f"reused (table2/{src.run_id})") == 2

    # each suite's report shows the shared run, with no change to the report code
    for suite in ("table2", "table3", "table9"):
        rep = runner.invoke(app, ["report", suite, "--smoke", "--results-dir", str(res), "--out-dir", str(out), *sets])
        assert rep.exit_code == 0, rep.output
    cells = [_cell(out / "table2-smoke.csv", "CE + CMO", "100"), _cell(out / "table3-smoke.csv", "CE", "+CMO"),
             _cell(out / "table9-smoke.csv", "CMO", None)]
    assert all(c["n"] == 1 for c in cells) and len({round(c["mean"], 6) for c in cells}) == 1
    assert cells[0]["mean"] == pytest.approx(src.metrics["best"]["acc/all"], abs=1e-3)

    # a second invocation trains nothing and writes nothing
    mtimes = {p: p.stat().st_mtime_ns for p in records}
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and _trained(second.output) == 0, second.output
    assert second.output.count("skipped (done)") == 8
    assert {p: p.stat().st_mtime_ns for p in sorted(res.glob("*/*/*.json"))} == mtimes


def test_run_finished_in_one_suite_is_reused_by_a_later_invocation_of_another(tmp_path: Path) -> None:
    a, b = _suites(tmp_path)
    res = tmp_path / "res"
    base = ["--results-dir", str(res), "--tracker", "none"]
    assert runner.invoke(app, ["run", "suite", str(a), *base]).exit_code == 0
    assert len(_weights(res)) == 2
    out = runner.invoke(app, ["run", "suite", str(b), *base])
    assert out.exit_code == 0, out.output
    assert _trained(out.output) == 1 and len(_weights(res)) == 3  # only "Other" trained
    src_path = next(res.glob("a/ce/*.json"))
    src, linked = read_record(src_path), read_record(next(res.glob("b/baseline/*.json")))
    assert f"reused (a/{src.run_id})" in out.output
    assert linked.reused_from == {"suite": "a", "run_id": src.run_id, "path": f"a/ce/{src_path.name}"}
    assert (linked.suite, linked.row) == ("b", "Baseline") and linked.run_id.startswith("baseline-s0-")
    assert linked.per_class == src.per_class and linked.curve == src.curve


def test_force_retrains_the_primary_and_relinks_the_others(tmp_path: Path) -> None:
    a, b = _suites(tmp_path)
    res = tmp_path / "res"
    args = ["run", "suite", str(a), str(b), "--results-dir", str(res), "--tracker", "none"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and _trained(first.output) == 3, first.output
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0 and _trained(forced.output) == 3, forced.output  # 4 planned, 3 distinct
    src, linked = read_record(next(res.glob("a/ce/*.json"))), read_record(next(res.glob("b/baseline/*.json")))
    assert linked.reused_from["run_id"] == src.run_id and linked.created == src.created
    assert f"reused (a/{src.run_id})" in forced.output


def test_failed_primary_leaves_the_other_occurrences_pending(tmp_path: Path) -> None:
    bad = "    method: {loss: ce}\n    set: {method.loss: ldam, method.loss_args: {s: 1.0e+38}}\n"
    a, b = _suites(tmp_path, SUITE_A.replace("    method: {loss: ce}\n", bad),
                   SUITE_B.replace("    method: {loss: ce}\n", bad))
    res = tmp_path / "res"
    out = runner.invoke(app, ["run", "suite", str(a), str(b), "--results-dir", str(res), "--tracker", "none"])
    assert out.exit_code == 1 and _trained(out.output) == 3, out.output
    assert read_record(next(res.glob("a/ce/*.json"))).status == "failed"
    assert not list(res.glob("b/baseline/*.json"))  # nothing written for the other occurrence
    assert "pending (a/ce-s0-" in out.output


def _fake_done(res: Path, run: Any, run_id: str | None = None) -> Path:
    """A finished record of `run` without training."""
    path = record_path(res, run.suite, run.cell, run.run_id)
    write_record(path, RunRecord(status="done", run_id=run_id or run.run_id, config_hash=run.config_hash,
                                 suite=run.suite, suite_version=run.suite_version, row=run.row, seed=run.seed,
                                 smoke=run.smoke, settings=run.settings.model_dump(mode="json"),
                                 metrics={"best": {"acc/all": 12.5}, "last": {"acc/all": 10.0}}))
    return path


def test_reuse_without_training_and_smoke_runs_are_separate(tmp_path: Path) -> None:
    a, b = _suites(tmp_path)
    res = tmp_path / "res"
    ce = plan(load_suite(str(a))[0])[0]
    src = _fake_done(res, ce)
    out = runner.invoke(app, ["run", "suite", str(b), "--results-dir", str(res), "--tracker", "none",
                              "--rows", "Baseline"])
    assert out.exit_code == 0 and _trained(out.output) == 0 and not _weights(res), out.output
    linked = read_record(next(res.glob("b/baseline/*.json")))
    assert linked.metrics["best"]["acc/all"] == 12.5 and linked.reused_from["path"] == str(src.relative_to(res))
    dry = runner.invoke(app, ["run", "suite", str(b), "--smoke", "--dry-run", "--json", "--results-dir", str(res),
                              "--rows", "Baseline"])
    runs = json.loads(dry.output)["runs"]
    assert [r["action"] for r in runs] == ["train"]  # a smoke run never reuses a full run's record


def test_a_link_never_overwrites_a_finished_record_of_another_run(tmp_path: Path) -> None:
    a, b = _suites(tmp_path)
    res = tmp_path / "res"
    ce = plan(load_suite(str(a))[0])[0]
    baseline = plan(load_suite(str(b))[0])[0]
    src = _fake_done(res, ce)
    target = _fake_done(res, baseline, run_id="someone-else")
    before = target.read_text()
    item = PlannedRun(baseline, target, run_key(baseline), "link")
    status = write_link(item, src, res, force=True)
    assert str(status) == "skipped (done record of someone-else kept)"
    assert status.state == RunState.SKIPPED and target.read_text() == before
    target.unlink()
    assert str(write_link(item, src, res)).startswith("reused (a/")
    assert read_record(target).reused_from["run_id"] == ce.run_id and not list(target.parent.glob(".*.tmp"))


def _bench(device_name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"device": "cuda", "device_name": device_name, "workload": {"model": "resnet32_cifar"}, "variants": rows}


# Next bench version: product rows carry `function` and `k`; other rows do not.
NEW_FORMAT = [{"name": "reference", "runs": 1, "images_per_s": 100.0},
              {"name": "loop", "function": "train.fit", "k": 1, "images_per_s": 1000.0},
              {"name": "loop packed K=4", "function": "fit_packed", "k": 4, "images_per_s": 2500.0},
              {"name": "loop packed K=8", "function": "fit_packed", "k": 8, "images_per_s": 4000.0},
              {"name": "loop+compile", "function": "train.fit", "k": 1, "compile": True, "images_per_s": 9999.0},
              {"name": "loop packed K=16", "function": "fit_packed", "k": 16, "error": "OOM"}]


def test_profiles_parse_both_bench_formats_and_interpolate() -> None:
    committed = json.loads((REPO_ROOT / "reports" / "perf" / "bench-h100.json").read_text())
    old = parse_profile(committed)
    assert sorted(old[False]) == [1, 16] and sorted(old[True]) == [1, 16]
    assert old[False][16] == pytest.approx(94959.554, rel=1e-6)  # 'loop packed K=16', not the fast/packed rows
    new = parse_profile(_bench("X", NEW_FORMAT))
    assert new == {False: {1: 1000.0, 4: 2500.0, 8: 4000.0}, True: {1: 9999.0}}
    pts = new[False]
    assert interpolate(pts, 2) == pytest.approx(1500.0) and interpolate(pts, 6) == pytest.approx(3250.0)
    assert interpolate(pts, 16) == 4000.0 and interpolate(pts, 0) == 1000.0  # clamped


def test_profile_from_the_cache_else_the_committed_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    fallback = load_profile("a100")
    assert fallback.source == "committed" and fallback.file.name == "bench-h100.json" and "a100" in fallback.note
    assert load_profile("h100").note is None
    saved = save_profile(_bench("NVIDIA H100 80GB HBM3", NEW_FORMAT))
    assert saved == tmp_path / "cache" / "bench" / "nvidia-h100-80gb-hbm3.json"
    for kind in ("h100", "NVIDIA H100 80GB HBM3"):
        prof = load_profile(kind)
        assert prof.source == "cache" and prof.file == saved and prof.images_per_s(8) == 4000.0
    assert prof.images_per_s(1, compiled=True) == 9999.0 and prof.images_per_s(4, compiled=True) == 9999.0


def _check_model(model: type[BaseModel], value: Any, where: str = "") -> None:
    """Every key of the JSON is a field of the model and every field is present (nested models too)."""
    assert set(value) == set(model.model_fields), where
    for name, info in model.model_fields.items():
        sub = info.annotation
        inner = getattr(sub, "__args__", (None,))[0]
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            _check_model(sub, value[name], f"{where}.{name}")
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            for i, item in enumerate(value[name]):
                _check_model(inner, item, f"{where}.{name}[{i}]")


def test_dry_run_json_schema_two_suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    prof_file = save_profile(_bench("TestGPU 9000", NEW_FORMAT))
    a, b = _suites(tmp_path)
    res = tmp_path / "res"
    out = runner.invoke(app, ["run", "suite", str(a), str(b), "--seeds", "0,1", "--dry-run", "--json",
                              "--results-dir", str(res), "--runs-per-gpu", "2", "--device-kind", "testgpu-9000"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    plan_ = DryRunPlan.model_validate_json(out.output, strict=True)  # every key and type, no extra keys
    _check_model(DryRunPlan, data)
    c = plan_.counts
    assert (c.planned, c.distinct, c.to_train, c.link, c.finished, c.reuse, c.skipped) == (8, 6, 6, 2, 0, 0, 0)
    assert c.distinct < c.planned and c.distinct == c.finished + c.to_train + c.failed
    assert [s.suite for s in plan_.suites] == ["a", "b"] and [s.planned for s in plan_.suites] == [4, 4]
    assert plan_.pack_size.k == 2 and plan_.pack_size.source == "--runs-per-gpu"
    assert plan_.profile.file == str(prof_file) and plan_.profile.source == "cache"
    assert plan_.profile.device_name == "TestGPU 9000" and plan_.profile.note is None
    assert [(p.k, p.images_per_s) for p in plan_.profile.loop] == [(1, 1000.0), (4, 2500.0), (8, 4000.0)]
    # 3 distinct configurations x seeds 0, 1 packed two at a time; synthetic counts 24+15+9+6 = 54 images an epoch,
    # 4 x 6 test images, 2 epochs each
    assert [p.size for p in plan_.packs] == [2, 2, 2] and not runs_outside_packs(plan_)
    for p in plan_.packs:
        assert (p.train_images, p.eval_images, p.member_epochs) == (2 * 108, 2 * 48, 4) and p.projected
        assert p.images_per_s == pytest.approx(1500.0)  # interpolated between K = 1 and K = 4
        assert p.gpu_hours == pytest.approx((216 + 96 / 3) / 1500.0 / 3600)
    t = plan_.totals
    assert t.projected_runs == 6 and t.member_epochs == 12 and t.train_images == 648 and not t.not_projected
    assert t.projected_gpu_hours == pytest.approx(sum(p.gpu_hours for p in plan_.packs))
    links = [r for r in plan_.runs if r.action == "link"]
    assert {r.suite for r in links} == {"b"} and all(r.source.startswith("a/ce-s") for r in links)
    assert plan_.data == [] and not res.exists()
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Dry-run JSON"):]
    assert all(f"`{key}`" in section for key in DryRunPlan.model_fields)


def runs_outside_packs(p: DryRunPlan) -> set[str]:
    trained = {f"{r.suite}/{r.run_id}" for r in p.runs if r.action == "train"}
    return trained ^ {m for pack in p.packs for m in pack.runs}


def test_dry_run_default_k_and_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("LTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    a, b = _suites(tmp_path)
    args = ["run", "suite", str(a), str(b), "--dry-run", "--results-dir", str(tmp_path / "res")]
    data = json.loads(runner.invoke(app, [*args, "--json"]).output)
    if not torch.cuda.is_available():
        assert data["pack_size"]["k"] == 16 and "no GPU" in data["pack_size"]["source"]
    assert data["profile"]["source"] == "committed" and data["profile"]["file"].endswith("bench-h100.json")
    text = runner.invoke(app, args)
    assert text.exit_code == 0 and "distinct runs            3" in text.output and "shares (a/ce-s0-" in text.output
    assert "projected GPU-hours" in text.output and "bench-h100.json" in text.output


def test_dry_run_of_paper_suites_without_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path / "nodata"))
    monkeypatch.setenv("LTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    args = ["run", "suite", "table2", "table3", "table9", "--dry-run", "--results-dir", str(tmp_path / "res")]
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "table9 / CutMix (ImageNet-LT): ImageNet-LT: split list" in text.output
    assert "Data to download" in text.output and "CIFAR-100" in text.output
    plan_ = DryRunPlan.model_validate_json(runner.invoke(app, [*args, "--json", "--set", "data.download=false"]).output)
    missing = {(d.suite, d.row) for d in plan_.data if d.status == "missing"}
    assert ("table9", "CMO (ImageNet-LT)") in missing and ("table2", "CE + CMO") in missing
    assert next(d for d in plan_.data if d.row == "CE + CMO").columns == ["100", "50", "10"]
    c = plan_.counts
    assert (c.planned, c.distinct) == (150, 120)
    assert [n.dataset for n in plan_.totals.not_projected] == ["imagenet_lt"]
    assert plan_.totals.not_projected[0].train_images == 6 * 100 * 115_846  # official list size, no data needed
    assert not (tmp_path / "res").exists()


def test_several_suites_select_rows_each_has(tmp_path: Path) -> None:
    a, b = _suites(tmp_path)
    ok = runner.invoke(app, ["run", "suite", str(a), str(b), "--rows", "CE,Other", "--dry-run", "--json",
                             "--results-dir", str(tmp_path / "res")])
    assert [(r["suite"], r["row"]) for r in json.loads(ok.output)["runs"]] == [("a", "CE"), ("b", "Other")]
    bad = runner.invoke(app, ["run", "suite", str(a), str(b), "--rows", "Baselin"])
    assert bad.exit_code == 2 and "Did you mean 'Baseline'" in bad.output


def test_reports_and_records_import_no_torch() -> None:
    """`report` and `status` start fast: the record and suite side never loads torch (planning needs the registries,
    whose components are torch modules, so it does)."""
    code = ("import sys, benchmark.report, benchmark.run.records, benchmark.config.suite; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0
