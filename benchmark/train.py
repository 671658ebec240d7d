"""The training loop: one run from resolved settings and an in-memory dataset to metrics (no files, no W&B)."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark import distributed
from benchmark.backbones import build_backbone
from benchmark.checkpoint import TrainState, load_checkpoint, save_checkpoint
from benchmark.data.base import LTData
from benchmark.data.profile import ShotGroups, shot_groups
from benchmark.data.samplers import Sampler, SamplerContext, samplers
from benchmark.data.sources import LoaderSource, TensorSource
from benchmark.methods.losses import LossContext, logits_of, losses, mixed_loss
from benchmark.methods.mixers import MixContext, Mixed, MixerSpec, mixers
from benchmark.methods.rules import Rule, RuleContext, rules
from benchmark.methods.schedules import schedules
from benchmark.metrics import summarize
from benchmark.settings import RunSettings
from benchmark.step import Execution, TrainStep, autocast_of, make_sgd, resolve_execution

Source = TensorSource | LoaderSource


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class Preempted(Exception):
    """A stop was requested (SIGTERM, e.g. Slurm pre-emption); the run resumes from its last epoch checkpoint."""


_STOP = threading.Event()


def request_stop() -> None:
    """Ask the running loop to stop at the next step (signal-handler safe)."""
    _STOP.set()


def stop_requested() -> bool:
    """True once after request_stop(): the loop that asks raises Preempted."""
    if _STOP.is_set():
        _STOP.clear()
        return True
    return False


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
    execution: dict[str, Any] = field(default_factory=dict)  # precision, layout, CUDA graph, optimiser actually used
    model: nn.Module | None = None  # the trained model (the runner keeps its weights for second stages)


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


def build_model(s: RunSettings, num_classes: int) -> nn.Module:
    """The run's backbone with the classifier head its loss needs (LDAM: the cosine classifier)."""
    head = {"cosine_head": True} if losses.get(s.method.loss).head == "cosine" else {}
    return build_backbone(s.backbone.name, num_classes, num_experts=s.backbone.num_experts, **head)


def build_parts(s: RunSettings, data: LTData, labels: torch.Tensor, device: torch.device,
                reweight_epoch: int, ex: Execution | None = None) -> Parts:
    """Compose model, optimiser, schedule, loss, rule, mixer and samplers from the registries."""
    counts = data.class_counts
    loss_def = losses.get(s.method.loss)
    ex = ex or resolve_execution("fp32", False, False, torch.device("cpu"))
    model = build_model(s, data.num_classes).to(device)
    if ex.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Weight decay on every parameter, BN and biases included; plain momentum (no Nesterov) by default.
    optimizer = make_sgd(model.parameters(), ex, s.train.lr, s.train.momentum, s.train.weight_decay,
                         s.train.nesterov)
    lr_factor = schedules.get(s.train.schedule)(epochs=s.train.epochs, warmup_epochs=s.train.warmup_epochs,
                                                milestones=s.train.milestones, gamma=s.train.gamma)
    mixer = mixers.get(s.method.mixer)
    sctx = SamplerContext(labels, counts, s.mixer.fg_power, s.mixer.q_semantics)
    bg_name = s.train.sampler if mixer.background == "instance" else mixer.background
    return Parts(
        model=model, optimizer=optimizer, lr_factor=lr_factor,
        criterion=loss_def.build(LossContext(counts, s.train.epochs, reweight_epoch), **(s.method.loss_args or {}))
        .to(device),
        rule=rules.get(s.method.rule)(RuleContext(counts, s.train.epochs, reweight_epoch)),
        mixer=mixer,
        background=samplers.get(bg_name)(sctx),
        foreground=samplers.get(s.mixer.foreground or mixer.foreground)(sctx)
        if mixer.foreground not in (None, "self") else None,
        groups=shot_groups(counts, s.eval.many_above, s.eval.few_below),
    )


@torch.no_grad()
def evaluate(model: nn.Module, source: Source, num_classes: int, groups: ShotGroups,
             ex: Execution | None = None) -> tuple[dict[str, float | None], list[float]]:
    """Top-1, many/medium/few and per-class accuracy on the (balanced) test split (in the run's precision)."""
    model.eval()
    preds, targets = [], []
    autocast = autocast_of(ex, source.labels.device) if ex is not None else contextlib.nullcontext
    for x, y in source.test_batches():
        if ex is not None and ex.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            preds.append(logits_of(model(x)).argmax(1))
        targets.append(y)
    model.train()
    return summarize(torch.cat(preds), torch.cat(targets), num_classes, groups)


