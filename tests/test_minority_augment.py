"""Table 12 minority jitter / blur: only minority foreground appended, augmented, right labels, ranges, fit smoke."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from benchmark.config.catalog import load_dataset
from benchmark.data.base import CIFAR_MEAN, CIFAR_STD
from benchmark.engine.loop import fit
from benchmark.methods.minority_augment import blur_sigmas, gaussian_blur, jitter_params
from benchmark.methods.mixers import MixContext, mixers
from benchmark.schema.settings import RunSettings

MEAN = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
CTX = MixContext(1.0, torch.tensor([100, 50, 10, 5]), torch.tensor([False, False, True, True]))


def _normalised(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, 16, 16), generator=g).float() / 255 - MEAN) / STD


@pytest.mark.parametrize("name", ["minority_jitter", "minority_blur"])
def test_only_minority_foreground_is_appended_augmented(name: str) -> None:
    spec = mixers.get(name)
    assert spec.background == "instance" and spec.foreground == "q"
    xb, yb = _normalised(4, 0), torch.tensor([0, 1, 2, 3])
    xf, yf = _normalised(6, 1), torch.tensor([0, 2, 1, 3, 3, 0])
    m = spec.op(xb, yb, xf.clone(), yf, np.random.default_rng(0), CTX)
    keep = torch.tensor([1, 3, 4])  # the minority (class 2, 3) foreground samples, in order
    assert m.x.shape == (7, 3, 16, 16) and m.lam == 1.0
    assert torch.equal(m.x[:4], xb)  # background untouched, first (the loop's [: len(y)] accuracy slice)
    assert torch.equal(m.y_a, torch.tensor([0, 1, 2, 3, 2, 3, 3])) and torch.equal(m.y_a, m.y_b)
    diff = (m.x[4:] - xf[keep]).abs().flatten(1).max(1).values
    assert (diff > 1e-2).all()  # every appended sample is augmented
    lo, hi = (0 - MEAN) / STD, (1 - MEAN) / STD  # still a normalised [0, 1] image
    assert (m.x[4:] >= lo - 1e-4).all() and (m.x[4:] <= hi + 1e-4).all()


@pytest.mark.parametrize("name", ["minority_jitter", "minority_blur"])
def test_no_minority_foreground_returns_the_background(name: str) -> None:
    xb, yb = _normalised(4, 0), torch.tensor([0, 1, 2, 3])
    m = mixers.get(name).op(xb, yb, _normalised(3, 1), torch.tensor([0, 1, 0]), np.random.default_rng(0), CTX)
    assert m.x is xb and torch.equal(m.y_a, yb) and torch.equal(m.y_b, yb) and m.lam == 1.0
    with pytest.raises(ValueError, match="minority"):
        mixers.get(name).op(xb, yb, xb, yb, np.random.default_rng(0), MixContext(1.0, CTX.class_counts))


def test_jitter_and_blur_parameter_ranges() -> None:
    b, h, first = jitter_params(20000, np.random.default_rng(0))
    assert 0.5 <= b.min() < 0.51 and 1.49 < b.max() <= 1.5  # brightness 0.5
    assert -0.3 <= h.min() < -0.29 and 0.29 < h.max() <= 0.3  # hue 0.3
    assert 0.45 < first.mean() < 0.55  # random op order, as ColorJitter
    s = blur_sigmas(20000, np.random.default_rng(0))
    assert 0.1 <= s.min() < 0.15 and 4.95 < s.max() <= 5.0


def test_blur_kernel_is_torchvision_5_wide_7_high_and_commutes_with_normalize() -> None:
    delta = torch.zeros(1, 3, 16, 16)
    delta[..., 8, 8] = 1.0
    out = gaussian_blur(delta, np.random.default_rng(0), CTX)[0, 0]
    rows, cols = out.abs().gt(0).any(1).nonzero().flatten(), out.abs().gt(0).any(0).nonzero().flatten()
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 11, 6, 10)  # 7 rows, 5 columns
    img = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = gaussian_blur((img - MEAN) / STD, np.random.default_rng(5), CTX)
    sig = blur_sigmas(2, np.random.default_rng(5))
    b = torch.cat([TF.gaussian_blur(im[None], [5, 7], [float(v), float(v)]) for im, v in zip(img, sig, strict=True)])
    assert torch.allclose(a, (b - MEAN) / STD, atol=1e-5)


@pytest.mark.parametrize("name", ["minority_jitter", "minority_blur"])
def test_fit_smoke(name: str) -> None:
    s = RunSettings.model_validate({
        "data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 24,
                 "test_per_class": 4, "image_size": 32},
        "train": {"epochs": 1, "batch_size": 16, "warmup_epochs": 1, "device": "cpu", "steps_per_epoch": 2},
        "method": {"mixer": name}, "mixer": {"start": -1, "end": 0, "prob": 1.0},
        "eval": {"many_above": 10, "few_below": 8}})  # counts [24, 15, 9, 6]: two majority, two minority classes
    res = fit(s, load_dataset(s.data))
    row = res.curve[0]
    assert row["mixer_active"] and row["train/mixed_frac"] == 1.0
    assert row["train/loss"] > 0 and 0 <= row["train/acc"] <= 100
    assert res.groups == {"many": 2, "medium": 1, "few": 1}
