"""Method formulas computed by hand on small counts: LDAM, DRW, Balanced Softmax, Remix, samplers, schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.data.profile import exp_profile
from benchmark.data.samplers import SamplerContext, samplers
from benchmark.methods.losses import LossContext, losses, remix_loss
from benchmark.methods.mixers import MixContext, mixers, remix_label_weight, remix_op
from benchmark.methods.rules import RuleContext, rules
from benchmark.methods.schedules import schedules

COUNTS = [100, 10, 1]


def test_ldam_margins_and_value_by_hand() -> None:
    crit = losses.get("ldam").build(LossContext(COUNTS))
    m = [n ** -0.25 for n in COUNTS]
    expected_m = [v * 0.5 / max(m) for v in m]  # 0.1581, 0.2812, 0.5
    assert crit.margins.tolist() == pytest.approx(expected_m, rel=1e-6)
    z = torch.tensor([[0.2, -0.1, 0.4], [0.9, 0.3, -0.5]])
    y = torch.tensor([2, 0])
    rows = []
    for zi, yi in zip(z.tolist(), y.tolist(), strict=True):
        zi = [v - (expected_m[yi] if k == yi else 0.0) for k, v in enumerate(zi)]
        rows.append(-30 * zi[yi] + math.log(sum(math.exp(30 * v) for v in zi)))
    assert crit(z, y).item() == pytest.approx(sum(rows) / 2, rel=1e-5)
    assert losses.get("ldam").head == "cosine"


def test_drw_weights_before_and_after_switch() -> None:
    rule = rules.get("drw")(RuleContext(COUNTS, epochs=200, reweight_epoch=160))
    assert rule(0).tolist() == [1.0, 1.0, 1.0] and rule(159).tolist() == [1.0, 1.0, 1.0]
    beta = 0.9999
    w = [(1 - beta) / (1 - beta ** n) for n in COUNTS]
    w = [v / sum(w) * 3 for v in w]
    assert rule(160).tolist() == pytest.approx(w, rel=1e-5) and rule(199).tolist() == pytest.approx(w, rel=1e-5)
    assert sum(rule(160).tolist()) == pytest.approx(3.0)
    assert rules.get("none")(RuleContext(COUNTS, 200))(180) is None


def test_weighted_ce_divides_by_sum_of_target_weights() -> None:
    crit = losses.get("ce").build(LossContext(COUNTS))
    z, y, w = torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 0]), torch.tensor([0.5, 1.0, 2.0])
    assert crit(z, y, w).item() == pytest.approx(F.cross_entropy(z, y, weight=w).item(), rel=1e-6)


def test_balanced_softmax_is_ce_on_logits_plus_log_prior() -> None:
    crit = losses.get("balanced_softmax").build(LossContext(COUNTS))
    z, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    prior = torch.tensor(COUNTS, dtype=torch.float) / sum(COUNTS)
    assert crit(z, y).item() == pytest.approx(F.cross_entropy(z + prior.log(), y).item(), rel=1e-6)
    assert crit(z, y, torch.tensor([9.0, 1.0, 1.0])).item() == pytest.approx(crit(z, y).item())  # no weights


@pytest.mark.parametrize(("lam", "n_i", "n_j", "expected"), [
    (0.3, 300, 100, 0.0),   # i majority (ratio 3 >= kappa) and its image is the minor part: label -> y_j
    (0.8, 100, 300, 1.0),   # i minority (ratio 1/3) and its image dominates (1 - lam < tau): label -> y_i
    (0.6, 300, 100, 0.6),   # ratio >= kappa but lam >= tau: plain mixup label
    (0.3, 200, 100, 0.3),   # ratio 2 < kappa: plain mixup label
])
def test_remix_label_rule(lam: float, n_i: int, n_j: int, expected: float) -> None:
    out = remix_label_weight(lam, torch.tensor([n_i]), torch.tensor([n_j]))
    assert out.item() == pytest.approx(expected)


def test_remix_op_and_per_sample_loss() -> None:
    counts = torch.tensor([300, 100, 10])
    x, y = torch.randn(6, 3, 4, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    m = remix_op(x, y, x, y, np.random.default_rng(0), MixContext(1.0, counts))
    assert isinstance(m.lam, torch.Tensor) and m.lam.shape == (6,)
    assert sorted(m.y_b.tolist()) == sorted(y.tolist())  # a permutation of the batch
    crit = losses.get("ce").build(LossContext([300, 100, 10]))
    out = torch.randn(6, 3)
    manual = (m.lam * F.cross_entropy(out, m.y_a, reduction="none")
              + (1 - m.lam) * F.cross_entropy(out, m.y_b, reduction="none")).mean()
    assert remix_loss(crit, out, m.y_a, m.y_b, m.lam, None, "per_sample").item() == pytest.approx(manual.item(),
                                                                                     rel=1e-6)


def _hist(name: str, counts: list[int], semantics: str = "per_sample") -> np.ndarray:
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    s = samplers.get(name)(SamplerContext(labels, counts, 1.0, semantics))
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([s.epoch(g) for _ in range(20)])
    return np.bincount(labels[idx].numpy(), minlength=len(counts)) / len(idx)


@pytest.mark.parametrize("semantics", ["per_sample", "per_class"])
def test_effective_number_histogram(semantics: str) -> None:
    counts = exp_profile(500, 10, 100)
    n = np.array(counts, dtype=float)
    beta = (n.sum() - 1) / n.sum()
    inv_e = (1 - beta) / (1 - beta ** n)
    expected = inv_e * n if semantics == "per_sample" else inv_e
    expected /= expected.sum()
    assert np.abs(_hist("effective_number", counts, semantics) - expected).max() < 0.01


def test_ros_is_class_balanced() -> None:
    assert np.abs(_hist("ros", exp_profile(500, 10, 100)) - 0.1).max() < 0.01


@pytest.mark.parametrize(("mixer", "bg_balanced", "fg_balanced"), [
    ("cmo", False, True), ("cutmix", False, False), ("cmo_back", True, False), ("cmo_minor", True, True),
    ("cmo_mixup", False, True)])
def test_streams_draw_from_the_claimed_distributions(mixer: str, bg_balanced: bool, fg_balanced: bool) -> None:
    counts = exp_profile(500, 10, 100)
    p = np.array(counts) / sum(counts)
    spec = mixers.get(mixer)
    for stream, balanced in ((spec.background, bg_balanced), (spec.foreground, fg_balanced)):
        h = _hist(stream, counts)
        assert np.abs(h - (0.1 if balanced else p)).max() < 0.01, (mixer, stream)


STEP_EPOCHS = [0, 4, 5, 159, 160, 161, 179, 180, 199]


@pytest.mark.parametrize(("name", "expected"), [
    ("cifar_step", [0.02, 0.1, 0.1, 0.1, 1e-3, 1e-3, 1e-3, 1e-5, 1e-5]),
    ("imagenet_step", [0.02, 0.1, 0.1, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3]),
    ("inat_step", [0.02, 0.1, 0.1, 0.01, 0.001, 0.001, 0.001, 0.001, 0.001]),
])
def test_step_schedules(name: str, expected: list[float]) -> None:
    f = schedules.get(name)(epochs=200)
    assert [0.1 * f(e) for e in STEP_EPOCHS] == pytest.approx(expected, rel=1e-9)


def test_imagenet_and_inat_switch_points() -> None:
    im, inat = schedules.get("imagenet_step")(epochs=100), schedules.get("inat_step")(epochs=200)
    assert [im(e) for e in (59, 60, 79, 80)] == pytest.approx([1, 0.1, 0.1, 0.01])
    assert [inat(e) for e in (74, 75, 159, 160)] == pytest.approx([1, 0.1, 0.1, 0.01])


def test_paco_step_400() -> None:
    f = schedules.get("paco_step")(epochs=400)
    got = [f(e) for e in (0, 9, 10, 11, 320, 321, 360, 361, 399)]
    assert got == pytest.approx([0.1, 1.0, 1.1, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])  # 1.1 at epoch 10: reference


def test_cosine_warmup_400() -> None:
    f = schedules.get("cosine_warmup")(epochs=400)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 391)))
    assert f(205) == pytest.approx(0.5 * (1 + math.cos(math.pi * 196 / 391)))
    assert f(399) == pytest.approx(0.5 * (1 + math.cos(math.pi * 390 / 391)))


def test_foreground_sampler_override_and_loss_args() -> None:
    from benchmark.config.catalog import load_dataset
    from benchmark.config.suite import SuiteError
    from benchmark.config.validation import check_components
    from benchmark.engine.parts import build_parts
    from benchmark.schema.settings import RunSettings

    s = RunSettings.model_validate({
        "data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 24,
                 "test_per_class": 2, "image_size": 8},
        "backbone": {"name": "ride_resnet32"},
        "method": {"loss": "ride", "mixer": "cmo", "loss_args": {"diversity_factor": -0.2, "reweight_factor": 0.02}},
        "mixer": {"foreground": "effective_number"}, "train": {"device": "cpu"}})
    check_components(s)
    data = load_dataset(s.data)
    labels = torch.from_numpy(data.train_y)
    p = build_parts(s, data, labels, torch.device("cpu"))
    n = torch.tensor(data.class_counts, dtype=torch.float64)
    beta = (n.sum() - 1) / n.sum()
    assert torch.allclose(p.foreground.weights, ((1 - beta) / (1 - beta ** n))[labels])  # E(k), not q(r)
    assert p.criterion.diversity_factor == -0.2
    with pytest.raises(SuiteError, match="method.loss_args: 'diversity_factor' is not an option of loss 'ce'"):
        check_components(s.model_copy(update={"method": s.method.model_copy(update={"loss": "ce"}),
                                              "backbone": s.backbone.model_copy(update={"name": "resnet32_cifar"})}))
    with pytest.raises(SuiteError, match="has no foreground stream"):
        check_components(s.model_copy(update={"method": s.method.model_copy(update={"mixer": "remix"})}))
