"""Packed training of real runs: same trajectory as unpacked runs, K records, per-member checkpoints, grouping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.config import load_suite, plan
from benchmark.packed_train import fit_packed, pack_blocker
from benchmark.packing import group_jobs
from benchmark.records import read_record, record_path
from benchmark.runner import RunJob, load_dataset
from benchmark.settings import RunSettings
from benchmark.train import fit

TINY = {"data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 64,
                 "test_per_class": 8, "image_size": 16},
        "train": {"epochs": 2, "batch_size": 16, "warmup_epochs": 0, "device": "cpu", "lr": 0.005,
                  "steps_per_epoch": 1},
        "method": {"mixer": "cmo", "rule": "drw", "reweight_epoch": 1}, "mixer": {"start": -1, "end": 0, "prob": 1}}


def settings(seed: int, **train: object) -> RunSettings:
    return RunSettings.model_validate({**TINY, "seed": seed, "train": {**TINY["train"], **train}})


def test_each_member_follows_its_unpacked_run() -> None:
    """Same initial weights, draws, mixing, DRW weights and SGD: after two CMO steps the weights agree to float error
    (the first conv's weight gradient sums thousands of cancelling terms: ~0.5% apart between kernels)."""
    runs = [settings(0), settings(1), settings(2)]
    data = load_dataset(runs[0].data)
    packed = fit_packed(runs, data)
    for s, res in zip(runs, packed, strict=True):
        assert not isinstance(res, Exception)
        alone = fit(s, data)
        assert [r["train/mixed_frac"] for r in res.curve] == [r["train/mixed_frac"] for r in alone.curve] == [1, 1]
        for a, b in zip(res.curve, alone.curve, strict=True):
            assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
        mine, ref = res.model.state_dict(), alone.model.state_dict()
        for k in ref:  # conv weights, BN affine and running statistics, heads; grouped vs plain conv kernels sum
            assert torch.allclose(mine[k].float(), ref[k].float(), rtol=1e-3, atol=1e-3), k  # in another order
        assert res.execution["pack_size"] == 3 and res.per_class_last and res.class_counts == alone.class_counts
    w0, w1 = (r.model.state_dict()["conv1.weight"] for r in packed[:2])
    assert not torch.allclose(w0, w1)  # members are different runs


def test_member_checkpoint_resumes_alone(tmp_path: Path) -> None:
    """A packed member's checkpoint has the unpacked layout: an interrupted pack can finish one run by itself."""
    runs = [settings(0, epochs=1), settings(1, epochs=1)]
    data = load_dataset(runs[0].data)
    ckpts = [tmp_path / "a.ckpt", tmp_path / "b.ckpt"]
    fit_packed(runs, data, checkpoints=ckpts, run_ids=["a", "b"])  # one epoch, checkpointed
    two = settings(1, epochs=2)
    resumed = fit(two, data, checkpoint=ckpts[1], run_id="b")  # epoch 2 alone
    straight = fit(two, data)
    assert len(resumed.curve) == 2
    assert resumed.curve[1]["train/loss"] == pytest.approx(straight.curve[1]["train/loss"], rel=1e-4)


def test_unpackable_runs_are_named() -> None:
    assert pack_blocker(settings(0)) is None
    ride = RunSettings.model_validate({**TINY, "backbone": {"name": "ride_resnet32", "num_experts": 3},
                                       "method": {"loss": "ride"}})
    assert "backbone" in (pack_blocker(ride) or "")
    remix = RunSettings.model_validate({**TINY, "method": {"mixer": "remix"}})
    assert "remix" in (pack_blocker(remix) or "")
    ref = settings(0, pipeline="reference")
    assert "reference" in (pack_blocker(ref) or "")


def test_grouping_packs_seeds_of_one_row_only(tiny_suite: Path, tmp_path: Path) -> None:
    spec, _ = load_suite(str(tiny_suite))
    runs = plan(spec, seeds=[0, 1, 2])
    jobs = [RunJob(r, record_path(tmp_path, r.suite, r.cell, r.run_id)) for r in runs]
    units = group_jobs(jobs, 2)
    rows = [[j.run.row for j in u] for u in units]
    assert sorted(len(u) for u in units) == [1, 1, 2, 2]
    assert all(len(set(r)) == 1 for r in rows)  # never two rows in one pack
    assert [len(u) for u in group_jobs(jobs, 1)] == [1] * 6


def test_cli_packed_run_writes_one_record_per_run(tiny_suite: Path, tmp_path: Path) -> None:
    res_dir = tmp_path / "res"
    args = ["run", "suite", str(tiny_suite), "--seeds", "0,1,2", "--runs-per-gpu", "3", "--results-dir",
            str(res_dir), "--tracker", "none"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    recs = [read_record(p) for p in sorted(res_dir.glob("tiny/*/*.json"))]
    assert len(recs) == 6 and all(r.status == "done" for r in recs)
    for r in recs:
        ex = r.environment["execution"]
        assert ex["pack_size"] == 3 and r.run_id in ex["pack_runs"]
        assert len(r.curve) == 2
    assert not list(res_dir.glob("tiny/*/*.ckpt"))
    assert len(list(res_dir.glob("tiny/*/*.weights.pt"))) == 6
    accs = {r.seed: r.metrics["best"]["acc/all"] for r in recs if r.row == "CE"}
    assert len(accs) == 3
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and again.output.count("skipped (done)") == 6
