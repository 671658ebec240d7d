"""Datasets, samplers, batch sources and augmentations: importing this package registers every dataset (CIFAR-LT,
synthetic_lt, ImageNet-LT, iNat) and augmentation (a module defining a registry never imports the modules that fill
it)."""

from benchmark.data import (  # noqa: F401  (registration side effects)
    augment,
    cifar,
    split_lists,
    strong_augment,
    synthetic_lt,
)
