"""Which pending runs train together: packs of runs that share a step (batch shape, schedule, execution), sized to
the GPU's free memory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Protocol, TypeVar

from benchmark.config.catalog import dataset_options
from benchmark.config.suite import RunSpec
from benchmark.data.base import DataError, datasets
from benchmark.engine.checkpoint import checkpoint_epoch
from benchmark.engine.parts import capability_blocker
from benchmark.engine.runtime import resolve_device
from benchmark.schema.settings import PACK_SHARED_TRAIN, RunSettings


class Job(Protocol):
    """What grouping reads of a pending run (the runner's RunJob)."""

    @property
    def run(self) -> RunSpec: ...

    @property
    def path(self) -> Path: ...

    @property
    def force(self) -> bool: ...


J = TypeVar("J", bound=Job)

AUTO_PACK_MAX = 16  # throughput grows little past 16 ResNet-32s on an H100 (reports/perf)
# Peak GPU memory per member (GiB) with its share of data and evaluation; bf16 ResNet-32 at batch 128 peaks at
# ~0.26 GiB (reports/perf/bench-h100.json), so these leave room. Unlisted backbones are ImageNet-sized.
MEMBER_GIB = {"resnet32_cifar": 0.75, "ride_resnet32": 1.5}
DEFAULT_MEMBER_GIB = 12.0



def auto_pack_size(jobs: list[J], requested: int | None) -> int:
    """The requested size; else on CUDA as many runs as 80% of the GPU's free memory holds (at most AUTO_PACK_MAX);
    else 1 (no packing on the CPU)."""
    if requested is not None:
        return requested
    import torch

    if not jobs or not any(resolve_device(j.run.settings.train.device).type == "cuda" for j in jobs):
        return 1
    # Free memory where this process already uses CUDA; else the device's total (reading the free memory would create
    # a CUDA context in a parent process that only hands GPUs to worker processes).
    if torch.cuda.is_initialized():
        free = torch.cuda.mem_get_info()[0]
    else:
        free = torch.cuda.get_device_properties(0).total_memory
    free_gib = free / 2**30
    per = max(MEMBER_GIB.get(j.run.settings.backbone.name, DEFAULT_MEMBER_GIB) for j in jobs)
    return max(1, min(AUTO_PACK_MAX, int(0.8 * free_gib / per)))


def train_images(s: RunSettings) -> int | None:
    """Training images per epoch from the dataset's class counts (no files needed); None when unknown."""
    try:
        return sum(datasets.get(s.data.name).counts(**dataset_options(s.data)))
    except (DataError, TypeError, ValueError):
        return None


def pack_key(s: RunSettings, resume_epoch: int = 0) -> str | None:
    """Runs with equal keys can share a pack (None: the run trains alone).

    Members share the step's shape (dataset and image size, batch size, training images, so the same steps per epoch
    and the same short last batch), the schedule and optimiser, the execution settings and the epoch they resume
    at; losses, heads, rules, mixers and their settings, samplers, seeds and backbones may differ. Ratios with other
    step counts go to other packs rather than masking members that finished their epoch: a masked member would still
    need its BN statistics, weight decay and momentum frozen, and the planner's packs waste no steps.
    """
    if capability_blocker(s, "packable") is not None:
        return None
    n = train_images(s)
    if n is None:
        return None
    steps = math.ceil(n / s.train.batch_size)
    return json.dumps({"train": s.train.model_dump(mode="json", include=set(PACK_SHARED_TRAIN)), "data": s.data.name,
                       "image_size": s.data.image_size, "n_train": n, "steps": steps, "epoch": resume_epoch},
                      sort_keys=True)


def group_jobs(jobs: list[J], k: int) -> list[list[J]]:
    """Units of work in plan order: pending runs with the same pack key in groups of up to k; every other run
    alone."""
    units: list[list[J]] = []
    open_units: dict[str, list[J]] = {}
    for job in jobs:
        epoch = 0 if job.force else checkpoint_epoch(job.path.with_suffix(".ckpt"))
        key = pack_key(job.run.settings, epoch) if k > 1 else None
        if key is None:
            units.append([job])
            continue
        unit = open_units.get(key)
        if unit is None or len(unit) >= k:
            unit = open_units[key] = []
            units.append(unit)
        unit.append(job)
    return units
