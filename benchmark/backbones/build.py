"""Build a backbone by name through `timm.create_model`, with the classifier head its loss needs."""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from benchmark.backbones.resnet_cifar import NormedLinear
from benchmark.backbones.spec import BackboneSpec, backbones
from benchmark.schema.registry import UnknownComponentError


def backbone_spec(name: str) -> BackboneSpec:
    """The registered spec of `name`; any other timm model gets plain timm defaults (UnknownComponentError if timm
    does not know it either)."""
    if name in backbones:
        return backbones.get(name)
    if timm.is_model(name):
        return BackboneSpec()
    raise UnknownComponentError(backbones.unknown_message(name).rstrip(".") + ", or any timm model name.")


def check_backbone(name: str) -> None:
    """Raise UnknownComponentError unless the registry or timm knows `name`."""
    backbone_spec(name)


def supports_cosine_head(name: str) -> bool:
    """Multi-expert RIDE models carry their own cosine heads; any other classifier can be made a cosine one."""
    return not backbone_spec(name).expert_heads


def build_backbone(name: str, num_classes: int, cosine_head: bool = False, **kwargs: Any) -> nn.Module:
    """`timm.create_model(name, pretrained=False, num_classes=...)` with reference-matching defaults.

    None-valued kwargs are dropped, so "unset" means the model's default. `cosine_head` gives the
    NormedLinear classifier LDAM needs: ResNet-32 builds it itself (`use_norm`), other models get their
    classifier replaced, as the official code does for ImageNet / iNaturalist (`model.fc = NormedLinear(...)`,
    CMO's `models/resnet.py` and LDAM-DRW's `models/resnet_cifar.py`).
    """
    spec = backbone_spec(name)
    if cosine_head and spec.expert_heads:
        raise ValueError(f"backbone '{name}' has its own expert heads and cannot take a cosine classifier")
    extra = {**spec.kwargs, **{k: v for k, v in kwargs.items() if v is not None}}
    if spec.own_cosine_head:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, cosine_head=cosine_head, **extra)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **extra)
    if cosine_head:
        attr = model.pretrained_cfg.get("classifier", "fc")
        setattr(model, attr, NormedLinear(model.get_classifier().in_features, num_classes))
    return model
