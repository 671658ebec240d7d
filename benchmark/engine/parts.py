"""What one run trains with, composed from the registries: model, loss, rule, mixer, samplers, batch source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmark.backbones import backbones, build_backbone
from benchmark.backbones.group_bn import use_bn_groups
from benchmark.data.augment import augmentations
from benchmark.data.base import LTData, datasets
from benchmark.data.gpu_decode import GpuDecodeSource
from benchmark.data.profile import ShotGroups, shot_groups
from benchmark.data.samplers import Sampler, SamplerContext, samplers
from benchmark.data.sources import LoaderSource, TensorSource
from benchmark.data.strong_augment import ImagenetStrongTransform
from benchmark.methods.losses import LossContext, losses
from benchmark.methods.mixers import MixContext, MixerSpec, mixers
from benchmark.methods.rules import Rule, RuleContext, reweight_epoch_of, rules
from benchmark.methods.schedules import schedules
from benchmark.schema.settings import RunSettings

Source = TensorSource | LoaderSource | GpuDecodeSource


@dataclass
class Parts:
    """Everything besides the network that a run trains with, built from its settings by the registries."""

    lr_factor: Callable[[int], float]
    criterion: nn.Module
    rule: Rule
    mixer: MixerSpec
    background: Sampler
    foreground: Sampler | None
    background_outside: Sampler | None  # the background stream outside the mixer's window, when it differs
    groups: ShotGroups
    mix_ctx: MixContext


def build_model(s: RunSettings, num_classes: int, world: int = 1) -> nn.Module:
    """The run's backbone with the classifier head its loss needs (LDAM: the cosine classifier); with
    `train.bn_groups` > 1 its BatchNorm layers normalise per chunk of the batch (bn_groups / world chunks on each of
    `world` processes)."""
    head = {"cosine_head": True} if losses.get(s.method.loss).head == "cosine" else {}
    model = build_backbone(s.backbone.name, num_classes, num_experts=s.backbone.num_experts, **head,
                           **(s.backbone.args or {}))
    return use_bn_groups(model, bn_groups_per_process(s, world))


def bn_groups_per_process(s: RunSettings, world: int) -> int:
    """BatchNorm chunks of each process's share of the batch: `train.bn_groups` split over the processes (DDP keeps
    per-process statistics, so 4 groups over 4 processes is one BatchNorm batch each). The default 1 is one
    BatchNorm batch per process, whatever their number (no SyncBN)."""
    if s.train.bn_groups == 1:
        return 1
    if s.train.bn_groups % world:
        raise ValueError(f"train.bn_groups {s.train.bn_groups} is not a multiple of the {world} processes of the run; "
                         f"set it to a multiple of --gpus-per-run")
    return s.train.bn_groups // world


def build_parts(s: RunSettings, data: LTData, labels: torch.Tensor, device: torch.device) -> Parts:
    """Compose schedule, loss, rule, mixer and samplers from the registries."""
    counts, reweight = data.class_counts, reweight_epoch_of(s, data)
    lr_factor = schedules.get(s.train.schedule)(epochs=s.train.epochs, warmup_epochs=s.train.warmup_epochs,
                                                milestones=s.train.milestones, gamma=s.train.gamma,
                                                **(s.train.schedule_args or {}))
    mixer = mixers.get(s.method.mixer)
    sctx = SamplerContext(labels, counts, s.mixer.fg_power, s.mixer.q_semantics)
    groups = shot_groups(counts, s.eval.many_above, s.eval.few_below)
    minority = torch.ones(data.num_classes, dtype=torch.bool, device=device)
    minority[list(groups.many)] = False
    return Parts(
        lr_factor=lr_factor,
        criterion=losses.get(s.method.loss).build(LossContext(counts, s.train.epochs, reweight),
                                                  **(s.method.loss_args or {})).to(device),
        rule=rules.get(s.method.rule)(RuleContext(counts, s.train.epochs, reweight), **(s.method.rule_args or {})),
        mixer=mixer,
        background=make_sampler(s, background_sampler(s), sctx),
        foreground=make_sampler(s, fg, sctx) if (fg := foreground_sampler(s)) else None,
        background_outside=make_sampler(s, s.train.sampler, sctx)
        if s.mixer.background_window == "window" and background_sampler(s) != s.train.sampler else None,
        groups=groups,
        mix_ctx=MixContext(s.mixer.alpha, torch.tensor(counts, device=device), minority, data.mean, data.std,
                           mixer.resolve(s.method.mixer_args)),
    )


def make_sampler(s: RunSettings, name: str, ctx: SamplerContext) -> Sampler:
    """A stream's sampler; `train.sampler_args` go to the sampler named by `train.sampler` wherever it is used."""
    return samplers.get(name)(ctx, **(s.train.sampler_args or {} if name == s.train.sampler else {}))


