"""Long-tail class-count profiles and many/medium/few groups, computed from counts alone (no torch)."""

from __future__ import annotations

from dataclasses import dataclass


def exp_profile(img_max: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """Per-class counts of the exponential profile of LDAM-DRW / CMO.

    Class i keeps int(img_max * (1/ratio) ** (i / (C - 1))) images: truncation, not rounding, and
    class 0 is the head.
    """
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance ratio must be >= 1, got {imbalance_ratio}")
    factor = 1.0 / imbalance_ratio
    return [int(img_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]


@dataclass(frozen=True)
class ShotGroups:
    """Class indices per shot group: many n > many_above, few n < few_below, medium otherwise."""

    many: tuple[int, ...]
    medium: tuple[int, ...]
    few: tuple[int, ...]

    def sizes(self) -> dict[str, int]:
        return {"many": len(self.many), "medium": len(self.medium), "few": len(self.few)}


def shot_groups(class_counts: list[int], many_above: int = 100, few_below: int = 20) -> ShotGroups:
    """Split classes by their train counts (the thresholds come from the suite)."""
    many = tuple(k for k, n in enumerate(class_counts) if n > many_above)
    few = tuple(k for k, n in enumerate(class_counts) if n < few_below and n <= many_above)
    medium = tuple(k for k in range(len(class_counts)) if k not in many and k not in few)
    return ShotGroups(many, medium, few)
