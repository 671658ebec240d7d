"""Reliability: bad input exits 2 and writes nothing, concurrent suites, local slots, Slurm path, SIGTERM, W&B down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.config.suite import load_suite, plan
from benchmark.run.executors import LocalExecutor, SlurmConfig, SlurmExecutor
from benchmark.run.records import read_record, record_path
from benchmark.run.runner import run_suite
from tests.conftest import TINY_SUITE

runner = CliRunner()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


BAD_EDITS = {
    "malformed YAML": (("rows:", "rows: [\n"), "malformed YAML"),
    "unknown key": (("title:", "titel:"), "titel: unknown key"),
    "wrong type": (("epochs: 2", "epochs: two"), "train.epochs"),
    "unknown component": (("mixer: cmo}", "mixer: cmoo}"), "Did you mean 'cmo'"),
    "ratio < 1": (("imbalance_ratio: 4", "imbalance_ratio: 0.5"), "data.imbalance_ratio"),
    "epochs <= 0": (("epochs: 2", "epochs: 0"), "train.epochs"),
    "batch <= 0": (("batch_size: 16", "batch_size: 0"), "train.batch_size"),
    "seeds empty": (("seeds: [0]", "seeds: []"), "seeds"),
    "impossible combination": (("    method: {loss: ce}\n", "    method: {loss: ride}\n"), "needs a backbone"),
    "loss on a head it cannot use": (("    method: {loss: ce}\n", "    method: {loss: ldam}\n    set: "
                                      "{backbone.name: ride_resnet32}\n"), "needs a cosine classifier"),
    "missing dataset files": (("name: synthetic_lt, imbalance_ratio: 4, num_classes: 4, max_per_class: 24, "
                               "test_per_class: 6,\n         image_size: 8",
                               "name: cifar100_lt, download: false, root: /nonexistent-lt-bench"),
                              "cifar-100-python"),
}


@pytest.mark.parametrize("case", list(BAD_EDITS))
def test_bad_input_one_line_exit_2_nothing_written(case: str, tmp_path: Path) -> None:
    (old, new), expected = BAD_EDITS[case]
    suite = tmp_path / "suites" / "tiny.yaml"
    suite.parent.mkdir()
    suite.write_text(TINY_SUITE.replace(old, new, 1))
    before = _tree(tmp_path)
    res = runner.invoke(app, ["run", "suite", str(suite), "--results-dir", str(tmp_path / "res"), "--tracker", "none"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1 and expected in res.output
    assert _tree(tmp_path) == before


def test_unwritable_results_dir(tiny_suite: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["run", "suite", str(tiny_suite), "--results-dir", str(blocker / "res")])
    assert res.exit_code == 2 and "not writable" in res.output and blocker.read_text() == "x"


def test_checkpoint_from_another_run(tiny_suite: Path, tmp_path: Path) -> None:
    spec, _ = load_suite(str(tiny_suite))
    r = plan(spec)[0]
    res_dir = tmp_path / "res"
    ckpt = record_path(res_dir, r.suite, r.cell, r.run_id).with_suffix(".ckpt")
    ckpt.parent.mkdir(parents=True)
    import torch

    torch.save({"run_id": "someone-else"}, ckpt)
    res = runner.invoke(app, ["run", "suite", str(tiny_suite), "--results-dir", str(res_dir), "--tracker", "none"])
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
    assert res.exit_code == 2 and len(errors) == 1 and "someone-else" in errors[0]
    assert not list(res_dir.rglob("*.json"))


def test_failed_run_summary_exit_1_and_retry(tiny_suite: Path, tmp_path: Path) -> None:
    diverge = "    method: {loss: ce}\n    set: {method.loss: ldam, method.loss_args: {s: 1.0e+38}}\n"  # inf logits
    tiny_suite.write_text(tiny_suite.read_text().replace("    method: {loss: ce}\n", diverge))
    args = ["run", "suite", str(tiny_suite), "--results-dir", str(tmp_path / "res"), "--tracker", "none"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "failed" in res.output and "done" in res.output
    failed = read_record(next((tmp_path / "res").glob("tiny/ce/*.json")))
    assert failed.status == "failed" and "non-finite" in failed.error and "Traceback" in failed.error
    again = runner.invoke(app, [*args, "--retry-failed"])
    assert again.exit_code == 1 and "skipped (done)" in again.output  # retried (and fails again), done untouched


SLOW_SUITE = TINY_SUITE.replace("max_per_class: 24", "max_per_class: 120").replace(
    "epochs: 2", "epochs: 3, checkpoint_every_s: 0")


def _cli(args: list[str], **kw: object) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "benchmark.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_two_concurrent_suite_processes_train_each_run_once(tmp_path: Path) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SLOW_SUITE)
    args = ["run", "suite", str(suite), "--results-dir", str(tmp_path / "res"), "--tracker", "none",
            "--seeds", "0,1"]
    a, b = _cli(args), _cli(args)
    out_a, out_b = a.communicate(timeout=600)[0], b.communicate(timeout=600)[0]
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    trained = [line.split("(")[-1].rstrip(")") for line in (out_a + out_b).splitlines() if line.startswith("run [")]
    records = sorted((tmp_path / "res").glob("tiny/*/*.json"))
    assert len(records) == 4 and sorted(trained) == sorted(p.stem for p in records)  # each run exactly once
    assert all(read_record(p).status == "done" for p in records)


def test_local_executor_uses_every_slot(tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # three CPU "GPU slots" on two cores: no thread oversubscription
    spec, _ = load_suite(str(tiny_suite))
    outcomes = run_suite(spec, seeds=[0, 1], results_dir=tmp_path / "res", tracker="none",
                         executor=LocalExecutor(gpus=3))
    assert [o.status for o in outcomes] == ["done"] * 4
    slots = {read_record(o.path).environment["cuda_visible_devices"] for o in outcomes}
    assert slots == {"0", "1", "2"}
    pids = {read_record(o.path).environment["pid"] for o in outcomes}
    assert len(pids) == 4 and os.getpid() not in pids  # one process per run


def test_slurm_path_through_submitit_local(tiny_suite: Path, tmp_path: Path) -> None:
    spec, _ = load_suite(str(tiny_suite))
    ex = SlurmExecutor(SlurmConfig(time_min=10), tmp_path / "slurm", cluster="local", wait=True)
    outcomes = run_suite(spec, results_dir=tmp_path / "res", tracker="none", executor=ex)
    assert [o.status for o in outcomes] == ["done", "done"]
    queue = json.loads((tmp_path / "res" / "tiny" / "_queue.json").read_text())
    assert set(queue) == {o.run.run_id for o in outcomes}
    assert len(set(queue.values())) == 1  # CE and CE + CMO share a step: one array task trains them as one pack
    packs = [read_record(o.path).environment["execution"]["pack_size"] for o in outcomes]
    assert packs == [2, 2]
    res = runner.invoke(app, ["status", str(tiny_suite), "--results-dir", str(tmp_path / "res")])
    assert res.exit_code == 0 and res.output.count(" done ") == 2


def test_slurm_sbatch_golden(tmp_path: Path) -> None:
    from submitit.slurm.slurm import _make_sbatch_string

    cfg = SlurmConfig.load(None, partition="gpu", account="lt", time_min=300)
    p = cfg.executor_parameters()
    text = _make_sbatch_string(command="python -m submitit.core._submit '/logs'", folder="/logs/%j",
                               job_name="lt-bench-table9", partition=p["slurm_partition"], time=p["timeout_min"],
                               gpus_per_node=p["gpus_per_node"], ntasks_per_node=p["tasks_per_node"],
                               cpus_per_task=p["cpus_per_task"], account=p["slurm_account"], map_count=6,
                               array_parallelism=p["slurm_array_parallelism"])
    lines = [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]
    for expected in ("#SBATCH --job-name=lt-bench-table9", "#SBATCH --partition=gpu", "#SBATCH --account=lt",
                     "#SBATCH --time=300", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8",
                     "#SBATCH --array=0-5%6", "#SBATCH --signal=USR2@90", "#SBATCH --ntasks-per-node=1"):
        assert expected in lines, (expected, lines)


def test_slurm_profile_rejects_unknown_keys(tmp_path: Path) -> None:
    prof = tmp_path / "p.yaml"
    prof.write_text("partiton: gpu\n")
    res = runner.invoke(app, ["run", "suite", "table9", "--executor", "slurm", "--slurm-profile", str(prof),
                              "--dry-run"])
    assert res.exit_code == 2 and "partiton" in res.output


def test_sigterm_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SLOW_SUITE.replace("epochs: 3", "epochs: 6"))
    args = ["run", "suite", str(suite), "--results-dir", str(tmp_path / "res"), "--tracker", "none", "--seeds", "0"]
    proc = _cli(args)
    deadline = time.time() + 240
    while not list((tmp_path / "res").glob("tiny/*/*.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 3 and "resume" in out, out
    assert list((tmp_path / "res").glob("tiny/*/*.ckpt")) and not list((tmp_path / "res").glob("tiny/*/*.json"))
    status = runner.invoke(app, ["status", str(suite), "--results-dir", str(tmp_path / "res"), "--seeds", "0"])
    assert "interrupted" in status.output
    rerun = _cli(args)
    assert rerun.wait(timeout=600) == 0
    assert len(list((tmp_path / "res").glob("tiny/*/*.json"))) == 2


def test_wandb_unreachable_falls_back_offline(tiny_suite: Path, tmp_path: Path, wandb_offline: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmark.run.tracking as tracking

    monkeypatch.setattr(tracking, "_WARNED_OFFLINE", False)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "5")
    spec, _ = load_suite(str(tiny_suite))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcomes = run_suite(spec, results_dir=tmp_path / "res", tracker="wandb")
    assert [o.status for o in outcomes] == ["done", "done"]
    assert sum("W&B online init failed" in str(w.message) for w in caught) == 1  # warned once
    assert all(read_record(o.path).tracker["mode"] == "offline" for o in outcomes)
    assert len(list(wandb_offline.glob("wandb/offline-run-*"))) == 2


def test_one_run_over_two_processes(tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--gpus-per-run 2: torchrun starts two ranks (gloo on CPU); rank 0 alone writes the record."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec, _ = load_suite(str(tiny_suite))
    outcomes = run_suite(spec, rows=["CE + CMO"], results_dir=tmp_path / "res", tracker="none",
                         executor=LocalExecutor(gpus=2, gpus_per_run=2))
    assert [o.status for o in outcomes] == ["done"], outcomes[0].error
    rec = read_record(outcomes[0].path)
    assert rec.environment["world_size"] == 2 and rec.environment["cuda_visible_devices"] == "0,1"
    assert len(rec.curve) == 2 and all(c["train/loss"] > 0 for c in rec.curve)
    assert len(list((tmp_path / "res").rglob("*.json"))) == 1


def test_force_reruns_a_finished_run(tiny_suite: Path, tmp_path: Path) -> None:
    args = ["run", "suite", str(tiny_suite), "--results-dir", str(tmp_path / "res"), "--tracker", "none",
            "--rows", "CE"]
    assert runner.invoke(app, args).exit_code == 0
    rec_path = next((tmp_path / "res").glob("tiny/ce/*.json"))
    first = read_record(rec_path).created, rec_path.stat().st_mtime_ns
    time.sleep(1.1)
    again = runner.invoke(app, [*args, "--force"])
    assert again.exit_code == 0 and "run [1/1] CE" in again.output
    assert rec_path.stat().st_mtime_ns != first[1] and len(list((tmp_path / "res").glob("tiny/ce/*.json"))) == 1
