"""Check a plan before anything runs: every component name resolves and every combination can work (one line each)."""

from __future__ import annotations

import fnmatch
import inspect

from benchmark.backbones import check_backbone, supports_cosine_head
from benchmark.config.catalog import DataOptionError, dataset_options
from benchmark.config.suite import RunSpec, SuiteError
from benchmark.data.augment import augmentations
from benchmark.data.base import DataError, datasets
from benchmark.data.samplers import samplers
from benchmark.methods.losses import losses
from benchmark.methods.mixers import mixers
from benchmark.methods.rules import rules
from benchmark.methods.schedules import schedules
from benchmark.schema.registry import UnknownComponentError
from benchmark.schema.settings import RunSettings


def check_components(s: RunSettings) -> None:
    """Resolve every component name of a run; raise UnknownComponentError / SuiteError on the first problem."""
    datasets.entry(s.data.name)
    loss = losses.get(s.method.loss)
    rules.entry(s.method.rule)
    mixers.entry(s.method.mixer)
    schedules.entry(s.train.schedule)
    samplers.entry(s.train.sampler)
    if s.mixer.foreground is not None:
        samplers.entry(s.mixer.foreground)
        fg = mixers.get(s.method.mixer).foreground
        if fg in (None, "self"):
            raise SuiteError(f"mixer.foreground is set but mixer '{s.method.mixer}' has no foreground stream")
    if s.method.loss_args:
        accepted = inspect.signature(loss.build).parameters
        bad = [k for k in s.method.loss_args if k not in accepted or k == "ctx"]
        if bad:
            raise SuiteError(f"method.loss_args {bad} are not options of loss '{s.method.loss}' "
                             f"(options: {[k for k in accepted if k != 'ctx'] or 'none'})")
    augmentations.entry(s.train.augment)
    try:  # a schedule refuses settings it would ignore
        schedules.get(s.train.schedule)(epochs=s.train.epochs, warmup_epochs=s.train.warmup_epochs,
                                        milestones=s.train.milestones, gamma=s.train.gamma)
    except ValueError as e:
        raise SuiteError(f"train.schedule '{s.train.schedule}': {e}") from None
    check_backbone(s.backbone.name)
    if s.backbone.num_experts is not None and supports_cosine_head(s.backbone.name):
        raise SuiteError(f"backbone.num_experts is set but backbone '{s.backbone.name}' has no experts; "
                         f"remove it or use a ride_* backbone")
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
