"""Second training stage (MiSLAS): fine-tune the classifier of stage-1 weights with label-aware smoothing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmark.data.profile import shot_groups
from benchmark.data.samplers import SamplerContext, samplers
from benchmark.engine.checkpoint import TrainState
from benchmark.engine.evaluation import evaluate
from benchmark.engine.fused import PackNet
from benchmark.engine.loop import FitResult, steps_per_epoch
from benchmark.engine.parts import make_source
from benchmark.engine.runtime import device_name, resolve_device
from benchmark.methods.las import LabelAwareSmoothing
from benchmark.schema.settings import RunSettings


class LogitScale(nn.Module):
    """Wraps a model: logits x a learnable per-class scale (LWS); multi-expert outputs keep their dict form."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.scale = nn.Parameter(torch.ones(num_classes))

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(x)
        return {**out, "logits": out["logits"] * self.scale} if isinstance(out, dict) else out * self.scale


def finetune(s: RunSettings, data: Any, model: nn.Module,
             on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Stage 2 on a trained `model`: only the classifier and the logit scale learn; BatchNorm stays in train mode
    so its running statistics follow the class-balanced data ("shifted BN"); parameters of the backbone are frozen.
    """
    assert s.stage2 is not None
    st2, t0 = s.stage2, time.time()
    device = resolve_device(s.train.device)
    gen = torch.Generator(device).manual_seed(s.seed + 1_000_003)
    data = data.limit_test(s.eval.test_limit_per_class)
    source = make_source(s, data, device)
    counts = data.class_counts
    groups = shot_groups(counts, s.eval.many_above, s.eval.few_below)
    model = model.to(device)
    for q in model.parameters():
        q.requires_grad_(False)
    head = model.get_classifier()
    for q in head.parameters():
        q.requires_grad_(True)
    wrapped = LogitScale(model, data.num_classes).to(device)
    opt = torch.optim.SGD([{"params": list(head.parameters()), "lr_mult": st2.lr_factor},
                           {"params": [wrapped.scale], "lr_mult": 1.0}],
                          lr=st2.lr, momentum=0.9, weight_decay=st2.weight_decay)
    crit = LabelAwareSmoothing(counts, st2.eps_head, st2.eps_tail).to(device)
    sampler = samplers.get(st2.sampler)(SamplerContext(source.labels, counts))
    n, bs = len(source.labels), st2.batch_size
    steps = steps_per_epoch(n, bs, s.train.steps_per_epoch)
    st = TrainState()
    wrapped.train()
    pack = PackNet([wrapped])  # a pack of one, for the engine's evaluation
    for epoch in range(st2.epochs):
        te = time.time()
        lr = 0.5 * st2.lr * (1 + math.cos(math.pi * epoch / st2.epochs))  # cosine to 0 over the stage
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        loss_sum, seen = torch.zeros((), device=device), 0
        for batch in source.batches(sampler.epoch(gen), bs, steps, gen):
            x, y = batch()
            loss = crit(wrapped(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(y)
            seen += len(y)
        metrics, pc = evaluate(pack, [(source, data.num_classes, groups)])[0]
        st.record(epoch, metrics, pc)
        row = {"epoch": epoch, "stage": 2, "lr": lr, "train/loss": (loss_sum / seen).item(),
               **{f"test/{k}": v for k, v in metrics.items()}, "epoch_time_s": time.time() - te}
        st.curve.append(row)
        if on_epoch is not None:
            on_epoch(row)
    return FitResult(last=st.last, best=st.best, best_epoch=st.best_epoch, per_class_last=st.pc_last,
                     per_class_best=st.pc_best, curve=st.curve, wall_time_s=time.time() - t0,
                     device=device_name(device),
                     num_params=sum(q.numel() for q in wrapped.parameters()), class_counts=counts,
                     groups=groups.sizes(), model=wrapped)
