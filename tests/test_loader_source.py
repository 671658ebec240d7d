"""The DataLoader path: file datasets from split lists, and CIFAR-style arrays through the reference transforms."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark.config.catalog import load_dataset
from benchmark.engine.loop import fit, make_source
from benchmark.schema.settings import RunSettings
from tests.test_split_lists import make_fixture


def test_file_dataset_trains_through_the_loader(tmp_path: Path) -> None:
    make_fixture(tmp_path / "inat", "inat2018")
    s = RunSettings.model_validate({
        "data": {"name": "inat2018", "root": str(tmp_path / "inat"), "image_size": 32},
        "backbone": {"name": "resnet50"}, "method": {"mixer": "cmo"},
        "train": {"epochs": 1, "batch_size": 4, "device": "cpu", "workers": 0, "schedule": "inat_step"},
        "mixer": {"start": -1, "end": 0, "prob": 1.0}})
    data = load_dataset(s.data)
    res = fit(s, data)
    assert res.curve[0]["train/mixed_frac"] == 1.0 and len(res.per_class_last) == 8142
    assert data.reweight_epoch == 160


def test_reference_pipeline_matches_tensor_pipeline_shapes() -> None:
    s = RunSettings.model_validate({
        "data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 16,
                 "test_per_class": 3, "image_size": 16},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "workers": 0, "pipeline": "reference",
                  "warmup_epochs": 1}})
    data = load_dataset(s.data)
    ref = make_source(s, data, torch.device("cpu"))
    tensor = make_source(s.model_copy(update={"train": s.train.model_copy(update={"pipeline": "tensor"})}), data,
                         torch.device("cpu"))
    (xr, yr), (xt, yt) = next(ref.test_batches()), next(tensor.test_batches())
    assert torch.allclose(xr, xt, atol=1e-5) and torch.equal(yr, yt)  # same normalisation, same test images
    order = torch.arange(8)
    xb, yb = next(ref.batches(order, 8, 1, torch.Generator().manual_seed(0)))()
    assert xb.shape == (8, 3, 16, 16) and yb.tolist() == data.train_y[:8].tolist()
    assert len(fit(s, data).curve) == 1


def test_file_dataset_with_strong_augmentation(tmp_path: Path) -> None:
    make_fixture(tmp_path / "inat", "inat2018")
    s = RunSettings.model_validate({
        "data": {"name": "inat2018", "root": str(tmp_path / "inat"), "image_size": 32},
        "backbone": {"name": "resnet50"},
        "train": {"epochs": 1, "batch_size": 4, "device": "cpu", "workers": 0, "augment": "imagenet_strong",
                  "schedule": "cosine_warmup", "steps_per_epoch": 1}})
    data = load_dataset(s.data)
    src = make_source(s, data, torch.device("cpu"))
    x, _ = next(src.batches(torch.arange(4), 4, 1, torch.Generator().manual_seed(0)))()
    assert x.shape == (4, 3, 32, 32) and torch.isfinite(x).all()
    assert len(fit(s, data).curve) == 1
