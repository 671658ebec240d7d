"""The training loop: one run from resolved settings and an in-memory dataset to metrics (no files, no W&B)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.backbones import build_backbone
from benchmark.data.augment import Augment, augmentations
from benchmark.data.base import LTData
from benchmark.data.pipeline import eval_batches, to_device_images
from benchmark.data.profile import ShotGroups, shot_groups
from benchmark.data.samplers import Sampler, SamplerContext, samplers
from benchmark.methods.losses import LossContext, logits_of, losses, mixed_loss
from benchmark.methods.mixers import MixContext, MixerSpec, mixers
from benchmark.methods.rules import Rule, RuleContext, rules
from benchmark.methods.schedules import schedules
from benchmark.metrics import summarize
from benchmark.settings import RunSettings


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class FitResult:
    """What a finished run reports: last- and best-epoch metrics, per-class accuracy and the curve."""

    last: dict[str, float | None]
    best: dict[str, float | None]
    best_epoch: int
    per_class_last: list[float]
    per_class_best: list[float]
    curve: list[dict[str, Any]]
    wall_time_s: float
    device: str
    num_params: int
    class_counts: list[int]
    groups: dict[str, int] = field(default_factory=dict)


@dataclass
class Parts:
    """Everything a run trains with, built from the settings by the registries."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr_factor: Callable[[int], float]
    criterion: nn.Module
    rule: Rule
    mixer: MixerSpec
    background: Sampler
    foreground: Sampler | None
    groups: ShotGroups


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def reweight_epoch_of(s: RunSettings, data: LTData) -> int:
    """The re-weighting switch epoch: the setting, else the dataset's reference value, else 80% of the run."""
    if s.method.reweight_epoch is not None:
        return s.method.reweight_epoch
    return data.reweight_epoch if data.reweight_epoch is not None else int(0.8 * s.train.epochs)


def build_parts(s: RunSettings, data: LTData, labels: torch.Tensor, device: torch.device,
                reweight_epoch: int) -> Parts:
    """Compose model, optimiser, schedule, loss, rule, mixer and samplers from the registries."""
    counts = data.class_counts
    loss_def = losses.get(s.method.loss)
    head = {"cosine_head": True} if loss_def.head == "cosine" else {}  # e.g. LDAM needs the cosine classifier
    model = build_backbone(s.backbone.name, data.num_classes, **head).to(device)
    # Weight decay on every parameter, BN and biases included; plain momentum (no Nesterov) by default.
    optimizer = torch.optim.SGD(model.parameters(), lr=s.train.lr, momentum=s.train.momentum,
                                weight_decay=s.train.weight_decay, nesterov=s.train.nesterov)
    lr_factor = schedules.get(s.train.schedule)(epochs=s.train.epochs, warmup_epochs=s.train.warmup_epochs,
                                                milestones=s.train.milestones, gamma=s.train.gamma)
    mixer = mixers.get(s.method.mixer)
    sctx = SamplerContext(labels, counts, s.mixer.fg_power, s.mixer.q_semantics)
    bg_name = s.train.sampler if mixer.background == "instance" else mixer.background
    return Parts(
        model=model, optimizer=optimizer, lr_factor=lr_factor,
        criterion=loss_def.build(LossContext(counts, s.train.epochs, reweight_epoch)).to(device),
        rule=rules.get(s.method.rule)(RuleContext(counts, s.train.epochs, reweight_epoch)),
        mixer=mixer,
        background=samplers.get(bg_name)(sctx),
        foreground=samplers.get(mixer.foreground)(sctx) if mixer.foreground not in (None, "self") else None,
        groups=shot_groups(counts, s.eval.many_above, s.eval.few_below),
    )


@torch.no_grad()
def evaluate(model: nn.Module, aug: Augment, test_x: torch.Tensor, test_y: torch.Tensor,
             num_classes: int, groups: ShotGroups) -> tuple[dict[str, float | None], list[float]]:
    """Top-1, many/medium/few and per-class accuracy on the (balanced) test split."""
    model.eval()
    preds = [logits_of(model(aug.normalize(x))).argmax(1) for x, _ in eval_batches(test_x, test_y, 1000)]
    model.train()
    return summarize(torch.cat(preds), test_y, num_classes, groups)


