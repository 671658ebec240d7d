"""The training loop: one epoch loop for a pack of 1..K runs (a run alone is a pack of one); no records, no W&B."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.backbones.group_bn import use_bn_groups
from benchmark.data.base import LTData
from benchmark.data.pipeline import host_to_device
from benchmark.data.sources import build_batches
from benchmark.engine import distributed
from benchmark.engine.checkpoint import TrainState, load_checkpoint, momentum_of, save_checkpoint, sgd_state
from benchmark.engine.evaluation import evaluate
from benchmark.engine.fused import PackNet
from benchmark.engine.parts import (
    Parts,
    Source,
    bn_groups_per_process,
    build_model,
    build_parts,
    capability_blocker,
    make_source,
)
from benchmark.engine.runtime import NonFiniteLossError, Preempted, device_name, resolve_device, stop_requested
from benchmark.engine.step import PackBatch, TrainStep, make_sgd, resolve_execution
from benchmark.engine.timing import EpochClock, timing_summary
from benchmark.methods.losses import step_loss
from benchmark.methods.mixers import MixContext, Mixed
from benchmark.schema.settings import PACK_SHARED_TRAIN, RunSettings

FINISH_EPOCH_S = 30.0  # on a stop request, an epoch expected to end within this many seconds is finished and saved


@dataclass
class Run:
    """One run for the engine: settings, data, and where its checkpoint and per-epoch rows go."""

    settings: RunSettings
    data: LTData
    run_id: str = "run"
    checkpoint: Path | None = None
    on_epoch: Callable[[dict[str, Any]], None] | None = None


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
    execution: dict[str, Any] = field(default_factory=dict)  # precision, layout, CUDA graph, pack actually used
    model: nn.Module | None = None  # the trained model (the runner keeps its weights for second stages)
    timing: dict[str, Any] = field(default_factory=dict)  # data wait vs step time per batch (engine.timing)


@dataclass
class Member:
    """One run inside the loop: its parts, generators, loop state and this epoch's batch streams."""

    run: Run
    data: LTData
    source: Source
    parts: Parts
    model: nn.Module  # its own architecture (the template its results and checkpoints are written in)
    gen: torch.Generator  # data order and augmentation draws
    aug_gen: torch.Generator  # augmentation draws (per rank in a multi-process run)
    rng: np.random.Generator  # mixing draws: coin, lambda, box
    st: TrainState = field(default_factory=TrainState)
    momentum: dict[str, torch.Tensor] | None = None  # from its checkpoint
    error: Exception | None = None
    batches: Iterator[Any] = field(default_factory=lambda: iter(()))
    fg_batches: Iterator[Any] | None = None
    self_mix: bool = False
    active: bool = False
    mixed: int = 0

    @property
    def s(self) -> RunSettings:
        return self.run.settings


def fit(s: RunSettings, data: LTData, on_epoch: Callable[[dict[str, Any]], None] | None = None,
        checkpoint: Path | None = None, run_id: str = "run") -> FitResult:
    """Train one run (a pack of one); a failure is raised."""
    res = train_pack([Run(s, data, run_id, checkpoint, on_epoch)])[0]
    if isinstance(res, Exception):
        raise res
    return res


