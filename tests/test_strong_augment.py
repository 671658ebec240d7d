"""Strong 400-epoch augmentations: shapes, normalisation, 50:50 branches, Cutout, reproducibility, a fit smoke."""

from __future__ import annotations

import random

import pytest
import torch

from benchmark.data.augment import augmentations
from benchmark.data.strong_augment import cifar_strong, imagenet_strong
from benchmark.engine.loop import fit
from benchmark.runner import load_dataset
from benchmark.settings import RunSettings

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def _images(n: int = 16, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


def _const(n: int, value: int, size: int = 32) -> torch.Tensor:
    return torch.full((n, size, size, 3), value, dtype=torch.uint8)


def _formula(value: int) -> torch.Tensor:
    return (value / 255 - torch.tensor(MEAN)) / torch.tensor(STD)


@pytest.mark.parametrize(("name", "h", "w"), [("cifar_strong", 32, 32), ("imagenet_strong", 40, 48)])
def test_output_shape_dtype_device(name: str, h: int, w: int) -> None:
    images = _images(12, h, w)
    aug = augmentations.get(name)(images, MEAN, STD, 4)
    x = aug(torch.arange(12), torch.Generator().manual_seed(0))
    assert x.shape == (12, 3, h, w) and x.dtype == torch.float32 and x.device == images.device
    assert aug.normalize(images[:3]).shape == (3, 3, h, w)


def test_normalisation_of_a_constant_image() -> None:
    images = _const(4, 200)
    expected = _formula(200)
    aug = cifar_strong(images, MEAN, STD, 0, p_regular=1.0, autoaugment=False, flip=False, cutout=0)
    for x in (aug.normalize(images), aug(torch.arange(4), torch.Generator().manual_seed(0))):
        assert torch.allclose(x.mean(dim=(0, 2, 3)), expected, atol=1e-5)
        assert x.std(dim=(0, 2, 3)).max() < 1e-5


@pytest.mark.parametrize("name", ["cifar_strong", "imagenet_strong"])
def test_both_branches_about_half(name: str) -> None:
    images = _images(8)
    aug = augmentations.get(name)(images, MEAN, STD, 4)
    g = torch.Generator().manual_seed(1)
    took = []
    for _ in range(40):
        aug(torch.arange(8), g)
        assert aug.last_first is not None
        took.append(aug.last_first)
    frac = torch.cat(took).float().mean().item()
    assert 0.4 < frac < 0.6, frac


def test_cutout_zeroes_one_clipped_16px_square() -> None:
    images = _const(8, 200)
    aug = cifar_strong(images, MEAN, STD, 0, p_regular=1.0, autoaugment=False, flip=False, cutout=16)
    g = torch.Generator().manual_seed(0)
    zero, fill = _formula(0).view(3, 1, 1), _formula(200).view(3, 1, 1)
    sides = set()
    for _ in range(25):
        for x in aug(torch.arange(8), g):
            hole = torch.isclose(x, zero.expand_as(x), atol=1e-4)
            assert torch.equal(hole[0], hole[1]) and torch.equal(hole[0], hole[2])  # same box in every channel
            assert torch.allclose(x[~hole].view(-1), fill.expand_as(x)[~hole].view(-1), atol=1e-4)
            rows = hole[0].any(1).nonzero().flatten()
            cols = hole[0].any(0).nonzero().flatten()
            nr, nc = len(rows), len(cols)
            assert rows[-1] - rows[0] + 1 == nr and cols[-1] - cols[0] + 1 == nc  # one rectangle
            assert int(hole[0].sum()) == nr * nc
            assert 8 <= nr <= 16 and 8 <= nc <= 16  # centre in the image: at least half a side survives
            sides.add((nr, nc))
    assert (16, 16) in sides and any(s != (16, 16) for s in sides)  # full boxes and clipped boxes both occur


def test_reproducible_from_the_generator_and_global_rngs_untouched() -> None:
    images = _images(16)
    for name in ("cifar_strong", "imagenet_strong"):
        aug = augmentations.get(name)(images, MEAN, STD, 4)
        py, tc = random.getstate(), torch.get_rng_state()
        a = aug(torch.arange(16), torch.Generator().manual_seed(3))
        b = aug(torch.arange(16), torch.Generator().manual_seed(3))
        c = aug(torch.arange(16), torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert random.getstate() == py and torch.equal(torch.get_rng_state(), tc)


def test_imagenet_randaugment_is_timm_rand_n2_m10_mstd05() -> None:
    aug = imagenet_strong(_images(2, 64, 64), MEAN, STD)
    ra = aug.first.transforms[3]
    assert ra.num_layers == 2 and len(ra.ops) == 15
    assert {op.prob for op in ra.ops} == {0.5} and {op.magnitude for op in ra.ops} == {10}
    assert {op.magnitude_std for op in ra.ops} == {0.5}
    assert {op.kwargs["fillcolor"] for op in ra.ops} == {(124, 116, 104)}


def test_fit_smoke_cifar_strong() -> None:
    s = RunSettings.model_validate({
        "data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 24,
                 "test_per_class": 4, "image_size": 32},
        "train": {"epochs": 1, "batch_size": 16, "warmup_epochs": 1, "device": "cpu", "augment": "cifar_strong",
                  "steps_per_epoch": 2}})
    res = fit(s, load_dataset(s.data))
    assert len(res.curve) == 1 and res.curve[0]["train/loss"] > 0
