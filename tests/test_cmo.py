"""CMO as implemented by the reference: window, box, lambda recomputation, paste, foreground distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.data.profile import exp_profile
from benchmark.data.samplers import SamplerContext, samplers
from benchmark.methods.mixers import cutmix_pair, mixers, rand_bbox


def test_active_window_200_epochs() -> None:
    cmo = mixers.get("cmo")
    active = [e for e in range(200) if cmo.active(e, 200, 3, 3)]
    assert active[0] == 4 and active[-1] == 196 and len(active) == 193
    assert not mixers.get("none").active(100, 200, 3, 3)


def test_box_follows_reference_rand_bbox() -> None:
    # Re-derive the reference formula by hand for a fixed generator state.
    lam, d2, d3 = 0.64, 32, 32
    box = rand_bbox(d2, d3, lam, np.random.default_rng(7))
    r = np.random.default_rng(7)
    cut = int(32 * np.sqrt(1 - lam))  # 19
    cx, cy = r.integers(32), r.integers(32)
    assert (box.x1, box.x2) == (max(cx - cut // 2, 0), min(cx + cut // 2, 32))
    assert (box.y1, box.y2) == (max(cy - cut // 2, 0), min(cy + cut // 2, 32))
    assert cut == 19 and cut // 2 == 9  # unclipped side is 2 * floor(cut / 2) = 18, not 19


def test_paste_and_lambda_recomputed_from_clipped_box() -> None:
    xb = torch.zeros(4, 3, 32, 32)
    xf = torch.ones(4, 3, 32, 32)
    yb, yf = torch.tensor([0, 1, 2, 3]), torch.tensor([9, 8, 7, 6])
    for seed in range(50):
        m, box = cutmix_pair(xb, yb, xf, yf, 1.0, np.random.default_rng(seed))
        pasted = m.x[:, 0].mean().item()  # fraction of foreground pixels
        assert pasted == pytest.approx(1 - m.lam, abs=1e-6)
        assert m.lam == pytest.approx(1 - box.area() / 1024)
        assert torch.equal(m.y_a, yb) and torch.equal(m.y_b, yf)
        # element-wise pairing: one box for the whole batch
        assert torch.equal(m.x[0], m.x[3])
    assert xb.sum() == 0  # the input batch is not modified


def _class_hist(name: str, counts: list[int], r: float = 1.0, semantics: str = "per_sample",
                draws: int = 20) -> np.ndarray:
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    s = samplers.get(name)(SamplerContext(labels, counts, r, semantics))
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([s.epoch(g) for _ in range(draws)])
    return np.bincount(labels[idx].numpy(), minlength=len(counts)) / len(idx)


@pytest.mark.parametrize(("r", "semantics"), [(1.0, "per_sample"), (0.5, "per_sample"), (2.0, "per_sample"),
                                              (0.0, "per_sample"), (1.0, "per_class"), (0.5, "per_class")])
def test_foreground_class_histogram(r: float, semantics: str) -> None:
    counts = exp_profile(500, 10, 100)
    n = np.array(counts, dtype=float)
    # code: per-sample weight n_k^-r -> class probability n_k^(1-r); paper Eq. 2: class prob n_k^-r
    expected = n ** (1 - r) if semantics == "per_sample" else n ** (-r)
    expected /= expected.sum()
    hist = _class_hist("q", counts, r, semantics)
    assert np.abs(hist - expected).max() < 0.01, (hist, expected)


def test_cmo_foreground_is_class_balanced_and_cutmix_is_not() -> None:
    counts = exp_profile(500, 10, 100)
    q = _class_hist(mixers.get("cmo").foreground, counts)
    p = _class_hist(mixers.get("cutmix").foreground, counts)
    assert np.abs(q - 0.1).max() < 0.01
    assert np.abs(p - np.array(counts) / sum(counts)).max() < 0.01
    bg = _class_hist(mixers.get("cmo").background, counts, draws=1)
    assert bg.tolist() == (np.array(counts) / sum(counts)).tolist()  # a permutation: each image once
