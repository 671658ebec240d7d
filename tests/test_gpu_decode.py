"""The gpu_decode input pipeline on CPU tensors: crop draws, crops and statistics against the PIL reference
transforms, and the sampled index streams of a training run against the reference pipeline's."""

from __future__ import annotations

import collections
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from benchmark.config.catalog import load_dataset
from benchmark.config.choices import choices_for
from benchmark.data.base import DataError
from benchmark.data.gpu_decode import GpuDecodeSource, crop_area_fractions, resize_crop, rrc_boxes
from benchmark.data.prepare import prepare
from benchmark.data.sources import LoaderSource
from benchmark.data.split_lists import FileDataset
from benchmark.data.synthetic_jpeg import SynthSpec, write_synthetic
from benchmark.engine.loop import fit, make_source
from benchmark.schema.settings import RunSettings


@pytest.fixture(scope="module")
def inat_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inat")
    write_synthetic(SynthSpec("inat2018", classes=5, max_per_class=16, min_per_class=3, test_per_class=2, size=72),
                    root)
    prepare("inat2018", root)
    return root


def settings(root: Path, pipeline: str, **train: object) -> RunSettings:
    return RunSettings.model_validate({
        "data": {"name": "inat2018", "root": str(root), "image_size": 32, "num_classes": 5, "color_jitter": True},
        "backbone": {"name": "resnet50"}, "method": {"mixer": "cmo"}, "mixer": {"start": -1, "end": 0},
        "train": {"epochs": 2, "batch_size": 4, "device": "cpu", "workers": 0, "schedule": "inat_step",
                  "steps_per_epoch": 3, "pipeline": pipeline, **train}})


def test_crop_draws_follow_torchvision_random_resized_crop() -> None:
    for h, w in ((64, 96), (300, 100)):
        ours = crop_area_fractions(h, w, 4000, seed=1)
        torch.manual_seed(2)
        ref = np.array([(lambda b: b[2] * b[3] / (h * w))(RandomResizedCrop.get_params(
            torch.empty(3, h, w), (0.08, 1.0), (3 / 4, 4 / 3))) for _ in range(4000)])
        for q in (0.1, 0.25, 0.5, 0.75, 0.9):
            assert abs(np.quantile(ours, q) - np.quantile(ref, q)) < 0.03, (h, w, q)
    top, left, ch, cw = rrc_boxes(torch.tensor([64, 300]).repeat(500), torch.tensor([96, 100]).repeat(500),
                                  torch.Generator().manual_seed(0))
    hs, ws = torch.tensor([64, 300]).repeat(500), torch.tensor([96, 100]).repeat(500)
    assert (top >= 0).all() and (left >= 0).all() and (top + ch <= hs).all() and (left + cw <= ws).all()
    ratio = (cw / ch).double()
    assert ratio.min() > 3 / 4 - 0.05 and ratio.max() < 4 / 3 + 0.05


def test_an_image_no_try_fits_gets_torchvisions_central_crop() -> None:
    # 1000 x 10: every try needs a side >= sqrt(0.08 * 10000 * 3/4) = 24.5 > 10, so the fallback: width 10,
    # height round(10 / (3/4)) = 13, top (1000 - 13) // 2 = 493, left 0
    top, left, ch, cw = rrc_boxes(torch.full((50,), 1000), torch.full((50,), 10), torch.Generator().manual_seed(0))
    assert set(zip(top.tolist(), left.tolist(), ch.tolist(), cw.tolist(), strict=True)) == {(493, 0, 13, 10)}
    assert RandomResizedCrop.get_params(torch.empty(3, 1000, 10), (0.08, 1.0), (3 / 4, 4 / 3)) == (493, 0, 13, 10)


def test_resize_crop_equals_torchvisions_resized_crop_on_the_tensor() -> None:
    img = torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for box in ((5, 7, 40, 61), (0, 0, 70, 90), (30, 2, 12, 9)):
        ref = TF.resized_crop(img, *box, [32, 32], antialias=True).float()
        ours = resize_crop(img, *box, 32).round().clamp(0, 255)
        assert (ours - ref).abs().max() <= 1.0, box


def test_gpu_decode_crops_match_the_reference_statistics(inat_root: Path) -> None:
    s = settings(inat_root, "gpu_decode")
    data = load_dataset(s.data)
    src = make_source(s, data, torch.device("cpu"))
    assert isinstance(src, GpuDecodeSource) and src.jitter is not None
    ref_t, _ = data.transforms()
    train_set = FileDataset(data.root, data.train_paths, data.train_y, ref_t)
    n = len(data.train_y)
    order = torch.arange(n).repeat(40)  # 40 crops (flip, jitter) of each image by each pipeline
    torch.manual_seed(0)
    ref = torch.stack([train_set[i][0] for i in order.tolist()])
    batches = list(src.batches(order, n, 40, torch.Generator().manual_seed(0)))
    ours = torch.cat([b()[0] for b in batches])
    assert ours.shape == ref.shape == (40 * n, 3, 32, 32) and batches[0]()[1].tolist() == data.train_y.tolist()
    dims = (0, 2, 3)  # per channel, normalised units
    assert torch.allclose(ours.mean(dims), ref.mean(dims), atol=0.06), (ours.mean(dims), ref.mean(dims))
    assert torch.allclose(ours.std(dims), ref.std(dims), rtol=0.04), (ours.std(dims), ref.std(dims))


