"""Registers `synthetic_lt`, the embedded default dataset generated in code (no files, no download)."""

from __future__ import annotations

from benchmark.data.base import DatasetDef, LTData, datasets
from benchmark.data.profile import exp_profile
from benchmark.data.synthetic import render_synthetic

SYNTH_MEAN = (0.5, 0.5, 0.5)
SYNTH_STD = (0.25, 0.25, 0.25)


def build_synthetic_lt(imbalance_ratio: float = 10.0, num_classes: int = 10, max_per_class: int = 300,
                       test_per_class: int = 50, image_size: int = 32, split_seed: int = 0) -> LTData:
    """Objects of class-specific shape and hue on textured scenes: in the long-tailed train split a class is
    mostly shown in its two home scenes (so a tail class is seen in few contexts); in the test split any scene."""
    tx, ty, vx, vy, names = render_synthetic(num_classes, imbalance_ratio, max_per_class, test_per_class,
                                             image_size, seed=split_seed)
    return LTData(name="synthetic_lt", num_classes=num_classes, train_x=tx, train_y=ty, test_x=vx, test_y=vy,
                  mean=SYNTH_MEAN, std=SYNTH_STD, class_names=names, crop_pad=max(1, image_size // 8),
                  info={"generator": "benchmark.data.synthetic.render_synthetic", "seed": split_seed})


def synthetic_counts(imbalance_ratio: float = 10.0, num_classes: int = 10, max_per_class: int = 300,
                     **_: object) -> list[int]:
    return exp_profile(max_per_class, num_classes, imbalance_ratio)


datasets.register("synthetic_lt", "embedded default: generated objects on scenes; tail classes seen in few scenes "
                                  "in train (no download)")(
    DatasetDef(build=build_synthetic_lt, counts=synthetic_counts))
