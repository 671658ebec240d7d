"""Label-aware smoothing (MiSLAS stage 2): per-class smoothing from a concave function of the class count."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.losses import LossDef, logits_of, losses, weighted_reduce


def las_epsilons(class_counts: list[int], eps_head: float, eps_tail: float) -> torch.Tensor:
    """Concave schedule: eps_k = eps_tail + (eps_head - eps_tail) * sin(pi (n_k - n_min) / (2 (n_max - n_min)))."""
    n = torch.tensor(class_counts, dtype=torch.float64)
    span = float(n.max() - n.min()) or 1.0
    return (eps_tail + (eps_head - eps_tail) * torch.sin(math.pi * (n - n.min()) / (2 * span))).float()


class LabelAwareSmoothing(nn.Module):
    """L = (1 - eps_y) (-log p_y) + eps_y mean_k(-log p_k); head classes are smoothed more than tail classes."""

    def __init__(self, class_counts: list[int], eps_head: float = 0.4, eps_tail: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("eps", las_epsilons(class_counts, eps_head, eps_tail))

    def forward(self, out: Any, target: torch.Tensor, class_weight: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        logp = F.log_softmax(logits_of(out).float(), dim=1)
        eps = self.eps[target]
        per = (1 - eps) * -logp.gather(1, target[:, None]).squeeze(1) + eps * -logp.mean(dim=1)
        return weighted_reduce(per, target, class_weight, reduction)


losses.register("las", "label-aware smoothing (MiSLAS stage 2; eps head 0.4 / tail 0.1, concave in n_k)")(
    LossDef(lambda ctx, eps_head=0.4, eps_tail=0.1: LabelAwareSmoothing(ctx.class_counts, eps_head, eps_tail)))
