"""Re-weighting rules: per-epoch class weights for the loss (None = unweighted)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmark.data.base import LTData
from benchmark.schema.registry import Registry
from benchmark.schema.settings import RunSettings


@dataclass(frozen=True)
class RuleContext:
    """What a rule may know: train class counts and the run length."""

    class_counts: list[int]
    epochs: int
    reweight_epoch: int = 160  # 0-based epoch where deferred re-weighting switches on


Rule = Callable[[int], "torch.Tensor | None"]  # epoch -> class weights or None
rules: Registry[Callable[[RuleContext], Rule]] = Registry("rules")


def reweight_epoch_of(s: RunSettings, data: LTData) -> int:
    """The re-weighting switch epoch: the setting, else the dataset's reference value, else 80% of the run."""
    if s.method.reweight_epoch is not None:
        return s.method.reweight_epoch
    return data.reweight_epoch if data.reweight_epoch is not None else int(0.8 * s.train.epochs)


@rules.register("none", "no re-weighting")
def no_rule(ctx: RuleContext) -> Rule:
    return lambda epoch: None


def class_balanced_weights(class_counts: list[int], beta: float) -> torch.Tensor:
    """Effective-number weights (1 - beta) / (1 - beta^n_k), normalised to sum to the class count."""
    n = torch.tensor(class_counts, dtype=torch.float64)
    w = (1.0 - beta) / (1.0 - beta ** n)
    return (w / w.sum() * len(class_counts)).float()


@rules.register("drw", "deferred re-weighting: class-balanced weights (beta 0.9999) from the reweight epoch on")
def drw(ctx: RuleContext, beta: float = 0.9999) -> Rule:
    ones = torch.ones(len(ctx.class_counts))
    weights = class_balanced_weights(ctx.class_counts, beta)
    # Reference: betas = [0, 0.9999][epoch // 160]; beta 0 gives all-ones weights (plain CE). Unlike the
    # reference, epochs past 2 x the switch keep the weights instead of raising IndexError (400-epoch runs).
    return lambda epoch: weights if epoch >= ctx.reweight_epoch else ones
