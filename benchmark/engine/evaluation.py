"""Evaluation on the test split: one pass for the runs of a pack that share it, sharded over the ranks of a
multi-process run with per-class counts summed."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from benchmark.data.profile import ShotGroups
from benchmark.data.sources import TensorSource
from benchmark.engine import distributed
from benchmark.engine.fused import PackNet
from benchmark.engine.metrics import class_hits, summarize_hits
from benchmark.engine.parts import Source
from benchmark.engine.step import Execution, autocast_of
from benchmark.methods.losses import logits_of


@torch.no_grad()
def evaluate(net: PackNet, tests: Sequence[tuple[Source, int, ShotGroups]], ex: Execution | None = None,
             shard: tuple[int, int] = (0, 1)) -> list[tuple[dict[str, float | None], list[float]]]:
    """Top-1, many/medium/few and per-class accuracy of each member on its (balanced) test split, in the run's
    precision; members that share a test split are evaluated in one pass of the pack.

    With several ranks (`shard` = (rank, world)), each rank evaluates its own contiguous slice of the test list and
    the per-class counts are summed over ranks: every rank gets the single-process numbers.
    """
    net.eval()
    rank, world = shard
    out: list[Any] = [None] * len(tests)
    by_source: dict[int, list[int]] = {}
    for j, (source, _, _) in enumerate(tests):
        by_source.setdefault(id(source), []).append(j)
    for idx in by_source.values():
        source, num_classes = tests[idx[0]][0], tests[idx[0]][1]
        device = source.labels.device
        autocast = autocast_of(ex, device) if ex is not None else contextlib.nullcontext
        hits = torch.zeros(len(idx), 2, num_classes, dtype=torch.float64, device=device)
        part = distributed.shard_range(_test_size(source), rank, world) if world > 1 else None
        for x, y in source.test_batches(part=part):
            with autocast():
                outs = net(x.unsqueeze(0).expand(len(tests), *x.shape))
            for pos, j in enumerate(idx):
                hits[pos] += class_hits(logits_of(outs[j]).argmax(-1), y, num_classes)
        distributed.all_sum(hits)
        for pos, j in enumerate(idx):
            out[j] = summarize_hits(hits[pos], tests[j][2])
    net.train()
    return out


def _test_size(source: Source) -> int:
    return len(source.test_y) if isinstance(source, TensorSource) else len(source.test_set)  # type: ignore[arg-type]
