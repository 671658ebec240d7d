"""Classification losses behind one interface: criterion(out, target, class_weight, reduction)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.schema.registry import Registry


@dataclass(frozen=True)
class LossContext:
    """What a loss may know about the data and the run: train class counts and the run length."""

    class_counts: list[int]
    epochs: int = 200
    reweight_epoch: int = 160  # 0-based epoch where re-weighting starts (DRW, RIDE's temperature)


@dataclass(frozen=True)
class LossDef:
    """A registered loss: its factory and the classifier head it needs ('linear' or 'cosine'). Whether it can be
    packed or graphed is declared where it is registered (`losses.register(..., graph_safe=...)`)."""

    build: Callable[[LossContext], nn.Module]
    head: str = "linear"
    backbones: str | None = None  # fnmatch pattern of backbones it works with (None: any)


def logits_of(out: Any) -> torch.Tensor:
    """Model outputs are a logits tensor, or a dict with 'logits' (multi-expert models add 'experts')."""
    return out["logits"] if isinstance(out, dict) else out


def weighted_reduce(per_sample: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None,
                    reduction: str) -> torch.Tensor:
    """Apply class weights per sample; 'mean' divides by the sum of target weights (PyTorch CE), 'none' keeps
    the weighted per-sample losses."""
    if class_weight is None:
        return per_sample.mean() if reduction == "mean" else per_sample
    w = class_weight[target]
    return (per_sample * w).sum() / w.sum() if reduction == "mean" else per_sample * w


class CrossEntropy(nn.Module):
    """Cross-entropy, optionally class-weighted (DRW)."""

    def forward(self, out: Any, target: torch.Tensor, class_weight: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        per = F.cross_entropy(logits_of(out).float(), target, reduction="none")
        return weighted_reduce(per, target, class_weight, reduction)


losses: Registry[LossDef] = Registry("losses")
losses.register("ce", "cross-entropy (class-weighted when a rule such as DRW gives weights)")(
    LossDef(lambda ctx: CrossEntropy()))


def mixed_loss(criterion: nn.Module, out: Any, y_a: torch.Tensor, y_b: torch.Tensor, lam: float | torch.Tensor,
               class_weight: torch.Tensor | None) -> torch.Tensor:
    """lam * L(y_a) + (1 - lam) * L(y_b): CMO's two mean-reduced terms for one lam (a float or a 0-dim tensor, as
    CUDA-graph inputs are); per-sample label weights go through `remix_loss`."""
    return lam * criterion(out, y_a, class_weight) + (1 - lam) * criterion(out, y_b, class_weight)


def step_loss(criterion: nn.Module, out: Any, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor,
              mixed: torch.Tensor, class_weight: torch.Tensor, per_sample: str | None) -> torch.Tensor:
    """One run's loss in a training step, with fixed tensor shapes (the same code eager and in a CUDA graph).

    `lam` holds one label weight per sample. For a batch-level mixer (CMO, CutMix, Mixup; `per_sample` None) every
    entry is the batch's lam and the loss is CMO's two-term form; a plain batch is lam = 1, y_b = y_a. For a
    per-sample mixer (Remix) the loss is `remix_loss` in the given label form on mixed steps (`mixed` = 1) and the
    plain loss otherwise. Class weights of ones give the unweighted loss's values.
    """
    if per_sample is not None:
        mix = remix_loss(criterion, out, y_a, y_b, lam, class_weight, per_sample)
        return torch.where(mixed > 0, mix, criterion(out, y_a, class_weight))
    return mixed_loss(criterion, out, y_a, y_b, lam[0], class_weight)


def remix_loss(criterion: nn.Module, out: Any, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor,
               class_weight: torch.Tensor | None, form: str) -> torch.Tensor:
    """Remix's loss for per-sample label weights `lam`, normalised by the sum of the class weights (as PyTorch's
    weighted cross-entropy and CMO's loss; the batch size when unweighted).

    'batch' (BagofTricks-LT's code): the label weights' batch mean weights the two weighted-mean losses,
    mean(lam) L(y_a) + (1 - mean(lam)) L(y_b). 'per_sample' (the Remix paper): per-sample mixtures,
    sum_i [lam_i w_a,i l_a,i + (1 - lam_i) w_b,i l_b,i] / sum_i [lam_i w_a,i + (1 - lam_i) w_b,i].
    """
    if form == "batch":
        return mixed_loss(criterion, out, y_a, y_b, lam.mean(), class_weight)
    if form != "per_sample":
        raise ValueError(f"Remix label form must be 'batch' or 'per_sample', not {form!r}")
    per = lam * criterion(out, y_a, class_weight, "none") + (1 - lam) * criterion(out, y_b, class_weight, "none")
    if class_weight is None:
        return per.mean()
    return per.sum() / (lam * class_weight[y_a] + (1 - lam) * class_weight[y_b]).sum()


class LDAMLoss(nn.Module):
    """LDAM: subtract m_y = C / n_y^(1/4) (max margin 0.5) from the target cosine score, scale by s = 30, CE."""

    def __init__(self, class_counts: list[int], max_m: float = 0.5, s: float = 30.0) -> None:
        super().__init__()
        m = 1.0 / torch.tensor(class_counts, dtype=torch.float64).pow(0.25)
        self.register_buffer("margins", (m * (max_m / m.max())).float())
        self.s = s

    def forward(self, out: Any, target: torch.Tensor, class_weight: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        z = logits_of(out).float()
        z = z - F.one_hot(target, z.shape[1]) * self.margins[target].unsqueeze(1)
        per = F.cross_entropy(self.s * z, target, reduction="none")
        return weighted_reduce(per, target, class_weight, reduction)


class BalancedSoftmax(nn.Module):
    """Balanced Softmax: CE on logits + log prior (n_k / N); ignores class weights, as the reference."""

    def __init__(self, class_counts: list[int]) -> None:
        super().__init__()
        n = torch.tensor(class_counts, dtype=torch.float64)
        self.register_buffer("log_prior", (n / n.sum()).log().float())

    def forward(self, out: Any, target: torch.Tensor, class_weight: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        per = F.cross_entropy(logits_of(out).float() + self.log_prior, target, reduction="none")
        return per.mean() if reduction == "mean" else per


losses.register("ldam", "LDAM: label-distribution-aware margins (max 0.5, s 30) on the cosine classifier")(
    LossDef(lambda ctx, max_m=0.5, s=30.0: LDAMLoss(ctx.class_counts, max_m, s), head="cosine"))
losses.register("balanced_softmax", "Balanced Softmax: CE on logits + log class prior (no re-weighting)")(
    LossDef(lambda ctx: BalancedSoftmax(ctx.class_counts)))
