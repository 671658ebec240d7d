"""Check a plan before anything runs: every component name resolves and every combination can work (one line each)."""

from __future__ import annotations

import fnmatch
from typing import Any

import torch

from benchmark.backbones import backbone_spec, build_backbone, check_backbone, supports_cosine_head
from benchmark.config.catalog import DataOptionError, dataset_options
from benchmark.config.suite import RunSpec, SuiteError
from benchmark.data.augment import augmentations
from benchmark.data.base import DataError, datasets
from benchmark.data.samplers import samplers
from benchmark.methods.losses import losses
from benchmark.methods.mixers import mixers
from benchmark.methods.rules import rules
from benchmark.methods.schedules import schedules
from benchmark.schema.registry import ComponentArgsError, Registry, UnknownComponentError
from benchmark.schema.settings import RunSettings


# Each component axis and its one `args` mapping: (registry, the component's name, the field, its value).
def component_args(s: RunSettings) -> list[tuple[Registry[Any], str, str, dict[str, Any] | None]]:
    return [(losses, s.method.loss, "method.loss_args", s.method.loss_args),
            (rules, s.method.rule, "method.rule_args", s.method.rule_args),
            (mixers, s.method.mixer, "method.mixer_args", s.method.mixer_args),
            (samplers, s.train.sampler, "train.sampler_args", s.train.sampler_args),
            (schedules, s.train.schedule, "train.schedule_args", s.train.schedule_args)]


SCHEDULE_FIELDS = ("warmup_epochs", "milestones", "gamma")  # schedule options with fields of their own


def check_component_args(s: RunSettings) -> None:
    """Every `*_args` key is an option its component declares; the backbone's go to timm, tried on the meta device."""
    for registry, name, field, args in component_args(s):
        try:
            registry.check_args(name, args, field)
        except ComponentArgsError as e:
            raise SuiteError(str(e)) from None
    taken = [k for k in s.train.schedule_args or {} if k in SCHEDULE_FIELDS]
    if taken:
        raise SuiteError(f"train.schedule_args: set {taken[0]} with train.{taken[0]}, not in schedule_args")
    spec = backbone_spec(s.backbone.name)
    if s.backbone.num_experts is not None and not spec.expert_heads:
        raise SuiteError(f"backbone.num_experts is for multi-expert backbones (ride_*), not '{s.backbone.name}': "
                         f"remove it")
    if s.backbone.args:
        try:
            with torch.device("meta"):
                build_backbone(s.backbone.name, 10, **s.backbone.args)
        except TypeError as e:
            raise SuiteError(f"backbone.args: timm model '{s.backbone.name}' does not take them ({e})") from None


def check_components(s: RunSettings) -> None:
    """Resolve every component name of a run; raise UnknownComponentError / SuiteError on the first problem."""
    datasets.entry(s.data.name)
    loss = losses.get(s.method.loss)
    check_backbone(s.backbone.name)
    rules.entry(s.method.rule)
    mixers.entry(s.method.mixer)
    schedules.entry(s.train.schedule)
    samplers.entry(s.train.sampler)
    if s.mixer.foreground is not None:
        samplers.entry(s.mixer.foreground)
        fg = mixers.get(s.method.mixer).foreground
        if fg in (None, "self"):
            raise SuiteError(f"mixer.foreground is set but mixer '{s.method.mixer}' has no foreground stream")
    check_component_args(s)
    augmentations.entry(s.train.augment)
    try:  # a schedule refuses settings it would ignore
        schedules.get(s.train.schedule)(epochs=s.train.epochs, warmup_epochs=s.train.warmup_epochs,
                                        milestones=s.train.milestones, gamma=s.train.gamma)
    except ValueError as e:
        raise SuiteError(f"train.schedule '{s.train.schedule}': {e}") from None
    check_backbone(s.backbone.name)
    if loss.head == "cosine" and not supports_cosine_head(s.backbone.name):
        raise SuiteError(f"loss '{s.method.loss}' needs a cosine classifier, which backbone '{s.backbone.name}' "
                         f"cannot take (its experts have their own heads); use loss 'ride' with it")
    if loss.backbones and not fnmatch.fnmatch(s.backbone.name, loss.backbones):
        raise SuiteError(f"loss '{s.method.loss}' needs a backbone matching '{loss.backbones}', "
                         f"not '{s.backbone.name}'")
    try:
        options = dataset_options(s.data)
    except DataOptionError as e:
        raise SuiteError(str(e)) from None
    if s.data.name in ("imagenet_lt", "inat2018") and s.train.augment not in ("standard", "imagenet_strong"):
        raise SuiteError(f"train.augment '{s.train.augment}' does not apply to file dataset '{s.data.name}': "
                         f"use standard or imagenet_strong")
    try:
        counts = datasets.get(s.data.name).counts(**options)
    except DataError:
        counts = []  # file datasets: the files are checked when the data is loaded
    if counts and min(counts) < 1:
        raise SuiteError(f"dataset '{s.data.name}' with these options has classes without images "
                         f"(counts {counts[:3]}...{counts[-3:]}): lower data.imbalance_ratio or raise the class size")


def check_plan(runs: list[RunSpec], where: str) -> None:
    """check_components for every distinct configuration, naming the row on failure."""
    seen: set[str] = set()
    for r in runs:
        if r.config_hash in seen:
            continue
        seen.add(r.config_hash)
        try:
            check_components(r.settings)
        except (UnknownComponentError, SuiteError) as e:
            cell = f"row '{r.row}'" + (f", column '{r.column}'" if r.column else "")
            raise SuiteError(f"{where}: {cell}: {e}") from None
