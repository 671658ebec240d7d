"""RIDE multi-expert ResNet-32 (CIFAR) and ResNet-50 (ImageNet/iNat) with cosine expert heads, registered into timm."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn
from torchvision.models.resnet import Bottleneck

from benchmark.backbones.resnet_cifar import BasicBlock, NormedLinear
from benchmark.backbones.spec import BackboneSpec, backbones
from benchmark.data.base import CIFAR_MEAN, CIFAR_STD


class RIDEBase(nn.Module):
    """Shared trunk, then per expert: its own late stages, global average pool, NormedLinear head, times s.

    Output (train and eval): {"logits": mean over experts [B, C], "experts": stacked expert logits [E, B, C]}.
    With num_classes=0 (timm's "no classifier") the output is the concatenated pooled expert features
    [B, E * expert_features] instead.
    """

    experts: nn.ModuleList
    heads: nn.ModuleList

    def __init__(self, num_classes: int, num_experts: int, expert_features: int, s: float) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        self.num_classes = num_classes
        self.num_experts = num_experts
        self.expert_features = expert_features
        self.num_features = num_experts * expert_features  # the pre-logits width: all experts' pooled features
        self.head_hidden_size = self.num_features
        self.s = s

    def _make_heads(self, num_classes: int) -> nn.ModuleList:
        return nn.ModuleList(
            NormedLinear(self.expert_features, num_classes) if num_classes > 0 else nn.Identity()
            for _ in range(self.num_experts))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared trunk's feature map (input of every expert)."""
        raise NotImplementedError

    def expert_features_of(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each expert's globally pooled features [B, expert_features] from the shared feature map."""
        return [branch(x).mean(dim=(2, 3)) for branch in self.experts]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
        feats = self.expert_features_of(x)
        if pre_logits or self.num_classes <= 0:
            return torch.cat(feats, dim=1)
        experts = torch.stack([head(f) * self.s for head, f in zip(self.heads, feats, strict=True)])
        return {"logits": experts.mean(dim=0), "experts": experts}

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.heads

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.heads = self._make_heads(num_classes)


class RIDEResNetCifar(RIDEBase):
    """RIDE ResNet-32: stem + stage 1 (16 ch) shared; per expert stages 2 and 3 (24/48 reduced, else 32/64)."""

    def __init__(self, depth: int = 32, num_classes: int = 100, num_experts: int = 3, reduce_dimension: bool = True,
                 in_chans: int = 3, s: float = 30.0, **_: Any) -> None:
        widths = (16, 24, 48) if reduce_dimension else (16, 32, 64)
        super().__init__(num_classes, num_experts, widths[2], s)
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = nn.Sequential(*[BasicBlock(widths[0], widths[0], 1) for _ in range(n)])
        self.experts = nn.ModuleList(nn.Sequential(self._stage(widths[0], widths[1], n),
                                                   self._stage(widths[1], widths[2], n))
                                     for _ in range(num_experts))
        for m in self.modules():  # heads are built afterwards: NormedLinear keeps its own init, as the reference
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
        self.heads = self._make_heads(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(F.relu(self.bn1(self.conv1(x))))

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int) -> nn.Sequential:
        # Option-A shortcut of the first block pads (planes - in_planes) // 2 channels per side (16->24: 4+4).
        return nn.Sequential(*[BasicBlock(in_planes if j == 0 else planes, planes, 2 if j == 0 else 1)
                               for j in range(n)])


class RIDEResNet(RIDEBase):
    """RIDE ResNet-50 (torchvision v1.5 Bottleneck): stem, layer1, layer2 shared; per expert layer3 and layer4."""

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), num_classes: int = 1000,
                 num_experts: int = 3, reduce_dimension: bool = True, in_chans: int = 3, s: float = 30.0,
                 **_: Any) -> None:
        planes3, planes4 = (192, 384) if reduce_dimension else (256, 512)
        super().__init__(num_classes, num_experts, planes4 * Bottleneck.expansion, s)
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._layer(64, 64, layers[0], 1)
        self.layer2 = self._layer(256, 128, layers[1], 2)
        e = Bottleneck.expansion
        self.experts = nn.ModuleList(nn.Sequential(self._layer(128 * e, planes3, layers[2], 2),
                                                   self._layer(planes3 * e, planes4, layers[3], 2))
                                     for _ in range(num_experts))
        for m in self.modules():  # the reference's init: N(0, sqrt(2 / (k*k*out))) for convs, BN 1 / 0
            if isinstance(m, nn.Conv2d):
                m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
        self.heads = self._make_heads(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x))))))

    @staticmethod
    def _layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(out))
        return nn.Sequential(Bottleneck(inplanes, planes, stride, downsample),
                             *[Bottleneck(out, planes) for _ in range(1, blocks)])


default_cfgs = generate_default_cfgs({
    "ride_resnet32.untrained": {
        "num_classes": 100, "input_size": (3, 32, 32), "pool_size": (8, 8), "crop_pct": 1.0,
        "mean": CIFAR_MEAN, "std": CIFAR_STD, "first_conv": "conv1", "classifier": "heads",
    },
    "ride_resnet50.untrained": {
        "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.875,
        "interpolation": "bilinear", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv1", "classifier": "heads",
    },
})


@register_model
def ride_resnet32(pretrained: bool = False, **kwargs: Any) -> RIDEResNetCifar:
    """RIDE ResNet-32 (num_experts=3, reduce_dimension=True: 24/48-wide expert stages, cosine heads x 30)."""
    return build_model_with_cfg(RIDEResNetCifar, "ride_resnet32", pretrained, depth=32, **kwargs)


@register_model
def ride_resnet50(pretrained: bool = False, **kwargs: Any) -> RIDEResNet:
    """RIDE ResNet-50 (num_experts=3, reduce_dimension=True: layer3/layer4 planes 192/384, cosine heads x 30)."""
    return build_model_with_cfg(RIDEResNet, "ride_resnet50", pretrained, layers=(3, 4, 6, 3), **kwargs)


backbones.register("ride_resnet32", "RIDE ResNet-32: shared stem + stage 1, 3 experts with own 24/48-wide stages, "
                                    "cosine heads x30")(BackboneSpec(expert_heads=True))
backbones.register("ride_resnet50", "RIDE ResNet-50: shared stem + layer1-2, 3 experts with own layer3-4 (192/384 "
                                    "planes), cosine x30")(BackboneSpec(expert_heads=True))
