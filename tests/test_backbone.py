"""ResNet-32 for CIFAR registered into timm: parameter counts of the reference, heads, shortcuts."""

from __future__ import annotations

import pytest
import timm
import torch

import benchmark.backbones  # noqa: F401  (registers resnet32_cifar)
from benchmark.backbones import build_backbone, check_backbone
from benchmark.schema.registry import UnknownComponentError


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_reference_parameter_counts() -> None:
    assert _params(timm.create_model("resnet32_cifar", num_classes=100)) == 470_004
    assert _params(timm.create_model("resnet32_cifar", num_classes=100, cosine_head=True)) == 469_904
    assert _params(timm.create_model("resnet32_cifar", num_classes=10)) == 464_154
    assert _params(timm.create_model("resnet32_cifar", num_classes=0)) == 463_504  # backbone alone


def test_forward_shapes_and_cosine_head() -> None:
    m = build_backbone("resnet32_cifar", 10, cosine_head=True).eval()
    x = torch.randn(3, 3, 32, 32)
    out = m(x)
    assert out.shape == (3, 10) and out.abs().max() <= 1.0 + 1e-6
    feats = m.forward_head(m.forward_features(x), pre_logits=True)
    w = m.fc.weight
    expected = torch.nn.functional.normalize(feats, dim=1) @ torch.nn.functional.normalize(w, dim=0)
    assert torch.allclose(out, expected, atol=1e-6)


def test_option_a_shortcut_pads_channels() -> None:
    m = build_backbone("resnet32_cifar", 10)
    sc = m.layer2[0].shortcut
    x = torch.randn(2, 16, 32, 32)
    y = sc(x)
    assert y.shape == (2, 32, 16, 16)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and y[:, :8].abs().sum() == 0


def test_timm_resnet50_matches_torchvision_init() -> None:
    m = build_backbone("resnet50", 7)
    assert m.fc.out_features == 7 and m.layer1[0].bn3.weight.abs().min() > 0  # zero_init_last=False


def test_ldam_cosine_head_on_timm_resnet() -> None:
    m = build_backbone("resnet50", 7, cosine_head=True).eval()
    out = m(torch.randn(2, 3, 64, 64))
    assert type(m.fc).__name__ == "NormedLinear" and out.shape == (2, 7) and out.abs().max() <= 1 + 1e-6


def test_unknown_backbone() -> None:
    with pytest.raises(UnknownComponentError, match="Did you mean 'resnet32_cifar'"):
        check_backbone("resnet32_cifr")
