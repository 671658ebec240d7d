"""Learning-rate schedules as exact per-epoch formulas of the reference code (0-based epoch, set per epoch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmark.registry import Registry


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


@schedules.register("cifar_step", "CIFAR-LT: warm-up 5, x0.01 after epoch 160 and again after 180")
def cifar_step(epochs: int, warmup_epochs: int | None = None, milestones: Sequence[int] | None = None,
               gamma: float | None = None) -> Callable[[int], float]:
    return StepSchedule(warmup_epochs if warmup_epochs is not None else 5,
                        milestones if milestones is not None else (160, 180),
                        gamma if gamma is not None else 0.01)
