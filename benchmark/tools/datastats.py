"""Dataset statistics from class counts alone (`lt-bench data stats`, Table 1): classes, train images, the real
max/min imbalance ratio and the many / medium / few group sizes."""

from __future__ import annotations

from typing import Any

from benchmark.config.catalog import dataset_counts
from benchmark.data.base import DataError
from benchmark.data.profile import shot_groups
from benchmark.data.split_lists import LAYOUTS

# Table 1's rows: (dataset, imbalance ratio of the exponential profile, or None for a fixed split list)
TABLE1_ROWS: list[tuple[str, float | None]] = [
    ("cifar10_lt", 100.0), ("cifar10_lt", 50.0), ("cifar10_lt", 10.0),
    ("cifar100_lt", 100.0), ("cifar100_lt", 50.0), ("cifar100_lt", 10.0),
    ("imagenet_lt", None), ("inat2018", None),
]


def fixed_split(dataset: str) -> bool:
    """True for datasets given by split lists (ImageNet-LT, iNat): their counts come from the list, not a ratio."""
    return dataset in LAYOUTS


def dataset_stats(dataset: str, imbalance_ratio: float | None = None, *, root: str | None = None,
                  train_list: str | None = None, many_above: int = 100, few_below: int = 20) -> dict[str, Any]:
    """Counts-derived statistics of a train split. `imbalance_ratio` is the real max/min of the counts; for a fixed
    split the requested ratio is not used (`ratio_ignored` says so when one was given)."""
    opts: dict[str, Any] = {}
    if fixed_split(dataset):
        opts = {k: v for k, v in (("root", root), ("train_list", train_list)) if v is not None}
        counts = dataset_counts(dataset, imbalance_ratio or 1.0, **opts)
    else:
        counts = dataset_counts(dataset, 100.0 if imbalance_ratio is None else imbalance_ratio)
    g = shot_groups(counts, many_above, few_below).sizes()
    lo = min(counts)
    return {"dataset": dataset, "num_classes": len(counts), "total": sum(counts), "max": max(counts), "min": lo,
            "imbalance_ratio": max(counts) / lo if lo > 0 else None,
            "requested_imbalance_ratio": imbalance_ratio, "fixed_split": fixed_split(dataset),
            "ratio_ignored": fixed_split(dataset) and imbalance_ratio is not None,
            "groups": g, "thresholds": {"many": f"n > {many_above}", "few": f"n < {few_below}"},
            "class_counts": counts}


def stats_line(out: dict[str, Any]) -> str:
    """One line for `lt-bench data stats`: counts, the real max/min ratio (saying when a requested one is ignored)
    and the group sizes."""
    g, ratio = out["groups"], out["imbalance_ratio"]
    note = (f" (--imbalance-ratio {out['requested_imbalance_ratio']:g} ignored: {out['dataset']} has a fixed split "
            f"list)" if out["ratio_ignored"] else "")
    return (f"{out['dataset']}: {out['num_classes']} classes, total {out['total']:,}, max {out['max']}, min "
            f"{out['min']}, imbalance ratio max/min {'n/a (empty class)' if ratio is None else f'{ratio:.4g}'}"
            f"{note}; many/medium/few {g['many']}/{g['medium']}/{g['few']}")


def table1_stats(split_lists: list[str]) -> list[dict[str, Any]]:
    """Statistics of Table 1's rows; `split_lists` items 'imagenet_lt=PATH' / 'inat2018=PATH' name train lists. A
    split-list dataset without a list found becomes {"dataset", "error"}; a named list that fails raises."""
    lists: dict[str, str] = {}
    for item in split_lists:
        key, sep, path = item.partition("=")
        if not sep or key.strip() not in LAYOUTS or not path.strip():
            raise ValueError(f"--split-list '{item}': expected imagenet_lt=PATH or inat2018=PATH")
        lists[key.strip()] = path.strip()
    stats = []
    for dataset, ratio in TABLE1_ROWS:
        try:
            stats.append(dataset_stats(dataset, ratio, train_list=lists.get(dataset)))
        except DataError:
            if dataset in lists:
                raise
            stats.append({"dataset": dataset, "error": f"no train list ({LAYOUTS[dataset].train_file} not found "
                                                       f"under the data root); pass --split-list {dataset}=PATH"})
    return stats
