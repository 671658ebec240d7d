"""Several runs' networks as one module: CIFAR ResNets of one shape fused with grouped convolutions (HFTA-style),
any other network side by side."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones.resnet_cifar import ResNetCifar

Tensors = Mapping[str, torch.Tensor]


class FusedShortcutA(nn.Module):
    """Option-A shortcut of each of K models: subsample by 2, zero-pad that model's channels on both sides."""

    def __init__(self, k: int, in_planes: int, pad: int) -> None:
        super().__init__()
        self.k, self.in_planes, self.pad = k, in_planes, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, :, ::2, ::2]
        b, _, h, w = s.shape
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            s = s.permute(0, 2, 3, 1).reshape(b, h, w, self.k, self.in_planes)  # channel dim stays innermost
            s = F.pad(s, (self.pad, self.pad))
            return s.reshape(b, h, w, -1).permute(0, 3, 1, 2)  # channels_last strides, like the input
        s = F.pad(s.reshape(b, self.k, self.in_planes, h, w), (0, 0, 0, 0, self.pad, self.pad))
        return s.reshape(b, -1, h, w)


class FusedBasicBlock(nn.Module):
    """K BasicBlocks side by side: grouped 3x3 convs (groups=K) and BatchNorm over K*C channels (per model)."""

    def __init__(self, k: int, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(k * in_planes, k * planes, 3, stride, 1, bias=False, groups=k)
        self.bn1 = nn.BatchNorm2d(k * planes)
        self.conv2 = nn.Conv2d(k * planes, k * planes, 3, 1, 1, bias=False, groups=k)
        self.bn2 = nn.BatchNorm2d(k * planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = FusedShortcutA(k, in_planes, (planes - in_planes) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def resnet_cifar_shape(m: ResNetCifar) -> tuple[int, tuple[int, int, int], int]:
    """(depth, widths, input channels): what two ResNetCifars must share to be fused."""
    widths = (m.layer1[0].conv1.out_channels, m.layer2[0].conv1.out_channels, m.layer3[0].conv1.out_channels)
    return 6 * len(m.layer1) + 2, widths, m.conv1.in_channels


class FusedResNetCifar(nn.Module):
    """K `ResNetCifar` trunks fused into grouped convolutions, each member with its own head (linear or cosine).

    Member j owns output channels j*C..(j+1)*C of every grouped conv and BatchNorm, and head `fc.j`. It sees only its
    own batch, so its forward, its BN statistics and (the pack's loss being the sum of the members' losses) its
    gradients are those of a stand-alone `ResNetCifar`. Trunk tensors keep `ResNetCifar`'s names.
    """

    def __init__(self, models: Sequence[ResNetCifar]) -> None:
        super().__init__()
        k = len(models)
        if k < 1 or len({resnet_cifar_shape(m) for m in models}) != 1:
            raise ValueError("fused models must be ResNetCifars of one depth, width and input size")
        depth, widths, in_chans = resnet_cifar_shape(models[0])
        n = (depth - 2) // 6
        self.k, self.in_chans, self.num_features = k, in_chans, widths[2]
        self.conv1 = nn.Conv2d(k * in_chans, k * widths[0], 3, 1, 1, bias=False, groups=k)
        self.bn1 = nn.BatchNorm2d(k * widths[0])
        stages, in_planes = [], widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(FusedBasicBlock(k, in_planes, w, 2 if (i > 0 and j == 0) else 1))
                in_planes = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.ModuleList(copy.deepcopy(m.fc) for m in models)
        self.load_state_dict(self.join([m.state_dict() for m in models]))
        self.to(models[0].conv1.weight.device)

    def join(self, members: Sequence[Tensors]) -> dict[str, torch.Tensor]:
        """Members' tensors (`ResNetCifar` names: a state dict, momentum buffers) in this module's layout: trunk tensors
        concatenated along the output channels, heads under `fc.j`, scalar counters from the first member."""
        out: dict[str, torch.Tensor] = {}
        for key in members[0]:
            if not key.startswith("fc."):
                ts = [m[key].detach() for m in members]
                out[key] = ts[0].clone() if ts[0].dim() == 0 else torch.cat(ts, dim=0)
        for j, m in enumerate(members):  # heads may differ in kind (linear, cosine) and so in tensors
            out.update({f"fc.{j}.{key[3:]}": t.detach() for key, t in m.items() if key.startswith("fc.")})
        return out

    def split(self, tensors: Tensors, j: int) -> dict[str, torch.Tensor]:
        """Member j's slice of tensors in this module's layout, under `ResNetCifar` names (fresh tensors)."""
        out: dict[str, torch.Tensor] = {}
        for key, t in tensors.items():
            t = t.detach()
            if key.startswith(f"fc.{j}."):
                out["fc." + key[len(f"fc.{j}."):]] = t.clone()
            elif not key.startswith("fc."):
                out[key] = t.clone() if t.dim() == 0 else t.chunk(self.k, dim=0)[j].clone()
        return out

    def pack_input(self, x: torch.Tensor) -> torch.Tensor:
        """[K, B, C, H, W] -> [B, K*C, H, W] (member j reads channels j*C..(j+1)*C), channels_last if the model is."""
        k, b, c, h, w = x.shape
        if self.conv1.weight.is_contiguous(memory_format=torch.channels_last) and not self.conv1.weight.is_contiguous():
            return x.permute(1, 3, 4, 0, 2).reshape(b, h, w, k * c).permute(0, 3, 1, 2)
        return x.transpose(0, 1).reshape(b, k * c, h, w)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-member batches [K, B, C, H, W] -> each member's logits [B, num_classes]."""
        x = F.relu(self.bn1(self.conv1(self.pack_input(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        f = x.mean(dim=(2, 3)).view(x.shape[0], self.k, self.num_features)  # [B, K, F]
        return [head(f[:, j]) for j, head in enumerate(self.fc)]


class PackNet(nn.Module):
    """The networks of a pack: members whose backbones can be fused train as one grouped-conv network, every other
    member as its own module. `forward([K, B, C, H, W])` gives each member's output (a tensor, or a dict for
    multi-expert models); `split` / `join` move tensors between a member's own layout and the pack's."""

    def __init__(self, models: Sequence[nn.Module], channels_last: bool = False) -> None:
        super().__init__()
        self.k, self.channels_last = len(models), channels_last
        buckets: dict[Any, list[int]] = {}
        for j, m in enumerate(models):
            key = ("fused", resnet_cifar_shape(m)) if type(m) is ResNetCifar else ("own", j)
            buckets.setdefault(key, []).append(j)
        self.index = [idx for idx in buckets.values()]
        self.groups = nn.ModuleList(
            FusedResNetCifar([models[j] for j in idx]) if len(idx) > 1 else models[idx[0]] for idx in self.index)
        if channels_last:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.where = {j: (g, pos) for g, idx in enumerate(self.index) for pos, j in enumerate(idx)}

    def _fused(self, g: int) -> bool:
        return isinstance(self.groups[g], FusedResNetCifar)

    def forward(self, x: torch.Tensor) -> list[Any]:
        outs: list[Any] = [None] * self.k
        for g, idx in enumerate(self.index):
            if self._fused(g):
                xs = x[idx[0]:idx[-1] + 1] if idx == list(range(idx[0], idx[-1] + 1)) else x[idx]
                group_out = self.groups[g](xs)
            else:
                xj = x[idx[0]]
                group_out = [self.groups[g](xj.contiguous(memory_format=torch.channels_last) if self.channels_last
                                            else xj)]
            for j, o in zip(idx, group_out, strict=True):
                outs[j] = o
        return outs

    def split(self, tensors: Tensors, j: int) -> dict[str, torch.Tensor]:
        """Member j's tensors in its own model's layout, from tensors named like this module's state dict."""
        g, pos = self.where[j]
        prefix = f"groups.{g}."
        mine = {key[len(prefix):]: t for key, t in tensors.items() if key.startswith(prefix)}
        if self._fused(g):
            return self.groups[g].split(mine, pos)
        return {key: t.detach().clone() for key, t in mine.items()}

    def join(self, members: Sequence[Tensors]) -> dict[str, torch.Tensor]:
        """The members' tensors (each in its own model's layout) named as this module's state dict."""
        out: dict[str, torch.Tensor] = {}
        for g, idx in enumerate(self.index):
            group = self.groups[g].join([members[j] for j in idx]) if self._fused(g) else dict(members[idx[0]])
            out.update({f"groups.{g}.{key}": t for key, t in group.items()})
        return out

    def member_models(self, templates: Sequence[nn.Module]) -> list[nn.Module]:
        """Copies of the members' own architectures (`templates`) holding their current weights and buffers."""
        state = self.state_dict()
        models = []
        for j, template in enumerate(templates):
            model = copy.deepcopy(template)
            model.load_state_dict(self.split(state, j))
            models.append(model)
        return models
