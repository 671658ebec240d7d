"""Learning-rate schedules as exact per-epoch formulas of the reference code (0-based epoch, set per epoch)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmark.schema.registry import Registry


@dataclass(frozen=True)
class StepSchedule:
    """Linear warm-up lr*(e+1)/warmup for e+1 <= warmup, then x gamma after each milestone (1-based)."""

    warmup_epochs: int
    milestones: Sequence[int]
    gamma: float

    def __call__(self, epoch: int) -> float:
        e1 = epoch + 1  # the reference code compares the 1-based epoch
        if e1 <= self.warmup_epochs:
            return e1 / self.warmup_epochs
        return self.gamma ** sum(e1 > m for m in self.milestones)


ScheduleFactory = Callable[..., Callable[[int], float]]
schedules: Registry[ScheduleFactory] = Registry("schedules")


def step_factory(kind: type, default_warmup: int, default_milestones: Sequence[int],
                 default_gamma: float) -> ScheduleFactory:
    """A schedule factory with the reference's defaults; a suite may override any of the three."""

    def factory(epochs: int, warmup_epochs: int | None = None, milestones: Sequence[int] | None = None,
                gamma: float | None = None) -> Callable[[int], float]:
        return kind(default_warmup if warmup_epochs is None else warmup_epochs,
                    default_milestones if milestones is None else milestones,
                    default_gamma if gamma is None else gamma)

    return factory


schedules.register("cifar_step", "CIFAR-LT: warm-up 5, x0.01 after epoch 160 and again after 180")(
    step_factory(StepSchedule, 5, (160, 180), 0.01))
schedules.register("imagenet_step", "ImageNet-LT: warm-up 5, x0.1 after epoch 60 and again after 80")(
    step_factory(StepSchedule, 5, (60, 80), 0.1))
schedules.register("inat_step", "iNaturalist 2018: warm-up 5, x0.1 after epoch 75 and again after 160")(
    step_factory(StepSchedule, 5, (75, 160), 0.1))


@dataclass(frozen=True)
class PacoStep:
    """PaCo / CMO 400-epoch CIFAR: (e+1)/warmup for e <= warmup (1.1 at e = 10, as the reference), then x gamma
    for e > each milestone (0-based comparisons)."""

    warmup_epochs: int
    milestones: Sequence[int]
    gamma: float

    def __call__(self, epoch: int) -> float:
        if epoch <= self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        return self.gamma ** sum(epoch > m for m in self.milestones)


schedules.register("paco_step", "400-epoch CIFAR: warm-up 10 (1.1x at epoch 10, as the reference), x0.1 after "
                               "320, x0.01 after 360")(step_factory(PacoStep, 10, (320, 360), 0.1))


@dataclass(frozen=True)
class CosineWarmup:
    """(e+1)/warmup for e < warmup, then 0.5 (1 + cos(pi (e - warmup + 1) / (epochs - warmup + 1)))."""

    epochs: int
    warmup_epochs: int

    def __call__(self, epoch: int) -> float:
        w = self.warmup_epochs
        if epoch < w:
            return (epoch + 1) / w
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - w + 1) / (self.epochs - w + 1)))


@schedules.register("cosine_warmup", "400-epoch ImageNet-LT / iNaturalist: warm-up 10, then cosine to 0")
def cosine_warmup(epochs: int, warmup_epochs: int | None = None, milestones: Sequence[int] | None = None,
                  gamma: float | None = None) -> Callable[[int], float]:
    if milestones is not None or gamma is not None:
        raise ValueError("cosine_warmup has no milestones or gamma (it decays by a cosine): remove train.milestones "
                         "and train.gamma, or use a step schedule")
    return CosineWarmup(epochs, 10 if warmup_epochs is None else warmup_epochs)
