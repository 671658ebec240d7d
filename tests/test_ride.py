"""RIDE: multi-expert ResNet-32/50 in timm (counts, shapes, cosine x30 experts), RIDELoss vs hand computation."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F

import benchmark.backbones  # noqa: F401  (registers the ride_* models)
from benchmark.backbones import build_backbone
from benchmark.config.catalog import load_dataset
from benchmark.config.suite import SuiteError
from benchmark.config.validation import check_components
from benchmark.engine.loop import fit
from benchmark.methods.losses import LossContext, losses, remix_loss
from benchmark.methods.ride_loss import RIDELoss
from benchmark.schema.settings import RunSettings

COUNTS = [100, 10, 1]


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(("experts", "c100", "c10", "features"), [(3, 783_856, 770_896, 769_456),
                                                                    (4, 1_037_200, 1_019_920, 1_018_000)])
def test_ride_resnet32_counts_and_shapes(experts: int, c100: int, c10: int, features: int) -> None:
    # shared 23,824 (stem + stage 1) + per expert 50,592 (stage 2) + 197,952 (stage 3) + 48 x C (cosine head)
    assert _params(timm.create_model("ride_resnet32", num_classes=100, num_experts=experts)) == c100
    assert _params(timm.create_model("ride_resnet32", num_classes=10, num_experts=experts)) == c10
    m0 = timm.create_model("ride_resnet32", num_classes=0, num_experts=experts)
    assert _params(m0) == features and m0.num_features == 48 * experts
    m = build_backbone("ride_resnet32", 10, num_experts=experts)
    for train in (True, False):
        out = m.train(train)(torch.randn(4, 3, 32, 32))
        assert out["logits"].shape == (4, 10) and out["experts"].shape == (experts, 4, 10)
    assert m0.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 48 * experts)


@pytest.mark.parametrize(("experts", "c1000"), [(3, 43_677_248), (4, 57_754_688)])
def test_ride_resnet50_counts_and_shapes(experts: int, c1000: int) -> None:
    m = timm.create_model("ride_resnet50", num_classes=1000, num_experts=experts)
    assert _params(m) == c1000
    assert m.experts[0][0][0].conv3.out_channels == 768 and m.experts[0][1][-1].conv3.out_channels == 1536
    assert m.experts[0][0][0].conv2.stride == (2, 2)  # v1.5: stride in the 3x3
    m.reset_classifier(5)
    with torch.no_grad():
        out = m.eval()(torch.randn(2, 3, 64, 64))
    assert out["logits"].shape == (2, 5) and out["experts"].shape == (experts, 2, 5)
    assert torch.allclose(out["logits"], out["experts"].mean(0), atol=1e-5)
    assert out["experts"].abs().max() <= 30 + 1e-4


def test_no_reduce_dimension_widths() -> None:
    m = timm.create_model("ride_resnet32", num_classes=10, reduce_dimension=False)
    assert m.experts[0][1][-1].conv2.out_channels == 64 and m.heads[0].weight.shape == (64, 10)
    m = timm.create_model("ride_resnet50", num_classes=10, num_experts=1, reduce_dimension=False)
    assert m.heads[0].weight.shape == (2048, 10)


def test_logits_are_mean_of_30_x_cosine_experts() -> None:
    m = build_backbone("ride_resnet32", 7, num_experts=4).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = m(x)
        feats = m.expert_features_of(m.forward_features(x))
    assert torch.allclose(out["logits"], out["experts"].mean(0), atol=1e-5)
    assert out["experts"].abs().max() <= 30 + 1e-4
    for i, f in enumerate(feats):
        cos = F.normalize(f, dim=1) @ F.normalize(m.heads[i].weight, dim=0)
        assert torch.allclose(out["experts"][i], 30 * cos, atol=1e-4)
    assert not torch.allclose(out["experts"][0], out["experts"][1])  # independent experts


def test_option_a_shortcut_padding() -> None:
    m = build_backbone("ride_resnet32", 10)
    x = torch.randn(2, 16, 8, 8)
    y = m.experts[0][0][0].shortcut(x)
    assert y.shape == (2, 24, 4, 4)
    assert torch.equal(y[:, 4:20], x[:, :, ::2, ::2]) and y[:, :4].abs().sum() == 0 and y[:, 20:].abs().sum() == 0
    x = torch.randn(2, 24, 8, 8)
    y = m.experts[1][1][0].shortcut(x)
    assert y.shape == (2, 48, 4, 4)
    assert torch.equal(y[:, 12:36], x[:, :, ::2, ::2]) and y[:, :12].abs().sum() == 0 and y[:, 36:].abs().sum() == 0


# ---- RIDELoss against an independent pure-Python computation -------------------------------------------------

EXPERTS = [[[2.0, -1.0, 0.5], [0.3, 4.0, -2.0], [-1.0, 0.0, 3.0], [1.0, 1.0, 1.0]],
           [[0.0, 1.5, -0.5], [2.0, 2.0, 0.0], [0.5, -3.0, 1.0], [-2.0, 0.0, 2.5]],
           [[1.0, 0.0, 0.0], [-1.0, 3.0, 1.0], [0.0, 1.0, 2.0], [0.5, 2.0, -1.0]]]
TARGET = [0, 1, 2, 2]


def _out() -> dict[str, torch.Tensor]:
    e = torch.tensor(EXPERTS)
    return {"logits": e.mean(0), "experts": e}


def _log_softmax(z: list[float]) -> list[float]:
    mx = max(z)
    lse = mx + math.log(sum(math.exp(v - mx) for v in z))
    return [v - lse for v in z]


# Margins by hand: m_k = n_k^(-1/4) scaled to max 0.5: 1^(-1/4) = 1 -> 0.5, 10^(-1/4) -> 0.5 / 10^(1/4), ...
M = [0.5 / 100 ** 0.25, 0.5 / 10 ** 0.25, 0.5]
# Class temperatures by hand: t_k = K p_k rho + 1 - rho with K 3, rho 0.05, p = n / 111; T = t / max t.
_T = [3 * n / 111 * 0.05 + 0.95 for n in COUNTS]
TEMP = [t / max(_T) for t in _T]


def _base(z: list[float], y: int) -> float:
    zm = [v - 30 * M[k] if k == y else v for k, v in enumerate(z)]
    return -_log_softmax(zm)[y]


def _kl(zbar: list[float], z: list[float], temp: list[float]) -> float:
    q = _log_softmax([v / t for v, t in zip(zbar, temp, strict=True)])
    p = _log_softmax([v / t for v, t in zip(z, temp, strict=True)])
    return sum(math.exp(a) * (a - b) for a, b in zip(q, p, strict=True))


def _hand(weight: list[float] | None, temp_on: bool, lam: float = -0.45) -> tuple[float, list[float]]:
    """(mean-reduced loss, per-sample losses) of RIDELoss, computed without torch."""
    temp = TEMP if temp_on else [1.0, 1.0, 1.0]
    tbar = sum(temp) / 3
    b = len(TARGET)
    zbar = [[sum(EXPERTS[i][n][k] for i in range(3)) / 3 for k in range(3)] for n in range(b)]
    w = [1.0 if weight is None else weight[y] for y in TARGET]
    mean, per = 0.0, [0.0] * b
    for e in EXPERTS:
        base = [_base(e[n], TARGET[n]) for n in range(b)]
        div = [lam * tbar * tbar * _kl(zbar[n], e[n], temp) for n in range(b)]
        mean += sum(wi * li for wi, li in zip(w, base, strict=True)) / sum(w) + sum(div) / b
        per = [p + wi * li + d for p, wi, li, d in zip(per, w, base, div, strict=True)]
    return mean, per


def test_margins_and_temperatures_by_hand() -> None:
    crit = RIDELoss(COUNTS, reweight_epoch=5)
    assert torch.allclose(crit.m_list, torch.tensor(M))
    assert torch.allclose(crit.class_temperature, torch.tensor(TEMP))
    assert crit.class_temperature.max() == 1.0 and crit.class_temperature[2] < crit.class_temperature[0]


@pytest.mark.parametrize("weight", [None, [0.2, 0.9, 1.9]])
@pytest.mark.parametrize("epoch", [4, 5, 7])
def test_ride_loss_matches_hand_computation(weight: list[float] | None, epoch: int) -> None:
    crit = RIDELoss(COUNTS, reweight_epoch=5)
    crit.set_epoch(epoch)
    temp_on = epoch >= 5  # 0-based: on from the reweight epoch itself
    cw = torch.tensor(weight) if weight is not None else None
    mean, per = _hand(weight, temp_on)
    assert crit(_out(), torch.tensor(TARGET), cw).item() == pytest.approx(mean, rel=1e-5)
    got = crit(_out(), torch.tensor(TARGET), cw, reduction="none")
    assert got.shape == (4,) and got.tolist() == pytest.approx(per, rel=1e-5)


def test_ride_loss_components_isolated() -> None:
    target = torch.tensor(TARGET)
    base_only = RIDELoss(COUNTS, reweight_epoch=0, diversity_factor=0.0)
    assert base_only(_out(), target).item() == pytest.approx(_hand(None, True, lam=0.0)[0], rel=1e-6)
    full = RIDELoss(COUNTS, reweight_epoch=100)
    full.set_epoch(0)
    div = full(_out(), target).item() - base_only(_out(), target).item()
    assert div < 0  # negative lambda: diversity lowers the loss
    assert div == pytest.approx(_hand(None, False)[0] - _hand(None, False, lam=0.0)[0], rel=1e-5)
    assert RIDELoss(COUNTS, reweight_epoch=100).temperature_on.item() == 0.0  # epoch 0 before set_epoch
    assert RIDELoss(COUNTS, reweight_epoch=0).temperature_on.item() == 1.0


def test_ride_loss_registry_and_mixing() -> None:
    d = losses.get("ride")
    assert d.head == "linear" and d.backbones == "ride_*"
    crit = d.build(LossContext(COUNTS, epochs=10, reweight_epoch=8))
    assert crit.diversity_factor == -0.45 and crit.reweight_epoch == 8
    out, ya, yb = _out(), torch.tensor(TARGET), torch.tensor([1, 1, 0, 2])
    lam = torch.tensor([0.3, 1.0, 0.0, 0.5])  # per-sample (Remix) mixing goes through reduction="none"
    per = lam * crit(out, ya, reduction="none") + (1 - lam) * crit(out, yb, reduction="none")
    assert remix_loss(crit, out, ya, yb, lam, None, "per_sample").item() == pytest.approx(per.mean().item())
    assert crit(out, ya, reduction="none").mean().item() == pytest.approx(crit(out, ya).item(), rel=1e-6)
    with pytest.raises(TypeError, match="multi-expert"):
        crit(out["logits"], ya)


def test_gradients_reach_every_expert() -> None:
    torch.manual_seed(0)
    m = build_backbone("ride_resnet32", 3, num_experts=4)
    crit = RIDELoss(COUNTS, reweight_epoch=0)
    loss = crit(m(torch.randn(6, 3, 8, 8)), torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0.5, 1.0, 1.5]))
    loss.backward()
    for i in range(4):
        assert m.experts[i][1][-1].conv2.weight.grad.abs().sum() > 0
        assert m.heads[i].weight.grad.abs().sum() > 0
    assert m.conv1.weight.grad.abs().sum() > 0


def _settings(backbone: str) -> RunSettings:
    return RunSettings.model_validate({
        "data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 24,
                 "test_per_class": 4, "image_size": 8},
        "backbone": {"name": backbone}, "method": {"loss": "ride", "mixer": "cmo"},
        "train": {"epochs": 2, "batch_size": 16, "warmup_epochs": 1, "device": "cpu"},
        "mixer": {"start": -1, "end": 0}})


def test_ride_with_cmo_trains() -> None:
    s = _settings("ride_resnet32")
    check_components(s)
    res = fit(s, load_dataset(s.data))
    assert len(res.curve) == 2 and all(math.isfinite(r["train/loss"]) for r in res.curve)
    assert sum(r["train/mixed_frac"] for r in res.curve) > 0  # CMO batches went through the RIDE loss
    assert res.num_params == _params(build_backbone("ride_resnet32", 4))


def test_ride_loss_needs_a_ride_backbone() -> None:
    with pytest.raises(SuiteError, match="ride_"):
        check_components(_settings("resnet32_cifar"))
