"""BatchNorm over chunks of the batch ("ghost" BN): the statistics of G nn.DataParallel replicas, on one device."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GroupBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training, normalises each of `groups` chunks of the batch with that chunk's own mean and
    variance: the maths of nn.DataParallel over `groups` GPUs, which hands replica i the i-th `torch.chunk` of the
    batch (sizes ceil(B / G), the last one shorter) and runs an ordinary BatchNorm there.

    Running statistics follow chunk 0 alone, as in DataParallel, where replica 0 updates the module's own buffers in
    place and the other replicas update copies that are thrown away. Evaluation uses the running statistics, as
    BatchNorm2d. Parameters, buffers and state-dict keys are those of BatchNorm2d (checkpoints load either way).
    """

    def __init__(self, num_features: int, groups: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        if groups < 1:
            raise ValueError(f"BatchNorm groups must be >= 1, got {groups}")
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.groups == 1:
            return super().forward(x)
        chunks = x.chunk(self.groups)
        first = super().forward(chunks[0])  # updates the running statistics and the batch counter
        rest = [F.batch_norm(c, None, None, self.weight, self.bias, True, 0.0, self.eps) for c in chunks[1:]]
        return torch.cat([first, *rest])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, groups={self.groups}"


def use_bn_groups(model: nn.Module, groups: int) -> nn.Module:
    """Replace every nn.BatchNorm2d of `model` (in place) by a GroupBatchNorm2d over `groups` chunks that holds the
    same parameters and buffers; existing GroupBatchNorm2d layers get `groups`. Returns the model."""
    for parent in list(model.modules()):
        for name, m in list(parent.named_children()):
            if isinstance(m, GroupBatchNorm2d):
                m.groups = groups
            elif type(m) is nn.BatchNorm2d and groups != 1:
                g = GroupBatchNorm2d(m.num_features, groups, m.eps, m.momentum, m.affine, m.track_running_stats)
                g.weight, g.bias = m.weight, m.bias
                g.running_mean, g.running_var, g.num_batches_tracked = m.running_mean, m.running_var, \
                    m.num_batches_tracked
                g.train(m.training)
                setattr(parent, name, g)
    return model