def train_pack(runs: Sequence[Run]) -> list[FitResult | Exception]:
    """Train K runs together and evaluate each on its test split after every epoch; one result (or error) per run.

    Members share the network's step (one packed network, one CUDA graph), the learning rate and the epoch count;
    everything else is their own: initial weights (torch's seed), data, data order and augmentation (a torch
    generator), mixing draws (a NumPy generator), loss, rule, mixer, samplers, BatchNorm statistics and checkpoint.
    A member therefore follows its unpacked run. A non-finite loss fails only its member. With a checkpoint path,
    a member's state is saved every `train.checkpoint_every_s` (at an epoch end) in the layout of a run alone.
    """
    t0 = time.time()
    s0 = runs[0].settings
    check_pack([r.settings for r in runs])
    device, rank, world = distributed.setup(resolve_device(s0.train.device))
    if world > 1 and len(runs) > 1:
        raise ValueError("a multi-process (DDP) run trains alone, not in a pack")
    sources: dict[tuple[Any, ...], tuple[LTData, Source]] = {}
    members = [_member(r, device, rank, world, sources) for r in runs]
    if len({m.st.epoch for m in members}) != 1:
        raise ValueError(f"pack members are at different epochs {[m.st.epoch for m in members]}; run them alone")
    not_graph_safe = next((b for m in members if (b := capability_blocker(m.s, "graph_safe"))), "")
    ex = resolve_execution(s0.train.precision, s0.train.channels_last, s0.train.cuda_graph, device, world,
                           not_graph_safe, compile=s0.train.compile)
    net = use_bn_groups(PackNet([m.model for m in members], ex.channels_last), bn_groups_per_process(s0, world))
    net = net.to(device)  # (fused trunks build their own BatchNorm layers: grouped too)
    optimizer = make_sgd(net.parameters(), ex, s0.train.lr, s0.train.momentum, s0.train.weight_decay,
                         s0.train.nesterov)
    if any(m.momentum for m in members):
        _load_momentum(net, optimizer, members)
    model: nn.Module = net
    if world > 1:  # gradients averaged over ranks; BN statistics per rank, as the reference's DataParallel
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    def loss_fn(outs: list[Any], b: PackBatch) -> torch.Tensor:
        return torch.stack([step_loss(m.parts.criterion, outs[j], b.y_a[j], b.y_b[j], b.lam[j], b.mixed[j], b.w[j],
                                      m.s.mixer.remix_labels if m.parts.mixer.per_sample_lam else None)
                            for j, m in enumerate(members)])

    step = TrainStep(model, loss_fn, optimizer, ex, device)
    epochs, bs, k = s0.train.epochs, s0.train.batch_size, len(members)
    steps = steps_per_epoch(len(members[0].source.labels), bs, s0.train.steps_per_epoch)
    saved_at, epoch_s = time.time(), None
    for epoch in range(members[0].st.epoch, epochs):
        te = time.time()
        lr = s0.train.lr * members[0].parts.lr_factor(epoch)
        for g in optimizer.param_groups:
            g["lr"] = lr
        w = torch.stack([_begin_epoch(m, epoch, bs, steps, (rank, world)) for m in members]).to(device)
        loss_sum, correct = torch.zeros(k, device=device), torch.zeros(k, device=device)
        seen, stopping, clock = 0, False, EpochClock(steps, device)
        for i in range(steps):
            if stop_requested():  # finish an epoch that ends soon (and save it), else stop now
                if epoch_s is None or epoch_s * (steps - i) / steps > FINISH_EPOCH_S:
                    raise Preempted(f"stopped during epoch {epoch}; the last checkpoint is kept")
                stopping = True
            with clock.fetching():
                batch, n = _pack_batch(members, w, device)
            with clock.stepping():
                loss, hits = step(batch)
            loss_sum += loss * n
            correct += hits
            seen += n
        losses = [distributed.mean(v, device) for v in (loss_sum / seen).tolist()]  # the epoch's one host sync
        accs = (100.0 * correct / seen).tolist()
        timing = clock.row()  # the device has finished the epoch's steps (the loss read-out waited for them)
        train_s = time.time() - te
        distributed.sync_buffers(net)  # every rank evaluates rank 0's model (BN statistics)
        evals = evaluate(net, [(m.source, m.data.num_classes, m.parts.groups) for m in members], ex, (rank, world))
        save = stopping or time.time() - saved_at >= s0.train.checkpoint_every_s
        pack_state = _pack_state(net, optimizer) if save and rank == 0 else None
        for j, m in enumerate(members):
            if m.error is None and not math.isfinite(losses[j]):
                m.error = _raised(NonFiniteLossError(f"non-finite training loss at epoch {epoch}"))
            if m.error is not None:
                continue
            metrics, pc = evals[j]
            m.st.record(epoch, metrics, pc)
            row = {"epoch": epoch, "lr": lr, "train/loss": losses[j], "train/acc": accs[j],
                   "train/mixed_frac": m.mixed / steps, "mixer_active": m.active,
                   **{f"test/{key}": v for key, v in metrics.items()}, "train/time_per_batch_s": train_s / steps,
                   **timing,
                   "epoch_time_s": time.time() - te}
            m.st.curve.append(row)
            m.st.epoch = epoch + 1
            if pack_state is not None and m.run.checkpoint is not None:
                _save_member(net, pack_state, m, j)
            if m.run.on_epoch is not None and rank == 0:
                m.run.on_epoch(row)
        if save:
            saved_at = time.time()
        if stopping:
            raise Preempted(f"stopped after epoch {epoch}; {epoch + 1} epochs are checkpointed")
        epoch_s = time.time() - te

    info = {**step.info(), "pack_size": k, "pack_runs": [m.run.run_id for m in members],
            "input_pipeline": getattr(members[0].source, "kind", type(members[0].source).__name__)}
    models = net.member_models([m.model for m in members])
    return [m.error if m.error is not None else _result(m, models[j], info, t0, device, steps)
            for j, m in enumerate(members)]


