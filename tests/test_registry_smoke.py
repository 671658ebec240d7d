"""Every registered component trains one smoke epoch through a suite row (CPU, tiny synthetic data)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmark.config.catalog import load_dataset, registries
from benchmark.config.suite import load_suite, plan
from benchmark.config.validation import check_plan
from benchmark.engine.loop import fit

# Components that only work in a combination: the row that exercises them.
PARTNERS = {
    ("losses", "ride"): {"backbone.name": "ride_resnet32"},
    ("backbones", "ride_resnet32"): {"method.loss": "ride"},
    ("backbones", "ride_resnet50"): {"method.loss": "ride", "data.image_size": 32},
}
# Need files: covered in test_data / test_train (CIFAR) and test_split_lists / test_loader_source (file lists).
SKIP = {("datasets", "cifar10_lt"), ("datasets", "cifar100_lt"), ("datasets", "imagenet_lt"), ("datasets", "inat2018")}

SUITE = """
suite: smoke
version: 1
title: smoke
defaults:
  data: {name: synthetic_lt, imbalance_ratio: 4, num_classes: 4, max_per_class: 24, test_per_class: 2,
         image_size: 16}
  train: {device: cpu, warmup_epochs: 1}
seeds: [0]
shots: {many_above: 10, few_below: 8}
rows:
  - name: row
    method: {loss: ce}
"""

KEYS = {"losses": "method.loss", "rules": "method.rule", "mixers": "method.mixer", "samplers": "train.sampler",
        "schedules": "train.schedule", "backbones": "backbone.name", "datasets": "data.name",
        "augmentations": "train.augment"}
CASES = [(kind, name) for kind, entries in registries().items() for name, _ in entries if (kind, name) not in SKIP]


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_component_trains_a_smoke_epoch(kind: str, name: str, tmp_path: Path) -> None:
    p = tmp_path / "smoke.yaml"
    p.write_text(SUITE)
    spec, _ = load_suite(str(p))
    over = {KEYS[kind]: name, "train.epochs": 1, "train.steps_per_epoch": 2, "train.batch_size": 8,
            **PARTNERS.get((kind, name), {}), **({"mixer.prob": 1.0} if kind == "mixers" else {})}
    runs = plan(spec, smoke=True, overrides=over)
    check_plan(runs, str(p))
    s = runs[0].settings
    assert s.model_dump()[KEYS[kind].split(".")[0]][KEYS[kind].split(".")[1]] == name
    res = fit(s, load_dataset(s.data))
    assert len(res.curve) == 1 and math.isfinite(res.curve[0]["train/loss"])
    if kind == "mixers" and name != "none":
        assert res.curve[0]["train/mixed_frac"] == 1.0  # the mixing op ran on every batch


MIXERS = [n for n, _ in registries()["mixers"] if n != "none"]
LOSSES = [n for n, _ in registries()["losses"]]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("mixer", MIXERS)
def test_every_mixer_with_every_loss(mixer: str, loss: str, tmp_path: Path) -> None:
    p = tmp_path / "smoke.yaml"
    p.write_text(SUITE)
    spec, _ = load_suite(str(p))
    over = {"method.mixer": mixer, "method.loss": loss, "method.rule": "drw", "method.reweight_epoch": 0,
            "mixer.prob": 1.0, "train.epochs": 1, "train.steps_per_epoch": 1, "train.batch_size": 8,
            **({"backbone.name": "ride_resnet32"} if loss == "ride" else {})}
    (run,) = plan(spec, smoke=True, overrides=over)
    check_plan([run], str(p))
    res = fit(run.settings, load_dataset(run.settings.data))
    assert math.isfinite(res.curve[0]["train/loss"]) and res.curve[0]["train/mixed_frac"] == 1.0
