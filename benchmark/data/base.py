"""In-memory long-tailed dataset container and the dataset registry."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.schema.registry import Registry

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10 statistics, used for CIFAR-100 too (official code)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


class DataError(RuntimeError):
    """Dataset files are missing or malformed; the message says where they must be."""


@dataclass
class LTData:
    """A long-tailed train split and a balanced test split, as uint8 NHWC arrays.

    `train_source_index[i]` is the position of train image i in the official train file, so a
    subset can be checked against the official selection rule.
    """

    name: str
    num_classes: int
    train_x: np.ndarray  # uint8 [N, H, W, 3]
    train_y: np.ndarray  # int64 [N]
    test_x: np.ndarray
    test_y: np.ndarray
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: list[str] = field(default_factory=list)
    crop_pad: int = 4  # RandomCrop padding of the train augmentation (4 px on 32 px CIFAR images)
    reweight_epoch: int | None = None  # the reference's DRW switch epoch for this dataset (None: 80% of the run)
    train_source_index: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def class_counts(self) -> list[int]:
        return np.bincount(self.train_y, minlength=self.num_classes).tolist()

    def limit_test(self, per_class: int | None) -> LTData:
        """A copy whose test split keeps the first `per_class` images of each class (smoke runs)."""
        if per_class is None:
            return self
        keep = first_per_class(self.test_y, self.num_classes, per_class)
        return LTData(**{**self.__dict__, "test_x": self.test_x[keep], "test_y": self.test_y[keep]})


def first_per_class(labels: np.ndarray, num_classes: int, per_class: int) -> np.ndarray:
    """Sorted indices of the first `per_class` samples of every class."""
    return np.sort(np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in range(num_classes)]))


@dataclass(frozen=True)
class DatasetDef:
    """A registered dataset: `build(**options)` loads it, `counts(**options)` gives train class counts
    from the options alone (no files), for `lt-bench data stats` and planning."""

    build: Callable[..., LTData]
    counts: Callable[..., list[int]]


datasets: Registry[DatasetDef] = Registry("datasets")


def default_data_root() -> Path:
    """$LTBENCH_DATA, else the user cache dir (~/.cache/lt-bench/data)."""
    env = os.environ.get("LTBENCH_DATA")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lt-bench")) / "data"