def test_gpu_decode_test_batches_equal_the_reference_transform(inat_root: Path) -> None:
    s = settings(inat_root, "gpu_decode")
    data = load_dataset(s.data)
    ours = torch.cat([x for x, _ in make_source(s, data, torch.device("cpu")).test_batches(bs=4)])
    ref_src = make_source(s.model_copy(update={"train": s.train.model_copy(update={"pipeline": "reference"})}),
                          data, torch.device("cpu"))
    ref = torch.cat([x for x, _ in ref_src.test_batches(bs=4)])
    assert ours.shape == ref.shape == (10, 3, 32, 32)
    assert (ours - ref).abs().mean() < 0.03 and (ours - ref).abs().max() < 0.3  # PIL vs tensor antialiasing


@pytest.mark.parametrize("sampler", ["instance", "ros"])  # background P or class-balanced; foreground Q (CMO)
def test_the_sampled_index_streams_equal_the_reference_pipelines(inat_root: Path, monkeypatch, sampler: str) -> None:
    orders: dict[str, list[list[int]]] = collections.defaultdict(list)
    reads: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for cls, name in ((LoaderSource, "reference"), (GpuDecodeSource, "gpu_decode")):
        def batches(self, order, *a, _orig=cls.batches, _name=name, **k):  # noqa: ANN001, ANN202
            orders[_name].append(order.tolist())
            return _orig(self, order, *a, **k)
        monkeypatch.setattr(cls, "batches", batches)
    get, read = FileDataset.__getitem__, GpuDecodeSource.read

    def getitem(self, i):  # noqa: ANN001, ANN202
        if len(self.paths) > 10:  # the train split (the test split has 5 x 2 images)
            reads["reference"][i] += 1
        return get(self, i)

    def read_bytes(self, paths, idx):  # noqa: ANN001, ANN202
        if paths is self.train_paths:
            reads["gpu_decode"].update(idx)
        return read(self, paths, idx)
    monkeypatch.setattr(FileDataset, "__getitem__", getitem)
    monkeypatch.setattr(GpuDecodeSource, "read", read_bytes)
    results = {}
    for pipeline in ("reference", "gpu_decode"):
        s = settings(inat_root, pipeline, epochs=3, sampler=sampler)
        results[pipeline] = fit(s, load_dataset(s.data))
    assert len(orders["reference"]) == 6  # 3 epochs x (foreground Q stream + background P stream)
    assert orders["gpu_decode"] == orders["reference"]
    assert reads["gpu_decode"] == reads["reference"] and sum(reads["reference"].values()) == 6 * 3 * 4
    assert results["gpu_decode"].execution["input_pipeline"] == "gpu_decode"
    assert results["reference"].execution["input_pipeline"] == "reference"
    assert choices_for(settings(inat_root, "gpu_decode"), None)["input_pipeline"].startswith("gpu_decode")
    assert math.isfinite(results["gpu_decode"].curve[-1]["train/loss"])


def test_gpu_decode_refuses_what_it_cannot_do(inat_root: Path) -> None:
    s = settings(inat_root, "gpu_decode", augment="imagenet_strong")
    with pytest.raises(ValueError, match="train.augment imagenet_strong needs the reference pipeline"):
        make_source(s, load_dataset(s.data), torch.device("cpu"))
    cifar = RunSettings.model_validate({"data": {"name": "synthetic_lt", "num_classes": 3, "max_per_class": 4,
                                                 "test_per_class": 1, "image_size": 8},
                                        "train": {"pipeline": "gpu_decode", "device": "cpu"}})
    with pytest.raises(ValueError, match="gpu_decode decodes image files"):
        make_source(cifar, load_dataset(cifar.data), torch.device("cpu"))


def test_reference_workers_persist_across_epochs(inat_root: Path) -> None:
    s = settings(inat_root, "reference", workers=1)
    data = load_dataset(s.data)
    src = make_source(s, data, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    seen = []
    for _ in range(2):
        for b in src.batches(torch.arange(8), 4, 2, gen):
            b()
        (loader, _), = src._idle[id(src.train_set)]
        seen.append((loader, loader._iterator))
    assert seen[0][0] is seen[1][0] and seen[0][1] is seen[1][1]  # the same loader and worker processes
    assert loader.persistent_workers


def test_a_missing_image_is_named(inat_root: Path, tmp_path: Path) -> None:
    s = settings(inat_root, "gpu_decode")
    data = load_dataset(s.data)
    src = GpuDecodeSource(data, torch.device("cpu"), threads=1)
    src.root = tmp_path  # nothing there
    batch = next(src.batches(torch.arange(4), 4, 1, torch.Generator().manual_seed(0)))
    with pytest.raises(DataError, match=f"image {tmp_path}/.*cannot be read .*No such file or directory"):
        batch()


def test_decode_handles_the_odd_files_of_real_datasets(inat_root: Path) -> None:
    # ImageNet holds grayscale and CMYK JPEGs and a PNG named .JPEG: all come out RGB, the PNG through the fallback
    def encoded(img: Image.Image, fmt: str) -> torch.Tensor:
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    s = settings(inat_root, "gpu_decode")
    src = GpuDecodeSource(load_dataset(s.data), torch.device("cpu"), threads=1)
    out = src.decode([encoded(rgb.convert("L"), "JPEG"), encoded(rgb.convert("CMYK"), "JPEG"), encoded(rgb, "PNG")])
    assert [tuple(x.shape) for x in out] == [(3, 20, 30)] * 3
    assert torch.equal(out[2].permute(1, 2, 0), torch.from_numpy(np.array(rgb)))  # PNG is lossless
