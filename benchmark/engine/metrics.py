"""Evaluation metrics: top-1, per-class accuracy and many/medium/few means from predictions."""

from __future__ import annotations

import math

import torch

from benchmark.data.profile import ShotGroups


def class_hits(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[2, num_classes] float64 on the predictions' device: correct predictions and test images per class (counts
    add up over shards of a test split)."""
    hits = torch.zeros(2, num_classes, dtype=torch.float64, device=pred.device)
    hits[0].index_add_(0, target, (pred == target).double())
    hits[1].index_add_(0, target, torch.ones_like(target, dtype=torch.float64))
    return hits


def per_class_accuracy(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float]:
    """Recall of each class in percent (NaN for a class absent from the test split)."""
    correct, total = class_hits(pred, target, num_classes).cpu()
    return (100.0 * correct / total).tolist()


def group_mean(per_class: list[float], classes: tuple[int, ...]) -> float | None:
    """Unweighted mean of per-class accuracies in a group; None for an empty group."""
    vals = [per_class[k] for k in classes if not math.isnan(per_class[k])]
    return sum(vals) / len(vals) if vals else None


def summarize(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
              groups: ShotGroups) -> tuple[dict[str, float | None], list[float]]:
    """({'acc/all', 'acc/many', 'acc/medium', 'acc/few'}, per-class accuracy)."""
    return summarize_hits(class_hits(pred, target, num_classes), groups)


def summarize_hits(hits: torch.Tensor, groups: ShotGroups) -> tuple[dict[str, float | None], list[float]]:
    """`summarize` from per-class counts (`class_hits`, possibly summed over ranks): integer counts, so the same
    numbers as from the predictions in one process."""
    correct, total = hits.double().cpu()
    pc = (100.0 * correct / total).tolist()
    metrics: dict[str, float | None] = {"acc/all": 100.0 * (correct.sum() / total.sum()).item()}
    for g in ("many", "medium", "few"):
        metrics[f"acc/{g}"] = group_mean(pc, getattr(groups, g))
    return metrics, pc
