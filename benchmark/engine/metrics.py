"""Evaluation metrics: top-1, per-class accuracy and many/medium/few means from predictions."""

from __future__ import annotations

import math

import torch

from benchmark.data.profile import ShotGroups


def per_class_accuracy(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float]:
    """Recall of each class in percent (NaN for a class absent from the test split)."""
    correct = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, target.cpu(),
                                                                       (pred == target).double().cpu())
    total = torch.bincount(target.cpu(), minlength=num_classes).double()
    return (100.0 * correct / total).tolist()


def group_mean(per_class: list[float], classes: tuple[int, ...]) -> float | None:
    """Unweighted mean of per-class accuracies in a group; None for an empty group."""
    vals = [per_class[k] for k in classes if not math.isnan(per_class[k])]
    return sum(vals) / len(vals) if vals else None


def summarize(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
              groups: ShotGroups) -> tuple[dict[str, float | None], list[float]]:
    """({'acc/all', 'acc/many', 'acc/medium', 'acc/few'}, per-class accuracy)."""
    pc = per_class_accuracy(pred, target, num_classes)
    metrics: dict[str, float | None] = {"acc/all": 100.0 * (pred == target).double().mean().item()}
    for g in ("many", "medium", "few"):
        metrics[f"acc/{g}"] = group_mean(pc, getattr(groups, g))
    return metrics, pc
