"""The Table 8 memory estimate: bytes saved for backward, counted by storage, scaled per image."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.backbones import build_backbone
from benchmark.tools.memory import GIB, estimate, saved_bytes


def test_saved_bytes_count_what_backward_keeps() -> None:
    # Linear(10 -> 20) on x [3, 10] keeps x for the weight gradient: 3 * 10 * 4 bytes; ReLU keeps its output [3, 20]
    assert saved_bytes(nn.Linear(10, 20, bias=False), torch.randn(3, 10)) == 120
    assert saved_bytes(nn.Linear(10, 20, bias=False), torch.randn(6, 10)) == 240
    assert saved_bytes(nn.Sequential(nn.Linear(10, 20, bias=False), nn.ReLU()), torch.randn(3, 10)) == 360


def test_estimate_scales_the_per_image_bytes_and_adds_weights_grads_and_momentum() -> None:
    e = estimate("resnet32_cifar", batch=128, image_size=32, num_classes=100, probe_batch=2)
    params = sum(p.numel() for p in build_backbone("resnet32_cifar", 100).parameters())
    assert e.fixed_bytes == 12 * params == 12 * 470_004  # spec 5.1: 470,004 parameters with the 100-class head
    assert abs(e.total_gib - (e.saved_bytes_per_image * 128 + e.fixed_bytes) / GIB) < 1e-12
    half = estimate("resnet32_cifar", batch=128, image_size=32, num_classes=100, precision="bf16")
    assert 0.4 < half.saved_bytes_per_image / e.saved_bytes_per_image < 0.75  # most saved tensors in bf16