def make_source(s: RunSettings, data: Any, device: torch.device) -> Source:
    """File datasets and the reference pipeline go through DataLoader workers; in-memory splits stay on the device."""
    if hasattr(data, "datasets"):  # FileLTData: images decoded from disk with the reference transforms
        train_t, test_t = data.transforms()
        if s.train.augment == "imagenet_strong":
            from benchmark.data.strong_augment import ImagenetStrongTransform

            train_t = ImagenetStrongTransform(data.image_size, data.mean, data.std)
        train_set, test_set = data.datasets(train_t, test_t)
        return LoaderSource(train_set, test_set, data.train_y, device, s.train.workers)
    if s.train.pipeline == "reference":
        return LoaderSource.for_arrays(data, device, s.train.workers)
    return TensorSource(data, s.train.augment, device)


def fit(s: RunSettings, data: LTData, on_epoch: Callable[[dict[str, Any]], None] | None = None,
        checkpoint: Path | None = None, run_id: str = "") -> FitResult:
    """Train one run and evaluate on the test split after every epoch.

    Randomness: torch's global seed for initialisation, a torch generator for data order and
    augmentation, a NumPy generator for the per-batch mixing draws (coin, lambda, box). With a
    `checkpoint` path, the full state is saved after every epoch and a run resumes from it.
    """
    t0 = time.time()
    device, rank, world = distributed.setup(resolve_device(s.train.device))
    torch.manual_seed(s.seed)  # the same initial weights on every rank
    gen = torch.Generator(device).manual_seed(s.seed)  # data order and mixing draws: identical on every rank
    aug_gen = gen if world == 1 else torch.Generator(device).manual_seed(s.seed + 7919 * (rank + 1))
    shard = (rank, world)
    rng = np.random.default_rng(s.seed)
    data = data.limit_test(s.eval.test_limit_per_class)
    source = make_source(s, data, device)
    ex = resolve_execution(s.train.precision, s.train.channels_last, s.train.cuda_graph, device, world,
                           compile=s.train.compile)
    p = build_parts(s, data, source.labels, device, reweight_epoch_of(s, data), ex)
    if hasattr(p.criterion, "set_epoch"):  # per-epoch Python state cannot live in a captured graph
        ex = resolve_execution(s.train.precision, s.train.channels_last, s.train.cuda_graph, device, world,
                               graph_safe=False, compile=s.train.compile)
    epochs, bs, n = s.train.epochs, s.train.batch_size, len(source.labels)
    steps = steps_per_epoch(n, bs, s.train.steps_per_epoch)
    minority = torch.ones(data.num_classes, dtype=torch.bool, device=device)
    minority[list(p.groups.many)] = False
    mix_ctx = MixContext(s.mixer.alpha, torch.tensor(data.class_counts, device=device), minority, data.mean, data.std)
    st = TrainState()
    if checkpoint is not None and checkpoint.is_file():
        st = load_checkpoint(checkpoint, run_id, p, gen, rng)
    model = p.model
    if world > 1:  # gradients averaged over ranks; BN statistics per rank, as the reference's DataParallel
        from torch.nn.parallel import DistributedDataParallel

        p.model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def loss_fn(out: Any, y_a: torch.Tensor, y_b: torch.Tensor | None, lam: Any,
                w: torch.Tensor | None) -> torch.Tensor:
        return p.criterion(out, y_a, w) if y_b is None else mixed_loss(p.criterion, out, y_a, y_b, lam, w)

    step = TrainStep(p.model, loss_fn, p.optimizer, ex, device, data.num_classes)

    for epoch in range(st.epoch, epochs):
        te = time.time()
        lr = s.train.lr * p.lr_factor(epoch)
        for g in p.optimizer.param_groups:
            g["lr"] = lr
        class_weight = p.rule(epoch)
        class_weight = class_weight.to(device) if class_weight is not None else None
        if hasattr(p.criterion, "set_epoch"):  # losses with their own per-epoch state (e.g. RIDE's temperature)
            p.criterion.set_epoch(epoch)
        active = p.mixer.active(epoch, epochs, s.mixer.start, s.mixer.end)
        fg_order = p.foreground.epoch(gen) if active and p.foreground is not None else None
        fg_batches = source.batches(fg_order, bs, steps, aug_gen, shard) if fg_order is not None else None
        self_mix = active and p.mixer.foreground == "self"
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen, mixed = 0, 0
        for batch in source.batches(p.background.epoch(gen), bs, steps, aug_gen, shard):
            if stop_requested():
                raise Preempted(f"stopped during epoch {epoch}; {epoch} epochs are checkpointed")
            x, y, m = step_batch(batch, fg_batches, p, s.mixer.prob, self_mix, rng, mix_ctx)
            if m is not None:
                out, loss = step(m.x, m.y_a, m.y_b, m.lam, class_weight)
                mixed += 1
            else:
                out, loss = step(x, y, None, None, class_weight)
            loss_sum += loss * len(y)
            correct += (logits_of(out).detach()[: len(y)].argmax(1) == y).sum()  # vs the background labels
            seen += len(y)
        train_loss = distributed.mean((loss_sum / seen).item(), device)  # the epoch's one host sync
        train_s = time.time() - te
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(f"non-finite training loss at epoch {epoch}")
        metrics, pc = evaluate(p.model, source, data.num_classes, p.groups, ex)
        st.record(epoch, metrics, pc)
        row = {"epoch": epoch, "lr": lr, "train/loss": train_loss, "train/acc": 100.0 * correct.item() / seen,
               "train/mixed_frac": mixed / steps, "mixer_active": active,
               **{f"test/{k}": v for k, v in metrics.items()}, "train/time_per_batch_s": train_s / steps,
               "epoch_time_s": time.time() - te}
        st.curve.append(row)
        st.epoch = epoch + 1
        if checkpoint is not None and rank == 0:
            save_checkpoint(checkpoint, run_id, st, p, gen, rng)
        if on_epoch is not None and rank == 0:
            on_epoch(row)

    timing = {"time/batch_s": time_per_batch(st.curve, s)}
    return FitResult(
        last={**st.last, **timing}, best={**st.best, **timing}, best_epoch=st.best_epoch,
        per_class_last=st.pc_last, per_class_best=st.pc_best,
        curve=st.curve, wall_time_s=time.time() - t0, device=device_name(device),
        num_params=sum(q.numel() for q in p.model.parameters()), class_counts=data.class_counts,
        groups=p.groups.sizes(), model=model, execution=step.info(),
    )


