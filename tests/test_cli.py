"""CLI: a tiny suite run writes records, a second run trains nothing, bad input exits 2, data stats, list."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.run.records import read_record

runner = CliRunner()


def test_run_writes_records_and_rerun_skips(tiny_suite: Path, tmp_path: Path) -> None:
    res_dir = tmp_path / "res"
    args = ["run", "suite", str(tiny_suite), "--results-dir", str(res_dir), "--tracker", "none"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    files = sorted(res_dir.glob("tiny/*/*.json"))
    assert [f.parent.name for f in files] == ["ce", "ce-cmo"]
    rec = read_record(files[1])
    assert rec.status == "done" and rec.row == "CE + CMO" and rec.suite_version == 1
    assert rec.settings["method"]["mixer"] == "cmo" and rec.settings["seed"] == 0
    assert set(rec.metrics["best"]) == {"acc/all", "acc/many", "acc/medium", "acc/few", "time/batch_s",
                                        "time/data_wait_s", "time/step_s"}
    assert rec.metrics["best"]["time/batch_s"] > 0 and "train/time_per_batch_s" in rec.curve[0]
    assert len(rec.curve) == 2 and len(rec.per_class["last"]) == 4
    assert rec.class_counts == [24, 15, 9, 6] and rec.shot_groups == {"many": 2, "medium": 1, "few": 1}
    assert rec.environment["packages"]["torch"] and "device" in rec.environment
    assert rec.choices["q_semantics"].startswith("per_sample")
    mtimes = [f.stat().st_mtime_ns for f in files]
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and second.output.count("skipped (done)") == 2
    assert "run [" not in second.output  # nothing trained
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    third = runner.invoke(app, [*args, "--set", "train.lr=0.05"])  # a changed setting is a new run
    assert third.exit_code == 0 and len(list(res_dir.glob("tiny/*/*.json"))) == 4


def test_dry_run_trains_nothing(tiny_suite: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "suite", str(tiny_suite), "--dry-run", "--seeds", "0,1",
                              "--results-dir", str(tmp_path / "res")])
    assert res.exit_code == 0 and res.output.count("planned") == 4
    assert not (tmp_path / "res").exists()


def test_bad_input_exits_2_and_writes_nothing(tiny_suite: Path, tmp_path: Path) -> None:
    bad = tiny_suite.parent / "bad.yaml"
    bad.write_text(tiny_suite.read_text().replace("mixer: cmo}", "mixer: cmoo}").replace("suite: tiny", "suite: bad"))
    for args in (["validate", str(bad)], ["run", "suite", str(bad), "--results-dir", str(tmp_path / "res")],
                 ["run", "suite", str(tiny_suite), "--set", "train.epochs=0", "--results-dir", str(tmp_path / "r")],
                 ["run", "suite", str(tiny_suite), "--seeds", "a,b"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "res").exists() and not (tmp_path / "r").exists()


def test_data_stats_json() -> None:
    res = runner.invoke(app, ["data", "stats", "cifar100_lt", "--imbalance-ratio", "100", "--json"])
    out = json.loads(res.output)
    assert (out["total"], out["max"], out["min"]) == (10847, 500, 5)
    assert out["groups"] == {"many": 35, "medium": 35, "few": 30}
    res = runner.invoke(app, ["data", "stats", "cifar10_lt", "--imbalance-ratio", "50", "--json"])
    assert json.loads(res.output)["total"] == 13996
    assert runner.invoke(app, ["data", "stats", "cifar100lt", "--json"]).exit_code == 2


def test_suites_list_and_ls() -> None:
    res = runner.invoke(app, ["suites", "list", "--json"])
    names = {r["suite"] for r in json.loads(res.output)}
    assert {"quickstart", "table9"} <= names and not any(n.startswith("_") for n in names)
    res = runner.invoke(app, ["ls", "mixers"])
    assert res.exit_code == 0 and "cmo" in res.output and "cutmix" in res.output


def test_every_command_has_help() -> None:
    for args in (["--help"], ["run", "suite", "--help"], ["report", "--help"], ["validate", "--help"],
                 ["suites", "list", "--help"], ["suites", "show", "--help"], ["data", "stats", "--help"],
                 ["ls", "--help"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "Usage" in res.output, args


def test_bench_cpu_json() -> None:
    res = runner.invoke(app, ["bench", "--device", "cpu", "--json", "--ks", "1,2", "--steps", "1"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # the JSON alone: the table went to stderr
    assert "img/s" in res.stderr
    names = [v["name"] for v in out["variants"]]
    assert names == ["reference", "loop", "loop packed K=2", "loop hetero K=2"]
    assert all(v["images_per_s"] > 0 and v["function"] == "benchmark.engine.loop.train_pack" for v in out["variants"])
    from benchmark.run.profiles import load_profile  # the bench is now this machine's throughput profile

    prof = load_profile(out["device_name"])
    assert prof.source == "cache" and set(prof.points[False]) == {1, 2}


def test_record_choices_name_the_code_vs_paper_decisions() -> None:
    from benchmark.config.choices import choices_for
    from benchmark.schema.settings import RunSettings

    class Data:  # what choices_for reads of a dataset
        reweight_epoch = 160

    s = RunSettings.model_validate({"data": {"name": "inat2018"}, "method": {"rule": "drw", "mixer": "cmo"},
                                    "train": {"batch_size": 512, "epochs": 200},
                                    "mixer": {"q_semantics": "per_class"}, "eval": {"few_below": 21}})
    c = choices_for(s, Data())
    assert c["q_semantics"].startswith("per_class (paper")
    assert c["shots"].endswith("(train scripts: n = 20 is few)")
    assert c["reweight_epoch"] == "160 (dataset default)"
    assert c["recipe"].startswith("paper (batch 512, 200 epochs)")
    s2 = s.model_copy(update={"train": s.train.model_copy(update={"batch_size": 256, "epochs": 100}),
                              "method": s.method.model_copy(update={"reweight_epoch": 80})})
    c2 = choices_for(s2, Data())
    assert c2["recipe"].startswith("code README") and c2["reweight_epoch"] == "80 (setting)"
