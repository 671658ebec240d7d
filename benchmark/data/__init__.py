"""Datasets: importing this package registers every dataset (CIFAR-LT, synthetic_lt)."""

from benchmark.data import (
    cifar,  # noqa: F401  (registration side effects)
    split_lists,  # noqa: F401
    synthetic_lt,  # noqa: F401
)
