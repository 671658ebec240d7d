"""Packed training: K runs that differ only in seed trained together as one grouped-convolution network.

Each member keeps what makes it its own run: initial weights (torch's seed), data order, augmentation and
mixing draws (its own generators), labels, BatchNorm statistics (its own channels), loss and gradient (the
packed loss is the sum of the members' losses), momentum buffers, checkpoint and result. A member's
checkpoint has the format of an unpacked run's, so a run can resume packed or alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from benchmark.backbones.resnet_cifar import ResNetCifar
from benchmark.checkpoint import TrainState, load_checkpoint, save_checkpoint
from benchmark.data.base import LTData
from benchmark.data.pipeline import host_to_device
from benchmark.methods.losses import mixed_loss
from benchmark.methods.mixers import MixContext
from benchmark.metrics import summarize
from benchmark.packed import HEAD_KEYS, PackedResNetCifar, unpack_state
from benchmark.settings import RunSettings
from benchmark.step import Execution, TrainStep, autocast_of, make_sgd, resolve_execution
from benchmark.train import (
    FitResult,
    NonFiniteLossError,
    Preempted,
    build_model,
    build_parts,
    device_name,
    make_source,
    resolve_device,
    reweight_epoch_of,
    step_batch,
    steps_per_epoch,
    stop_requested,
    time_per_batch,
)

_UNPACKABLE_DATA = ("imagenet_lt", "inat2018")  # decoded from files through DataLoader workers


def pack_blocker(s: RunSettings) -> str | None:
    """Why a run cannot be trained in a pack (None: it can)."""
    from benchmark.methods.losses import losses

    if not s.backbone.name.endswith("_cifar") or s.backbone.name.startswith("ride"):
        return f"backbone {s.backbone.name} (packs hold CIFAR ResNets)"
    if s.data.name in _UNPACKABLE_DATA or s.train.pipeline != "tensor":
        return "data not on the device (file dataset or reference pipeline)"
    if s.stage2 is not None:
        return "two-stage run"
    if s.method.mixer == "remix":
        return "per-sample mixing weights (remix)"
    if s.method.loss == "ride" or losses.get(s.method.loss).backbones:
        return f"loss {s.method.loss}"
    return None


@dataclass
class Member:
    """One run of the pack: its settings, generators, loop state and where its checkpoint goes."""

    s: RunSettings
    run_id: str
    checkpoint: Path | None
    hook: Callable[[dict[str, Any]], None] | None
    gen: torch.Generator
    rng: np.random.Generator
    st: TrainState = field(default_factory=TrainState)
    error: Exception | None = None
    batches: Iterator[Any] = field(default_factory=lambda: iter(()))
    fg_batches: Iterator[Any] | None = None
    mixed: int = 0


def fit_packed(settings: list[RunSettings], data: LTData,
               on_epoch: list[Callable[[dict[str, Any]], None] | None] | None = None,
               checkpoints: list[Path | None] | None = None, run_ids: list[str] | None = None
               ) -> list[FitResult | Exception]:
    """Train K runs of one configuration (seeds differ) in one packed network; one result (or error) per run.

    Randomness per member is drawn exactly as `fit` draws it for that seed, so a member follows the same
    trajectory as its unpacked run up to floating-point differences of grouped vs. plain convolutions.
    """
    t0 = time.time()
    k, s0 = len(settings), settings[0]
    if len({s.config_hash() for s in settings}) != 1:
        raise ValueError("a pack holds runs that differ only in seed")
    blocker = pack_blocker(s0)
    if blocker:
        raise ValueError(f"cannot pack these runs: {blocker}")
    device = resolve_device(s0.train.device)
    data = data.limit_test(s0.eval.test_limit_per_class)
    source = make_source(s0, data, device)
    ex = resolve_execution(s0.train.precision, s0.train.channels_last, s0.train.cuda_graph, device,
                           compile=s0.train.compile)
    run_ids = run_ids or [f"pack-{i}" for i in range(k)]
    members, models = [], []
    for i, s in enumerate(settings):  # the same draws as fit() makes for this seed
        torch.manual_seed(s.seed)
        gen = torch.Generator(device).manual_seed(s.seed)
        models.append(build_model(s, data.num_classes))
        members.append(Member(s, run_ids[i], (checkpoints or [None] * k)[i], (on_epoch or [None] * k)[i], gen,
                              np.random.default_rng(s.seed)))
    p = build_parts(s0, data, source.labels, device, reweight_epoch_of(s0, data))  # shared: loss, rule, samplers
    template = models[0]
    resumed = [_load_member(m, models[i], s0) for i, m in enumerate(members)]
    if len({m.st.epoch for m in members}) != 1:
        raise ValueError(f"pack members are at different epochs {[m.st.epoch for m in members]}; run them alone")
    packed = PackedResNetCifar.from_models(models).to(device)
    if ex.channels_last:
        packed = packed.to(memory_format=torch.channels_last)
    optimizer = make_sgd(packed.parameters(), ex, s0.train.lr, s0.train.momentum, s0.train.weight_decay,
                         s0.train.nesterov)
    if any(resumed):
        _pack_momentum(packed, optimizer, [r for r in resumed if r is not None], k)

    def loss_fn(out: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None, lam: Any,
                w: torch.Tensor | None) -> torch.Tensor:
        yb = y_a if y_b is None else y_b
        return torch.stack([mixed_loss(p.criterion, out[j], y_a[j], yb[j], lam[j], w) for j in range(k)])

    step = TrainStep(packed.forward_flat, loss_fn, optimizer, ex, device, data.num_classes)
    epochs, bs, n = s0.train.epochs, s0.train.batch_size, len(source.labels)
    steps = steps_per_epoch(n, bs, s0.train.steps_per_epoch)
    minority = torch.ones(data.num_classes, dtype=torch.bool, device=device)
    minority[list(p.groups.many)] = False
    mix_ctx = MixContext(s0.mixer.alpha, torch.tensor(data.class_counts, device=device), minority, data.mean,
                         data.std)
    for epoch in range(members[0].st.epoch, epochs):
        te = time.time()
        lr = s0.train.lr * p.lr_factor(epoch)
        for g in optimizer.param_groups:
            g["lr"] = lr
        w = p.rule(epoch)
        w = w.to(device) if w is not None else None
        active = p.mixer.active(epoch, epochs, s0.mixer.start, s0.mixer.end)
        self_mix = active and p.mixer.foreground == "self"
        for m in members:  # the order of draws of fit(): foreground epoch first, then the background epoch
            fg_order = p.foreground.epoch(m.gen) if active and p.foreground is not None else None
            m.fg_batches = source.batches(fg_order, bs, steps, m.gen) if fg_order is not None else None
            m.batches = source.batches(p.background.epoch(m.gen), bs, steps, m.gen)
            m.mixed = 0
        loss_sum = torch.zeros(k, device=device)
        correct = torch.zeros(k, device=device)
        seen = 0
        for _ in range(steps):
            if stop_requested():
                raise Preempted(f"stopped during epoch {epoch}; {epoch} epochs are checkpointed")
            xs, ya, yb, lams = [], [], [], []
            for m in members:
                x, y, mx = step_batch(next(m.batches), m.fg_batches, p, s0.mixer.prob, self_mix, m.rng, mix_ctx)
                if mx is not None:
                    xs.append(mx.x), ya.append(mx.y_a), yb.append(mx.y_b), lams.append(float(mx.lam))
                    m.mixed += 1
                else:
                    xs.append(x), ya.append(y), yb.append(y), lams.append(1.0)
            y_a = torch.stack(ya)
            lam = host_to_device(torch.tensor(lams, dtype=torch.float32), device)
            out, loss = step(packed.pack_input(torch.stack(xs)), y_a, torch.stack(yb), lam, w)
            loss_sum += loss * y_a.shape[1]
            correct += (out.detach().argmax(-1) == y_a).sum(1)
            seen += y_a.shape[1]
        losses_epoch = (loss_sum / seen).tolist()  # the epoch's one host sync
        acc_epoch = (100.0 * correct / seen).tolist()
        train_s = time.time() - te
        evals = evaluate_packed(packed, source, data.num_classes, p.groups, ex)
        member_states = [_member_state(packed, optimizer, template, j) for j in range(k)] \
            if any(m.checkpoint for m in members) else []
        for j, m in enumerate(members):
            if m.error is None and not math.isfinite(losses_epoch[j]):
                m.error = NonFiniteLossError(f"non-finite training loss at epoch {epoch}")
            if m.error is not None:
                continue
            metrics, pc = evals[j]
            m.st.record(epoch, metrics, pc)
            row = {"epoch": epoch, "lr": lr, "train/loss": losses_epoch[j], "train/acc": acc_epoch[j],
                   "train/mixed_frac": m.mixed / steps, "mixer_active": active,
                   **{f"test/{key}": v for key, v in metrics.items()}, "train/time_per_batch_s": train_s / steps,
                   "epoch_time_s": time.time() - te}
            m.st.curve.append(row)
            m.st.epoch = epoch + 1
            if m.checkpoint is not None:
                model_sd, opt_sd = member_states[j]
                parts = SimpleNamespace(model=_StateOnly(model_sd), optimizer=_StateOnly(opt_sd))
                save_checkpoint(m.checkpoint, m.run_id, m.st, parts, m.gen, m.rng)
            if m.hook is not None:
                m.hook(row)

    info = {**step.info(), "pack_size": k, "pack_runs": run_ids}
    finals = packed.to_models()
    results: list[FitResult | Exception] = []
    for j, m in enumerate(members):
        if m.error is not None:
            results.append(m.error)
            continue
        timing = {"time/batch_s": time_per_batch(m.st.curve, m.s)}
        results.append(FitResult(
            last={**m.st.last, **timing}, best={**m.st.best, **timing}, best_epoch=m.st.best_epoch,
            per_class_last=m.st.pc_last, per_class_best=m.st.pc_best, curve=m.st.curve,
            wall_time_s=time.time() - t0, device=device_name(device),
            num_params=sum(q.numel() for q in template.parameters()), class_counts=data.class_counts,
            groups=p.groups.sizes(), model=finals[j], execution=info))
    return results


@torch.no_grad()
def evaluate_packed(packed: PackedResNetCifar, source: Any, num_classes: int, groups: Any,
                    ex: Execution) -> list[tuple[dict[str, float | None], list[float]]]:
    """Every member's metrics on the same test split (the batch repeated once per member)."""
    packed.eval()
    preds, targets = [], []
    autocast = autocast_of(ex, source.labels.device)
    for x, y in source.test_batches():
        xk = x.repeat(1, packed.k, 1, 1)  # member j reads channels j*C..(j+1)*C
        if ex.channels_last:
            xk = xk.contiguous(memory_format=torch.channels_last)
        with autocast():
            preds.append(packed.forward_flat(xk).argmax(-1))
        targets.append(y)
    packed.train()
    pred, target = torch.cat(preds, 1), torch.cat(targets)
    return [summarize(pred[j], target, num_classes, groups) for j in range(packed.k)]


