"""RIDE loss (frank-xwang/RIDE-LongTailRecognition, model/loss.py): per-expert LDAM-margin CE plus a (negative) KL
diversity term, summed over experts."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.losses import LossContext, LossDef, losses


class RIDELoss(nn.Module):
    """RIDELoss of frank-xwang/RIDE-LongTailRecognition (model/loss.py) on the outputs of a `ride_*` backbone.

    For each expert i with logits z_i (already cosine x s) and the detached ensemble mean z̄:
    base_i = CE(z_i - s * m_y on the target logit, y), class-weighted by `class_weight` (DRW/CB from the rule);
    div_i = lambda_div * T̄² * KL(softmax(z̄ / T) || softmax(z_i / T)), batch-mean KL;
    loss = sum_i (base_i + div_i). T = 1 before the reweight epoch, the class-wise temperature after it.
    RIDE + CMO needs nothing extra: lam * L(out, y_b) + (1 - lam) * L(out, y_f) counts the diversity term twice,
    weighted lam and 1 - lam, as the public RIDE + CMO code (naver-ai/cmo's RIDE branch, after CUDA_LTR).
    """

    def __init__(self, class_counts: list[int], reweight_epoch: int, max_m: float = 0.5, s: float = 30.0,
                 diversity_factor: float = -0.45, reweight_factor: float = 0.05,
                 base_temperature: float = 1.0) -> None:
        super().__init__()
        n = torch.tensor(class_counts, dtype=torch.float64).clamp_min(1.0)  # an empty class gets a finite margin
        m = n.pow(-0.25)
        self.register_buffer("m_list", (m * (max_m / m.max())).float(), persistent=False)
        t = len(class_counts) * (n / n.sum()) * reweight_factor + 1 - reweight_factor
        if not bool((t > 0).all()):
            raise ValueError(f"reweight_factor {reweight_factor} is too large: a class temperature is <= 0")
        self.register_buffer("class_temperature", (t / t.max()).float(), persistent=False)
        self.class_temperature_mean = float((t / t.max()).mean())  # T̄ as a Python float: no device sync per step
        self.s = s
        self.diversity_factor = diversity_factor
        self.base_temperature = base_temperature
        self.reweight_epoch = reweight_epoch
        # 1.0 from the reweight epoch on: a device tensor, so a captured CUDA graph reads each epoch's value.
        self.register_buffer("temperature_on", torch.tensor(float(reweight_epoch <= 0)), persistent=False)

    def set_epoch(self, epoch: int) -> None:
        """Class-wise diversity temperature from the 0-based reweight epoch on (RIDE: 1-based epoch > T)."""
        self.temperature_on.fill_(float(epoch >= self.reweight_epoch))

    def temperature(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The diversity temperature as a [1, C] row (all base_temperature before the switch, the class-wise values
        after it) and its mean T̄ (0-dim), both selected on the device by `temperature_on`."""
        on = self.temperature_on
        t = self.base_temperature * (on * self.class_temperature.view(1, -1) + (1 - on))
        return t, self.base_temperature * (on * self.class_temperature_mean + (1 - on))

    def forward(self, out: Any, target: torch.Tensor, class_weight: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        if not (isinstance(out, dict) and "experts" in out):
            raise TypeError("the RIDE loss needs a multi-expert model output {'logits', 'experts'} (ride_* backbone)")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', not {reduction!r}")
        experts, mean = out["experts"].float(), out["logits"].float()
        margin = (self.s * self.m_list)[target]
        onehot = F.one_hot(target, experts.shape[-1]).to(experts.dtype)
        temp, temp_mean = self.temperature()
        # Class-wise T divides each class column k of both z̄ and z_i by T_k (RIDE's [1, C] broadcast, model/loss.py).
        with torch.no_grad():
            ensemble = F.softmax(mean.detach() / temp, dim=1)
        total = experts.new_zeros(() if reduction == "mean" else target.shape)
        for z in experts:
            base = F.cross_entropy(z - margin[:, None] * onehot, target, reduction="none")
            kl = F.kl_div(F.log_softmax(z / temp, dim=1), ensemble, reduction="none").sum(dim=1)
            div = self.diversity_factor * temp_mean * temp_mean * kl
            if reduction == "none":
                total = total + (base if class_weight is None else base * class_weight[target]) + div
            else:
                w = class_weight[target] if class_weight is not None else torch.ones_like(base)
                total = total + (base * w).sum() / w.sum() + div.mean()
        return total


def build(ctx: LossContext, diversity_factor: float = -0.45, reweight_factor: float = 0.05) -> RIDELoss:
    """RIDELoss with the CIFAR config (lambda_div -0.45, rho 0.05); the temperature switches at ctx.reweight_epoch."""
    return RIDELoss(ctx.class_counts, ctx.reweight_epoch, diversity_factor=diversity_factor,
                    reweight_factor=reweight_factor)


losses.register("ride", "RIDE: per-expert LDAM CE (DRW weights from the rule) + KL diversity (lambda -0.45), "
                        "class-wise temperature after the reweight epoch; needs a ride_* backbone")(
    LossDef(build, head="linear", backbones="ride_*"))
