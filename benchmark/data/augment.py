"""Train augmentations on a device-resident uint8 split, registered by name (`train.augment`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import torch

from benchmark.data.pipeline import BatchAugment
from benchmark.registry import Registry


class Augment(Protocol):
    """Maps a batch of train indices to normalised float NCHW images; `normalize` serves evaluation.

    Capabilities, also on the registered factory (see `declare`): `graph_safe`, a call makes no host sync (it
    can be captured in a CUDA graph); `packable`, several runs may each call it with their own generator in one
    step (each call draws only from the generator it is given).
    """

    packable: bool
    graph_safe: bool

    def __call__(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor: ...

    def normalize(self, x_nhwc: torch.Tensor) -> torch.Tensor: ...


# factory(images uint8 NHWC on the device, mean, std, crop_pad) -> Augment
augmentations: Registry[Callable[[torch.Tensor, tuple[float, ...], tuple[float, ...], int], Augment]] = \
    Registry("augmentations")
F = TypeVar("F", bound=Callable)


def declare(factory: F, *, packable: bool, graph_safe: bool) -> F:
    """Set the capability flags on a factory, so `augmentations.get(name).graph_safe` answers without images."""
    factory.packable, factory.graph_safe = packable, graph_safe  # type: ignore[attr-defined]
    return factory


def standard(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], pad: int) -> BatchAugment:
    aug = BatchAugment(images, mean, std, pad=pad)
    aug.packable, aug.graph_safe = True, True  # type: ignore[attr-defined]  (one gather, draws from `gen`)
    return aug


augmentations.register("standard", "RandomCrop(pad, zero fill) + horizontal flip + normalise (CIFAR reference)")(
    declare(standard, packable=True, graph_safe=True))
from benchmark.data import strong_augment  # noqa: E402,F401  (registers strong pipelines)
