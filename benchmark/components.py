"""One place that imports every component module, so all registries are filled, and lists them."""

from __future__ import annotations

from benchmark.data.base import datasets


def registries() -> dict[str, list[tuple[str, str]]]:
    """Registry name -> [(component name, one-line description)]."""
    from benchmark.backbones import BACKBONE_DESCRIPTIONS
    from benchmark.data.augment import augmentations
    from benchmark.data.samplers import samplers
    from benchmark.methods.losses import losses
    from benchmark.methods.mixers import mixers
    from benchmark.methods.rules import rules
    from benchmark.methods.schedules import schedules

    out = {r.kind: [(e.name, e.description) for e in r] for r in (datasets, losses, rules, mixers, samplers,
                                                                    schedules, augmentations)}
    out["backbones"] = sorted(BACKBONE_DESCRIPTIONS.items())
    return out


def dataset_counts(name: str, imbalance_ratio: float, **options: object) -> list[int]:
    """Train class counts of a registered dataset from its options alone (no files)."""
    return datasets.get(name).counts(imbalance_ratio=imbalance_ratio, **options)
