"""One place that imports every component module, so all registries are filled, and lists them."""

from __future__ import annotations

import inspect
from typing import Any

from benchmark.backbones import backbones
from benchmark.data.augment import augmentations
from benchmark.data.base import LTData, datasets
from benchmark.data.samplers import samplers
from benchmark.methods.losses import losses
from benchmark.methods.mixers import mixers
from benchmark.methods.rules import rules
from benchmark.methods.schedules import schedules
from benchmark.schema.settings import DataSettings


class DataOptionError(ValueError):
    """A data setting the named dataset does not take."""


def registries() -> dict[str, list[tuple[str, str]]]:
    """Registry name -> [(component name, one-line description)]."""
    out = {r.kind: [(e.name, e.description + capability_note(e.packable, e.graph_safe)) for e in r]
           for r in (datasets, backbones, losses, rules, mixers, samplers, schedules, augmentations)}
    return out


def capability_note(packable: bool, graph_safe: bool) -> str:
    """What a component cannot do, for listings: '' when it is packable and graph-safe."""
    notes = ([] if packable else ["trains alone, never packed"]) + ([] if graph_safe else ["not graph-safe"])
    return f" ({'; '.join(notes)})" if notes else ""


def dataset_counts(name: str, imbalance_ratio: float, **options: object) -> list[int]:
    """Train class counts of a registered dataset from its options alone (no files)."""
    return datasets.get(name).counts(imbalance_ratio=imbalance_ratio, **options)


# Settings every dataset may ignore (a generated dataset has no files to find or download).
_COMMON_DATA_OPTIONS = {"imbalance_ratio", "root", "download", "split_seed"}


def dataset_options(d: DataSettings) -> dict[str, Any]:
    """Builder kwargs from the data settings; None means "the dataset's default" and is dropped.

    A dataset-specific option the builder does not take is an error.
    """
    accepted = inspect.signature(datasets.get(d.name).build).parameters
    out = {}
    for k, v in d.model_dump().items():
        if k == "name" or v is None:
            continue
        if k in accepted:
            out[k] = v
        elif k not in _COMMON_DATA_OPTIONS:
            raise DataOptionError(f"data.{k} is not an option of dataset '{d.name}'")
    return out


def load_dataset(d: DataSettings) -> LTData:
    """Build the dataset the settings name (files are read or downloaded here)."""
    return datasets.get(d.name).build(**dataset_options(d))
