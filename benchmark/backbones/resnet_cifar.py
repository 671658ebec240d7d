"""ResNet-32 for CIFAR (LDAM-DRW / CMO version, option-A shortcuts), registered into timm."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from benchmark.backbones.spec import BackboneSpec, backbones
from benchmark.data.base import CIFAR_MEAN, CIFAR_STD


class NormedLinear(nn.Module):
    """Cosine classifier: normalised features times normalised weight columns, no bias, no scale."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1).mm(F.normalize(self.weight, dim=0))


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by 2 and zero-pad the channels on both sides."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = ShortcutA((planes - in_planes) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """3 stages of (depth - 2) / 6 BasicBlocks, widths 16/32/64, global pooling, linear or cosine head."""

    def __init__(self, depth: int = 32, num_classes: int = 100, in_chans: int = 3, cosine_head: bool = False,
                 widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.num_classes = num_classes
        self.num_features = widths[2]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, in_planes = [], widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, w, 2 if (i > 0 and j == 0) else 1))
                in_planes = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.cosine_head = cosine_head
        self.fc: nn.Module = self._make_head(num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        return NormedLinear(self.num_features, num_classes) if self.cosine_head \
            else nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = self._make_head(num_classes)


default_cfgs = generate_default_cfgs({
    "resnet32_cifar.untrained": {
        "num_classes": 100, "input_size": (3, 32, 32), "pool_size": (8, 8), "crop_pct": 1.0,
        "mean": CIFAR_MEAN, "std": CIFAR_STD, "first_conv": "conv1", "classifier": "fc",
    }
})


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs: Any) -> ResNetCifar:
    """ResNet-32 of LDAM-DRW / CMO (0.46M parameters); `cosine_head=True` for LDAM."""
    return build_model_with_cfg(ResNetCifar, "resnet32_cifar", pretrained, depth=32, **kwargs)


backbones.register("resnet32_cifar", "ResNet-32 of LDAM-DRW/CMO for 32x32 inputs (option-A shortcuts; cosine head "
                                     "for LDAM)")(BackboneSpec(own_cosine_head=True))