class _StateOnly:
    """Stands in for a module / optimiser whose state dict is already built (member checkpoints)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return self.state


def _member_state(packed: PackedResNetCifar, optimizer: torch.optim.Optimizer, template: ResNetCifar,
                  j: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Member j's model state dict and an SGD state dict in the layout of its unpacked optimiser."""
    buffers = {name: optimizer.state[q]["momentum_buffer"] for name, q in packed.named_parameters()
               if optimizer.state.get(q, {}).get("momentum_buffer") is not None}
    mine = unpack_state(buffers, j, packed.k) if buffers else {}
    names = [name for name, _ in template.named_parameters()]
    group = {key: v for key, v in optimizer.param_groups[0].items() if key != "params"}
    opt_sd = {"state": {i: {"momentum_buffer": mine[name].cpu()} for i, name in enumerate(names) if name in mine},
              "param_groups": [{**group, "params": list(range(len(names)))}]}
    model_sd = {key: v.cpu() for key, v in unpack_state(packed, j).items()}
    return model_sd, opt_sd


def _load_member(m: Member, model: ResNetCifar, s: RunSettings) -> dict[str, torch.Tensor] | None:
    """Resume a member from its checkpoint into `model`; returns its momentum buffers by parameter name."""
    if m.checkpoint is None or not m.checkpoint.is_file():
        return None
    opt = torch.optim.SGD(model.parameters(), lr=s.train.lr, momentum=s.train.momentum)
    m.st = load_checkpoint(m.checkpoint, m.run_id, SimpleNamespace(model=model, optimizer=opt), m.gen, m.rng)
    return {name: opt.state[q]["momentum_buffer"] for name, q in model.named_parameters()
            if opt.state.get(q, {}).get("momentum_buffer") is not None}


def _pack_momentum(packed: PackedResNetCifar, optimizer: torch.optim.Optimizer,
                   buffers: list[dict[str, torch.Tensor]], k: int) -> None:
    """Put the members' momentum buffers into the packed optimiser (concatenated / stacked like the weights)."""
    if len(buffers) != k:
        raise ValueError("either every pack member resumes from a checkpoint or none does")
    for name, q in packed.named_parameters():
        ts = [b[name].to(q.device) for b in buffers]
        t = torch.stack(ts) if name in HEAD_KEYS else torch.cat(ts, dim=0)
        optimizer.state[q] = {"momentum_buffer": t.to(memory_format=torch.channels_last)
                              if t.dim() == 4 and q.is_contiguous(memory_format=torch.channels_last)
                              and not q.is_contiguous() else t.contiguous()}