def _raised(e: Exception) -> Exception:
    """`e` with a traceback from here (a failed member is recorded, not raised: its record keeps where it failed)."""
    try:
        raise e
    except Exception as caught:
        return caught


def check_pack(settings: Sequence[RunSettings]) -> None:
    """Runs share one step: a pack needs packable components and the same step shape, schedule and execution."""
    if len(settings) == 1:
        return
    for s in settings:
        blocker = capability_blocker(s, "packable")
        if blocker:
            raise ValueError(f"cannot pack run with {blocker}: it trains alone")
    shared = {s.train.model_dump_json(include=set(PACK_SHARED_TRAIN)) for s in settings}
    if len(shared) != 1:
        raise ValueError(f"pack members differ in some of {sorted(PACK_SHARED_TRAIN)}: {sorted(shared)}")


def _member(r: Run, device: torch.device, rank: int, world: int,
            sources: dict[tuple[Any, ...], tuple[LTData, Source]]) -> Member:
    """Build one member with the draws a run alone makes for its seed; resume it from its checkpoint."""
    s = r.settings
    key = (id(r.data), s.eval.test_limit_per_class, s.train.augment, s.train.pipeline, s.train.workers)
    if key not in sources:  # runs on the same data share its device copy and its test pass
        data = r.data.limit_test(s.eval.test_limit_per_class)
        sources[key] = (data, make_source(s, data, device))
    data, source = sources[key]
    torch.manual_seed(s.seed)  # initial weights (the same on every rank)
    model = build_model(s, data.num_classes, world)
    gen = torch.Generator(device).manual_seed(s.seed)
    aug_gen = gen if world == 1 else torch.Generator(device).manual_seed(s.seed + 7919 * (rank + 1))
    m = Member(r, data, source, build_parts(s, data, source.labels, device), model, gen, aug_gen,
               np.random.default_rng(s.seed))
    if r.checkpoint is not None and r.checkpoint.is_file():
        m.st, model_state, opt_state = load_checkpoint(r.checkpoint, r.run_id, gen, m.rng)
        model.load_state_dict(model_state)
        m.momentum = momentum_of(opt_state, [n for n, _ in model.named_parameters()])
    return m


def _begin_epoch(m: Member, epoch: int, bs: int, steps: int, shard: tuple[int, int]) -> torch.Tensor:
    """Set the member's per-epoch state and batch streams (foreground epoch drawn first, as the reference); returns
    its class weights for the epoch (ones when its rule gives none)."""
    s, p = m.s, m.parts
    weights = p.rule(epoch)
    if hasattr(p.criterion, "set_epoch"):  # losses with their own per-epoch state (RIDE's temperature)
        p.criterion.set_epoch(epoch)
    m.active = p.mixer.active(epoch, s.train.epochs, s.mixer.start, s.mixer.end)
    fg_order = p.foreground.epoch(m.gen) if m.active and p.foreground is not None else None
    m.fg_batches = m.source.batches(fg_order, bs, steps, m.aug_gen, shard) if fg_order is not None else None
    background = p.background if m.active or p.background_outside is None else p.background_outside
    m.batches = m.source.batches(background.epoch(m.gen), bs, steps, m.aug_gen, shard)
    m.self_mix = m.active and p.mixer.foreground == "self"
    m.mixed = 0
    return weights if weights is not None else torch.ones(m.data.num_classes)


def _pack_batch(members: list[Member], w: torch.Tensor, device: torch.device) -> tuple[PackBatch, int]:
    """Each member's batch of this step, stacked; returns it and the background batch size."""
    xs, ya, yb, lams, flags = [], [], [], [], []
    n = 0
    backgrounds = build_batches([next(m.batches) for m in members])
    for m, background in zip(members, backgrounds, strict=True):
        x, y, mx = step_batch(background, m.fg_batches, m.parts, m.s.mixer.prob, m.self_mix, m.rng, m.parts.mix_ctx)
        n = len(y)
        if mx is not None:
            m.mixed += 1
            x, y_a, y_b, lam = mx.x, mx.y_a, mx.y_b, mx.lam
        else:
            y_a, y_b, lam = y, y, 1.0
        xs.append(x), ya.append(y_a), yb.append(y_b), lams.append(lam), flags.append(float(mx is not None))
    b = len(ya[0])
    host = torch.tensor([[float(lam) if not isinstance(lam, torch.Tensor) else 1.0 for lam in lams], flags])
    scalars = host_to_device(host, device)  # one asynchronous copy for the step's scalar draws
    lam_rows = [lam if isinstance(lam, torch.Tensor) else scalars[0, j].expand(b) for j, lam in enumerate(lams)]
    stack = (lambda ts: ts[0][None]) if len(members) == 1 else torch.stack
    return PackBatch(stack(xs), stack(ya), stack(yb), stack(lam_rows), scalars[1], w), n


