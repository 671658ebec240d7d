"""Train augmentations on a device-resident uint8 split, registered by name (`train.augment`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from benchmark.data.pipeline import BatchAugment, RotateAugment
from benchmark.schema.registry import Registry


class Augment(Protocol):
    """Maps a batch of train indices to normalised float NCHW images; `normalize` serves evaluation.

    What it can do is declared where it is registered: `graph_safe`, a call makes no host sync; `packable`, several
    runs may each call it with their own generator in one step (a call draws only from the generator it is given).
    """

    def __call__(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor: ...

    def normalize(self, x_nhwc: torch.Tensor) -> torch.Tensor: ...


# factory(images uint8 NHWC on the device, mean, std, crop_pad) -> Augment
augmentations: Registry[Callable[[torch.Tensor, tuple[float, ...], tuple[float, ...], int], Augment]] = \
    Registry("augmentations")
augmentations.register("standard", "RandomCrop(pad, zero fill) + horizontal flip + normalise (CIFAR reference)")(
    lambda images, mean, std, pad: BatchAugment(images, mean, std, pad=pad))
augmentations.register("crop_flip_rotate", "RIDE's CIFAR transform: RandomCrop(pad) + horizontal flip + "
                       "RandomRotation(15, nearest, zero fill) + normalise; batched, an angle per image")(
    lambda images, mean, std, pad: RotateAugment(images, mean, std, pad=pad))
