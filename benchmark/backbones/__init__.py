"""Backbones: every model is created through timm; importing this registers lt-bench's own models."""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from benchmark.backbones import resnet_cifar  # noqa: F401  (registers resnet32_cifar into timm)
from benchmark.backbones import ride as ride  # noqa: F401  (registers ride_resnet32 / ride_resnet50 into timm)
from benchmark.schema.registry import UnknownComponentError
from benchmark.schema.suggest import did_you_mean

# timm models a suite may name, with the kwargs that make them match the reference code.
BACKBONE_KWARGS: dict[str, dict[str, Any]] = {
    "resnet32_cifar": {},
    "ride_resnet32": {},
    "ride_resnet50": {},
    "resnet50": {"zero_init_last": False},
    "resnet101": {"zero_init_last": False},
    "resnet152": {"zero_init_last": False},
    "wide_resnet50_2": {"zero_init_last": False},
}


BACKBONE_DESCRIPTIONS = {
    "resnet32_cifar": "ResNet-32 of LDAM-DRW/CMO for 32x32 inputs (option-A shortcuts; cosine_head for LDAM)",
    "ride_resnet32": "RIDE ResNet-32: shared stem + stage 1, 3 experts with own 24/48-wide stages, cosine heads x30",
    "ride_resnet50": "RIDE ResNet-50: shared stem + layer1-2, 3 experts with own layer3-4 (192/384 planes), cosine x30",
    "resnet50": "timm ResNet-50 (torchvision layout, zero_init_last=False)",
    "resnet101": "timm ResNet-101 (torchvision layout, zero_init_last=False)",
    "resnet152": "timm ResNet-152 (torchvision layout, zero_init_last=False)",
    "wide_resnet50_2": "timm Wide ResNet-50-2 (torchvision layout, zero_init_last=False)",
}


def check_backbone(name: str) -> None:
    """Raise UnknownComponentError unless timm knows `name`."""
    if name not in BACKBONE_KWARGS and not timm.is_model(name):
        hint = did_you_mean(name, list(BACKBONE_KWARGS) + timm.list_models())
        raise UnknownComponentError(f"unknown backbone '{name}' (not a timm model).{hint}")


def supports_cosine_head(name: str) -> bool:
    """Multi-expert RIDE models carry their own cosine heads; any other classifier can be made a cosine one."""
    return not name.startswith("ride_")


def build_backbone(name: str, num_classes: int, cosine_head: bool = False, **kwargs: Any) -> nn.Module:
    """`timm.create_model(name, pretrained=False, num_classes=...)` with reference-matching defaults.

    None-valued kwargs are dropped, so "unset" means the model's default. `cosine_head` gives the
    NormedLinear classifier LDAM needs: ResNet-32 builds it itself (`use_norm`), other models get their
    classifier replaced, as the reference does for ImageNet / iNaturalist (`model.fc = NormedLinear(...)`).
    """
    check_backbone(name)
    if cosine_head and not supports_cosine_head(name):
        raise ValueError(f"backbone '{name}' has its own expert heads and cannot take a cosine classifier")
    extra = {**BACKBONE_KWARGS.get(name, {}), **{k: v for k, v in kwargs.items() if v is not None}}
    if name == "resnet32_cifar":
        return timm.create_model(name, pretrained=False, num_classes=num_classes, cosine_head=cosine_head, **extra)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **extra)
    if cosine_head:
        attr = model.pretrained_cfg.get("classifier", "fc")
        setattr(model, attr, resnet_cifar.NormedLinear(model.get_classifier().in_features, num_classes))
    return model
