"""Epoch index samplers: the instance stream P and minority-weighted streams Q (torch generators)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmark.schema.registry import Registry


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler may know: the train labels and class counts, and the q(r) settings."""

    labels: torch.Tensor  # int64 [N], on the training device
    class_counts: list[int]
    fg_power: float = 1.0
    q_semantics: str = "per_sample"


class Sampler:
    """Draws one epoch of N indices: a permutation (weights None) or N draws with replacement."""

    def __init__(self, weights: torch.Tensor | None, n: int) -> None:
        self.weights = weights
        self.n = n

    def epoch(self, gen: torch.Generator) -> torch.Tensor:
        if self.weights is None:
            return torch.randperm(self.n, generator=gen, device=gen.device)
        return torch.multinomial(self.weights, self.n, replacement=True, generator=gen)

    def class_probs(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Probability of drawing each class (for tests and records)."""
        w = torch.ones(self.n, dtype=torch.float64, device=labels.device) if self.weights is None \
            else self.weights.double()
        p = torch.zeros(num_classes, dtype=torch.float64, device=labels.device).index_add_(0, labels, w)
        return p / p.sum()


samplers: Registry[Callable[[SamplerContext], Sampler]] = Registry("samplers")


def per_sample(ctx: SamplerContext, class_weight: torch.Tensor) -> Sampler:
    return Sampler(class_weight.to(ctx.labels.device)[ctx.labels], len(ctx.labels))


@samplers.register("instance", "P: every image once per epoch in random order")
def instance(ctx: SamplerContext) -> Sampler:
    return Sampler(None, len(ctx.labels))


@samplers.register("q", "Q = q(r): per-sample weight (1/n_k)^r (code) or class probability (paper Eq. 2)")
def q_sampler(ctx: SamplerContext) -> Sampler:
    n = torch.tensor(ctx.class_counts, dtype=torch.float64)
    w = n.pow(-ctx.fg_power)
    if ctx.q_semantics == "per_class":  # class k drawn with probability proportional to (1/n_k)^r
        w = w / n.clamp(min=1)
    return per_sample(ctx, w)


@samplers.register("ros", "random over-sampling: N class-balanced draws with replacement (r = 1 per sample)")
def ros(ctx: SamplerContext) -> Sampler:
    return per_sample(ctx, torch.tensor(ctx.class_counts, dtype=torch.float64).pow(-1.0))


@samplers.register("effective_number", "Q from Eq. 3: 1 / E(n_k), E = (1 - beta^n) / (1 - beta), beta = (N-1)/N")
def effective_number(ctx: SamplerContext) -> Sampler:
    n = torch.tensor(ctx.class_counts, dtype=torch.float64)
    beta = (n.sum() - 1) / n.sum()
    w = (1 - beta) / (1 - beta.pow(n))  # 1 / E(k), used in place of n_k^-r
    if ctx.q_semantics == "per_class":
        w = w / n.clamp(min=1)
    return per_sample(ctx, w)


@samplers.register("uniform", "P with replacement: N uniform draws (CutMix's second stream, = q with r=0)")
def uniform(ctx: SamplerContext) -> Sampler:
    return per_sample(ctx, torch.ones(len(ctx.class_counts), dtype=torch.float64))
