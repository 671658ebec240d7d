"""K independent CIFAR ResNets fused into one network with grouped convolutions (HFTA-style horizontal fusion)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones.resnet_cifar import ResNetCifar

HEAD_KEYS = ("fc.weight", "fc.bias")  # stacked along a new leading K dim; every other tensor is concatenated on dim 0


class PackedShortcutA(nn.Module):
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


class PackedBasicBlock(nn.Module):
    """K BasicBlocks side by side: grouped 3x3 convs (groups=K) and BatchNorm over K*C channels (per model)."""

    def __init__(self, k: int, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(k * in_planes, k * planes, 3, stride, 1, bias=False, groups=k)
        self.bn1 = nn.BatchNorm2d(k * planes)
        self.conv2 = nn.Conv2d(k * planes, k * planes, 3, 1, 1, bias=False, groups=k)
        self.bn2 = nn.BatchNorm2d(k * planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = PackedShortcutA(k, in_planes, (planes - in_planes) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PackedLinear(nn.Module):
    """K linear heads: weight [K, C, F] (each slice an nn.Linear weight), bias [K, C]; [K, B, F] -> [K, B, C]."""

    def __init__(self, k: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k, out_features))
        bound = in_features ** -0.5
        for j in range(k):  # what ResNetCifar does to each of its own heads
            nn.init.kaiming_normal_(self.weight.data[j])
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.bmm(f, self.weight.transpose(1, 2)) + self.bias[:, None, :]


class PackedNormedLinear(nn.Module):
    """K cosine heads (NormedLinear): weight [K, F, C]; normalised features times normalised weight columns."""

    def __init__(self, k: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, in_features, out_features))
        for j in range(k):
            self.weight.data[j].uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.bmm(F.normalize(f, dim=-1), F.normalize(self.weight, dim=1))


class PackedResNetCifar(nn.Module):
    """K independent `ResNetCifar`s in one network; parameter names match `ResNetCifar`'s.

    Model j owns output channels j*C..(j+1)*C of every grouped conv and BatchNorm, and slice j of the head.
    Each model sees only its own batch, so its forward, its BN statistics and (with the loss summed over
    models) its gradients equal those of a stand-alone `ResNetCifar`.
    """

    def __init__(self, k: int, depth: int = 32, num_classes: int = 100, cosine_head: bool = False,
                 in_chans: int = 3, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        if k < 1 or num_classes < 1:
            raise ValueError(f"need k >= 1 and num_classes >= 1, got k={k}, num_classes={num_classes}")
        n = (depth - 2) // 6
        self.k, self.depth, self.num_classes, self.in_chans = k, depth, num_classes, in_chans
        self.cosine_head, self.widths = cosine_head, widths
        self.num_features = widths[2]
        self.conv1 = nn.Conv2d(k * in_chans, k * widths[0], 3, 1, 1, bias=False, groups=k)
        self.bn1 = nn.BatchNorm2d(k * widths[0])
        stages, in_planes = [], widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(PackedBasicBlock(k, in_planes, w, 2 if (i > 0 and j == 0) else 1))
                in_planes = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # fan_in of a grouped conv = in_planes * 9, as for one model
                nn.init.kaiming_normal_(m.weight)
        self.fc: nn.Module = PackedNormedLinear(k, self.num_features, num_classes) if cosine_head \
            else PackedLinear(k, self.num_features, num_classes)

    @classmethod
    def from_models(cls, models: Sequence[ResNetCifar]) -> PackedResNetCifar:
        """A packed model holding exact copies of `models` (same depth, widths and head)."""
        m0 = models[0]
        depth = 6 * len(m0.layer1) + 2
        widths = (m0.layer1[0].conv1.out_channels, m0.layer2[0].conv1.out_channels, m0.layer3[0].conv1.out_channels)
        packed = cls(len(models), depth, m0.num_classes, m0.cosine_head, m0.conv1.in_channels, widths)
        packed.load_state_dict(pack_state(models))
        return packed.to(m0.conv1.weight.device)

    def to_models(self) -> list[ResNetCifar]:
        """K separate `ResNetCifar`s with this model's weights and BN buffers (on this model's device)."""
        out = []
        for i in range(self.k):
            m = ResNetCifar(self.depth, self.num_classes, self.in_chans, self.cosine_head, self.widths)
            m.load_state_dict(unpack_state(self, i))
            out.append(m.to(self.conv1.weight.device))
        return out

    def pack_input(self, x: torch.Tensor) -> torch.Tensor:
        """[K, B, C, H, W] -> [B, K*C, H, W] (model j reads channels j*C..(j+1)*C), channels_last if the model is."""
        k, b, c, h, w = x.shape
        if k != self.k:
            raise ValueError(f"input has {k} model batches, the packed model holds {self.k} models")
        if self.conv1.weight.is_contiguous(memory_format=torch.channels_last) and not self.conv1.weight.is_contiguous():
            return x.permute(1, 3, 4, 0, 2).reshape(b, h, w, k * c).permute(0, 3, 1, 2)
        return x.transpose(0, 1).reshape(b, k * c, h, w)

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """Packed input [B, K*C, H, W] -> logits [K, B, num_classes]."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        f = x.mean(dim=(2, 3))  # [B, K*F]
        return self.fc(f.view(f.shape[0], self.k, self.num_features).transpose(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-model batches [K, B, C, H, W] -> logits [K, B, num_classes]."""
        return self.forward_flat(self.pack_input(x))


def pack_state(models: Sequence[ResNetCifar]) -> dict[str, torch.Tensor]:
    """State dict of a `PackedResNetCifar` holding `models` (in order).

    Convolution weights and BN tensors are concatenated along the output channels, heads are stacked.
    `num_batches_tracked` (one counter per packed BN) is taken from the first model.

    Args:
        models: K `ResNetCifar`s of the same architecture.

    Returns:
        A state dict for `PackedResNetCifar(len(models), ...)`.
    """
    states = [m.state_dict() for m in models]
    keys = list(states[0])
    for s in states[1:]:
        if list(s) != keys or any(s[key].shape != states[0][key].shape for key in keys):
            raise ValueError("all packed models must have the same architecture")
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        ts = [s[key].detach() for s in states]
        if key in HEAD_KEYS:
            out[key] = torch.stack(ts)
        elif key.endswith("num_batches_tracked"):
            out[key] = ts[0].clone()
        else:
            out[key] = torch.cat(ts, dim=0)
    return out


def unpack_state(packed: PackedResNetCifar | Mapping[str, torch.Tensor], i: int,
                 k: int | None = None) -> dict[str, torch.Tensor]:
    """Model i's slice of a packed model or of any packed name->tensor mapping (a state dict, its gradients).

    Args:
        packed: a `PackedResNetCifar`, or a mapping with its parameter / buffer names.
        i: which model, 0 <= i < K.
        k: number of packed models; read from the model or from the mapping's `fc.weight` when omitted.

    Returns:
        A `ResNetCifar` state dict (fresh tensors, not views of the packed ones).
    """
    if isinstance(packed, PackedResNetCifar):
        k, tensors = packed.k, packed.state_dict()
    else:
        tensors = packed
        if k is None:
            if "fc.weight" not in tensors:
                raise ValueError("pass k: the mapping has no fc.weight to read it from")
            k = tensors["fc.weight"].shape[0]
    if not 0 <= i < k:
        raise IndexError(f"model index {i} out of range for {k} packed models")
    out: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        t = t.detach()
        if key in HEAD_KEYS:
            out[key] = t[i].clone()
        elif t.dim() == 0:
            out[key] = t.clone()
        else:
            out[key] = t.chunk(k, dim=0)[i].clone()
    return out
