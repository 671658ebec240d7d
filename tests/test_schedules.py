"""Learning-rate schedules against the reference formulas."""

from __future__ import annotations

import pytest

from benchmark.methods.schedules import schedules


@pytest.mark.parametrize(("epoch", "lr"), [(0, 0.02), (4, 0.1), (5, 0.1), (159, 0.1), (160, 0.001),
                                           (161, 0.001), (179, 0.001), (180, 1e-5), (199, 1e-5)])
def test_cifar_step(epoch: int, lr: float) -> None:
    f = schedules.get("cifar_step")(epochs=200)
    assert 0.1 * f(epoch) == pytest.approx(lr, rel=1e-9)


def test_cifar_step_overrides() -> None:
    f = schedules.get("cifar_step")(epochs=12, warmup_epochs=2, milestones=[9, 11], gamma=0.1)
    assert [round(f(e), 6) for e in range(12)] == [0.5, 1, 1, 1, 1, 1, 1, 1, 1, 0.1, 0.1, 0.01]