def step_batch(batch: Callable[[], tuple[torch.Tensor, torch.Tensor]], fg_batches: Iterator[Any] | None, p: Parts,
               prob: float, self_mix: bool, rng: np.random.Generator,
               ctx: MixContext) -> tuple[torch.Tensor, torch.Tensor, Mixed | None]:
    """A step's background batch and, when the step mixes, the mixed batch (None otherwise).

    As the reference: the foreground stream advances every step (its images are drawn only when used) and the
    coin is drawn every step when the mixer has a foreground. `fit` and `fit_packed` share this, so a pack
    member draws exactly what its unpacked run draws.
    """
    x, y = batch()
    fg_batch = next(fg_batches) if fg_batches is not None else None
    coin = rng.random() if p.mixer.foreground is not None else 1.0
    if (fg_batch is not None or self_mix) and p.mixer.op is not None and coin < prob:
        xf, yf = fg_batch() if fg_batch is not None else (x, y)
        return x, y, p.mixer.op(x, y, xf[: len(y)], yf[: len(y)], rng, ctx)
    return x, y, None


def steps_per_epoch(n: int, batch_size: int, cap: int | None) -> int:
    """ceil(n / batch) batches (the last one short, as drop_last=False), capped for smoke runs."""
    steps = math.ceil(n / batch_size)
    return steps if cap is None else min(steps, cap)


def time_per_batch(curve: list[dict[str, Any]], s: RunSettings) -> float:
    """Mean seconds per training batch (data wait + forward / backward / step) over the epochs where CMO would be
    active (the same window for every row, so CE and CE + CMO compare like for like, Table 16); without such
    epochs, every epoch but the first."""
    e = s.train.epochs
    window = [r for r in curve if s.mixer.start < r["epoch"] < e - s.mixer.end]
    rows = window or curve[1:] or curve
    return sum(r["train/time_per_batch_s"] for r in rows) / len(rows)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU and its thread count (stored in records and bench results)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
