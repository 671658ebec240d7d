"""Two-stage runs: label-aware smoothing by hand, a frozen backbone with moving BN statistics, stage-1 reuse."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmark.config.catalog import load_dataset
from benchmark.config.suite import load_suite
from benchmark.engine.loop import build_model
from benchmark.engine.stage2 import finetune
from benchmark.methods.las import las_epsilons
from benchmark.methods.losses import LossContext, losses
from benchmark.run.records import read_record
from benchmark.run.runner import run_suite
from benchmark.schema.settings import RunSettings


def test_las_epsilons_concave_by_hand() -> None:
    counts = [100, 55, 10]
    eps = las_epsilons(counts, 0.4, 0.1).tolist()
    expected = [0.1 + 0.3 * math.sin(math.pi * (n - 10) / (2 * 90)) for n in counts]
    assert eps == pytest.approx(expected, rel=1e-6) and eps[0] == pytest.approx(0.4) and eps[2] == pytest.approx(0.1)


def test_las_loss_by_hand() -> None:
    crit = losses.get("las").build(LossContext([100, 55, 10]))
    z, y = torch.tensor([[1.0, 0.5, -1.0], [0.2, 0.1, 0.3]]), torch.tensor([0, 2])
    logp = F.log_softmax(z, 1)
    eps = crit.eps
    manual = [(1 - eps[yi]) * -logp[i, yi] + eps[yi] * -logp[i].mean() for i, yi in enumerate(y.tolist())]
    assert crit(z, y).item() == pytest.approx(float(sum(manual) / 2), rel=1e-6)


SETTINGS = {"data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 32,
                     "test_per_class": 4, "image_size": 8},
            "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 1, "device": "cpu"},
            "stage2": {"epochs": 2, "batch_size": 8}}


def test_finetune_freezes_backbone_and_moves_bn_statistics() -> None:
    s = RunSettings.model_validate(SETTINGS)
    data = load_dataset(s.data)
    model = build_model(s, data.num_classes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = finetune(s, data, model)
    after = model.state_dict()
    assert not torch.equal(before["fc.weight"], after["fc.weight"])  # classifier learns
    assert torch.equal(before["conv1.weight"], after["conv1.weight"])  # backbone frozen
    assert torch.equal(before["bn1.weight"], after["bn1.weight"])  # BN affine frozen
    assert not torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])  # BN statistics follow the data
    assert len(res.curve) == 2 and not torch.equal(res.model.scale.detach(), torch.ones(4))


SUITE = """
suite: twostage
version: 1
title: two-stage
defaults:
  data: {name: synthetic_lt, imbalance_ratio: 4, num_classes: 4, max_per_class: 32, test_per_class: 4, image_size: 8}
  train: {epochs: 2, batch_size: 8, warmup_epochs: 1, device: cpu}
  method: {rule: drw, reweight_epoch: 1}
  mixer: {start: -1, end: 0}
seeds: [0]
shots: {many_above: 20, few_below: 10}
rows:
  - name: CE-DRW + CMO
    method: {mixer: cmo}
  - name: CE-DRW + CMO + LAS
    method: {mixer: cmo}
    set: {stage2: {epochs: 2, batch_size: 8}}
"""


def test_las_row_reuses_the_stage1_run(tmp_path: Path) -> None:
    p = tmp_path / "twostage.yaml"
    p.write_text(SUITE)
    spec, _ = load_suite(str(p))
    outcomes = run_suite(spec, results_dir=tmp_path / "res", tracker="none")
    assert [o.status for o in outcomes] == ["done", "done"]
    base, las = (read_record(o.path) for o in outcomes)
    assert las.stage1 is not None and las.stage1["source"] == "reused" and las.stage1["run_id"] == base.run_id
    assert las.stage1["metrics"] == base.metrics and las.curve[0]["stage"] == 2
    assert las.settings["stage2"]["epochs"] == 2 and "stage2" not in base.settings or base.settings["stage2"] is None


def test_las_row_loads_the_weights_behind_a_linked_stage1_record(tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    first.write_text(SUITE.replace("suite: twostage", "suite: first").split("  - name: CE-DRW + CMO + LAS")[0])
    p = tmp_path / "twostage.yaml"
    p.write_text(SUITE)
    res = tmp_path / "res"
    run_suite(load_suite(str(first))[0], results_dir=res, tracker="none")
    outcomes = run_suite(load_suite(str(p))[0], results_dir=res, tracker="none")
    assert outcomes[0].status.startswith("reused (first/") and outcomes[1].status == "done"
    linked, las = (read_record(o.path) for o in outcomes)
    assert not outcomes[0].path.with_suffix(".weights.pt").exists()  # stage 1 was not trained again
    assert las.stage1["source"] == "reused" and las.stage1["run_id"] == linked.run_id