def background_sampler(s: RunSettings) -> str:
    mixer = mixers.get(s.method.mixer)
    return s.train.sampler if mixer.background == "instance" else mixer.background


def foreground_sampler(s: RunSettings) -> str | None:
    """The sampler of the foreground stream (None: the mixer has none, or pairs the batch with itself)."""
    fg = mixers.get(s.method.mixer).foreground
    return None if fg in (None, "self") else s.mixer.foreground or fg


def capability_blocker(s: RunSettings, flag: str) -> str | None:
    """The first component of a run that does not declare `flag`, as 'kind name' (None: all do).

    'packable': every component of the run may share a step with other runs. 'graph_safe': the components that run
    inside the captured step (forward, loss, backward) can be replayed from a CUDA graph; data-side components
    (samplers, mixers, augmentations) run before it, and their `graph_safe` says their per-step work never waits for
    the device.
    """
    if flag == "graph_safe":
        return None if losses.entry(s.method.loss).graph_safe else f"loss {s.method.loss}"
    named = [("backbone", backbones, s.backbone.name)] if s.backbone.name in backbones else []
    named += [("loss", losses, s.method.loss), ("mixer", mixers, s.method.mixer), ("rule", rules, s.method.rule),
             ("sampler", samplers, background_sampler(s)), ("augmentation", augmentations, s.train.augment),
             ("dataset", datasets, s.data.name)]
    fg = foreground_sampler(s)
    if fg:
        named.append(("sampler", samplers, fg))
    for kind, registry, name in named:
        if not registry.entry(name).packable:
            return f"{kind} {name}"
    if s.train.pipeline != "tensor":
        return f"train.pipeline {s.train.pipeline}"
    if s.stage2 is not None:
        return "a two-stage run"
    return None


def make_source(s: RunSettings, data: Any, device: torch.device) -> Source:
    """File datasets and the reference pipeline go through DataLoader workers; in-memory splits stay on the device."""
    if hasattr(data, "datasets") and s.train.pipeline == "gpu_decode":  # FileLTData decoded on the device
        if s.train.augment != "standard":
            raise ValueError(f"train.pipeline gpu_decode does RandomResizedCrop + flip (+ jitter) only; "
                             f"train.augment {s.train.augment} needs the reference pipeline")
        return GpuDecodeSource(data, device, threads=max(1, s.train.workers))
    if hasattr(data, "datasets"):  # FileLTData: images decoded from disk with the reference transforms
        train_t, test_t = data.transforms()
        if s.train.augment == "imagenet_strong":
            train_t = ImagenetStrongTransform(data.image_size, data.mean, data.std)
        train_set, test_set = data.datasets(train_t, test_t)
        return LoaderSource(train_set, test_set, data.train_y, device, s.train.workers)
    if s.train.pipeline == "gpu_decode":
        raise ValueError(f"train.pipeline gpu_decode decodes image files (imagenet_lt, inat2018); dataset "
                         f"{s.data.name} is in memory: use tensor or reference")
    if s.train.pipeline == "reference":
        return LoaderSource.for_arrays(data, device, s.train.workers)
    return TensorSource(data, s.train.augment, device)
