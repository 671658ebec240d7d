"""Re-weighting rules: per-epoch class weights for the loss (None = unweighted)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmark.registry import Registry


@dataclass(frozen=True)
class RuleContext:
    """What a rule may know: train class counts and the run length."""

    class_counts: list[int]
    epochs: int
    reweight_epoch: int = 160  # 0-based epoch where deferred re-weighting switches on


Rule = Callable[[int], "torch.Tensor | None"]  # epoch -> class weights or None
rules: Registry[Callable[[RuleContext], Rule]] = Registry("rules")


@rules.register("none", "no re-weighting")
def no_rule(ctx: RuleContext) -> Rule:
    return lambda epoch: None