def fit(s: RunSettings, data: LTData, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train one run and evaluate on the test split after every epoch.

    Randomness: torch's global seed for initialisation, a torch generator for data order and
    augmentation, a NumPy generator for the per-batch mixing draws (coin, lambda, box).
    """
    t0 = time.time()
    device = resolve_device(s.train.device)
    torch.manual_seed(s.seed)
    gen = torch.Generator(device).manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    data = data.limit_test(s.eval.test_limit_per_class)

    train_x, labels = to_device_images(data.train_x, device), torch.from_numpy(data.train_y).to(device)
    test_x, test_y = to_device_images(data.test_x, device), torch.from_numpy(data.test_y).to(device)
    aug = augmentations.get(s.train.augment)(train_x, data.mean, data.std, data.crop_pad)
    reweight_epoch = reweight_epoch_of(s, data)
    p = build_parts(s, data, labels, device, reweight_epoch)
    epochs, bs, n = s.train.epochs, s.train.batch_size, len(labels)
    steps = math.ceil(n / bs) if s.train.steps_per_epoch is None else min(math.ceil(n / bs), s.train.steps_per_epoch)

    minority = torch.ones(data.num_classes, dtype=torch.bool, device=device)
    minority[list(p.groups.many)] = False
    mix_ctx = MixContext(s.mixer.alpha, torch.tensor(data.class_counts, device=device), minority)
    best: dict[str, float | None] = {"acc/all": -1.0}
    best_epoch, pc_best, curve = -1, [], []
    for epoch in range(epochs):
        te = time.time()
        lr = s.train.lr * p.lr_factor(epoch)
        for g in p.optimizer.param_groups:
            g["lr"] = lr
        class_weight = p.rule(epoch)
        class_weight = class_weight.to(device) if class_weight is not None else None
        if hasattr(p.criterion, "set_epoch"):  # losses with their own per-epoch state (e.g. RIDE's temperature)
            p.criterion.set_epoch(epoch)
        active = p.mixer.active(epoch, epochs, s.mixer.start, s.mixer.end)
        bg_order = p.background.epoch(gen)
        fg_order = p.foreground.epoch(gen) if active and p.foreground is not None else None
        self_mix = active and p.mixer.foreground == "self"
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen, mixed = 0, 0
        for step in range(steps):
            idx = bg_order[step * bs:(step + 1) * bs]
            x, y = aug(idx, gen), labels[idx]
            coin = rng.random() if p.mixer.foreground is not None else 1.0  # drawn every step, as the reference
            if (fg_order is not None or self_mix) and p.mixer.op is not None and coin < s.mixer.prob:
                if fg_order is not None:
                    fidx = fg_order[step * bs:(step + 1) * bs][: len(idx)]
                    xf, yf = aug(fidx, gen), labels[fidx]
                else:
                    xf, yf = x, y
                m = p.mixer.op(x, y, xf, yf, rng, mix_ctx)
                out = p.model(m.x)
                loss = mixed_loss(p.criterion, out, m.y_a, m.y_b, m.lam, class_weight)
                mixed += 1
            else:
                out = p.model(x)
                loss = p.criterion(out, y, class_weight)
            p.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            p.optimizer.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits_of(out).detach()[: len(y)].argmax(1) == y).sum()  # vs the background labels
            seen += len(idx)
        train_loss = (loss_sum / seen).item()
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(f"non-finite training loss at epoch {epoch}")
        metrics, pc = evaluate(p.model, aug, test_x, test_y, data.num_classes, p.groups)
        if metrics["acc/all"] > best["acc/all"]:  # strictly better, as the reference's best checkpoint
            best, best_epoch, pc_best = dict(metrics), epoch, pc
        row = {"epoch": epoch, "lr": lr, "train/loss": train_loss, "train/acc": 100.0 * correct.item() / seen,
               "train/mixed_frac": mixed / steps, "mixer_active": active, **{f"test/{k}": v for k, v in
                                                                             metrics.items()},
               "epoch_time_s": time.time() - te}
        curve.append(row)
        if on_epoch is not None:
            on_epoch(row)

    return FitResult(
        last=metrics, best=best, best_epoch=best_epoch, per_class_last=pc, per_class_best=pc_best,
        curve=curve, wall_time_s=time.time() - t0, device=_device_name(device),
        num_params=sum(q.numel() for q in p.model.parameters()), class_counts=data.class_counts,
        groups=p.groups.sizes(),
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
