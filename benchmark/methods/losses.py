"""Classification losses: each returns per-sample losses; weighted reduction follows PyTorch's CE."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import Registry


@dataclass(frozen=True)
class LossContext:
    """What a loss may know about the data: train class counts."""

    class_counts: list[int]


losses: Registry[Callable[[LossContext], nn.Module]] = Registry("losses")


class CrossEntropy(nn.Module):
    """Plain cross-entropy, reduction='none'."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, reduction="none")


@losses.register("ce", "cross-entropy (optionally class-weighted by a rule such as DRW)")
def ce(ctx: LossContext) -> nn.Module:
    return CrossEntropy()


def reduce_loss(per_sample: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over the batch; with class weights, divide by the sum of the target weights (PyTorch CE)."""
    if class_weight is None:
        return per_sample.mean()
    w = class_weight[target]
    return (per_sample * w).sum() / w.sum()