def step_batch(background: tuple[torch.Tensor, torch.Tensor], fg_batches: Iterator[Any] | None, p: Parts,
               prob: float, self_mix: bool, rng: np.random.Generator,
               ctx: MixContext) -> tuple[torch.Tensor, torch.Tensor, Mixed | None]:
    """A step's background batch and, when the step mixes, the mixed batch (None otherwise).

    As the reference: the foreground stream advances every step (its images are drawn only when used) and the
    coin is drawn every step when the mixer has a foreground.
    """
    x, y = background
    fg_batch = next(fg_batches) if fg_batches is not None else None
    coin = rng.random() if p.mixer.foreground is not None else 1.0
    if (fg_batch is not None or self_mix) and p.mixer.op is not None and coin < prob:
        xf, yf = fg_batch() if fg_batch is not None else (x, y)
        return x, y, p.mixer.op(x, y, xf[: len(y)], yf[: len(y)], rng, ctx)
    return x, y, None


PackState = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]  # state dict, momentum buffers, SGD group


def _pack_state(net: PackNet, optimizer: torch.optim.Optimizer) -> PackState:
    """The pack's state dict, momentum buffers by parameter name and SGD hyper-parameters (read once per save)."""
    buffers = {name: optimizer.state[q]["momentum_buffer"] for name, q in net.named_parameters()
               if optimizer.state.get(q, {}).get("momentum_buffer") is not None}
    group = {key: v for key, v in optimizer.param_groups[0].items() if key != "params"}
    return net.state_dict(), buffers, group


def _save_member(net: PackNet, pack_state: PackState, m: Member, j: int) -> None:
    """Member j's checkpoint in the layout of its run alone (model and SGD state of its own architecture)."""
    assert m.run.checkpoint is not None
    state, buffers, group = pack_state
    names = [name for name, _ in m.model.named_parameters()]
    model_state = {key: v.cpu() for key, v in net.split(state, j).items()}
    save_checkpoint(m.run.checkpoint, m.run.run_id, m.st, model_state,
                    sgd_state(net.split(buffers, j) if buffers else {}, names, group), m.gen, m.rng)


def _load_momentum(net: PackNet, optimizer: torch.optim.Optimizer, members: list[Member]) -> None:
    """Put the members' momentum buffers into the pack's optimiser (a fresh member's buffers are zeros: the same
    first step as an optimiser without them)."""
    own = [dict(m.model.named_parameters()) for m in members]
    mom = [{name: (m.momentum or {}).get(name, torch.zeros_like(q)) for name, q in own[j].items()}
           for j, m in enumerate(members)]
    for name, t in net.join(mom).items():
        q = dict(net.named_parameters())[name]
        optimizer.state[q] = {"momentum_buffer": torch.empty_like(q).copy_(t)}


def _result(m: Member, model: nn.Module, info: dict[str, Any], t0: float, device: torch.device,
            steps: int) -> FitResult:
    timing, measured = timing_summary(m.st.curve, m.s, steps)
    return FitResult(
        last={**m.st.last, **timing}, best={**m.st.best, **timing}, best_epoch=m.st.best_epoch,
        per_class_last=m.st.pc_last, per_class_best=m.st.pc_best, curve=m.st.curve, wall_time_s=time.time() - t0,
        device=device_name(device), num_params=sum(q.numel() for q in m.model.parameters()),
        class_counts=m.data.class_counts, groups=m.parts.groups.sizes(), model=model,
        execution=info, timing=measured)


def steps_per_epoch(n: int, batch_size: int, cap: int | None) -> int:
    """ceil(n / batch) batches (the last one short, as drop_last=False), capped for smoke runs."""
    steps = math.ceil(n / batch_size)
    return steps if cap is None else min(steps, cap)
