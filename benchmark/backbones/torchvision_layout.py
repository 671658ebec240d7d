"""timm's torchvision-layout ResNets as the official ImageNet-LT / iNaturalist code builds them."""

from __future__ import annotations

from benchmark.backbones.spec import BackboneSpec, backbones

TORCHVISION_LAYOUT = BackboneSpec({"zero_init_last": False})  # torchvision's init: last BN gamma 1, not timm's 0

for _name, _label in [("resnet50", "ResNet-50"), ("resnet101", "ResNet-101"), ("resnet152", "ResNet-152"),
                      ("wide_resnet50_2", "Wide ResNet-50-2")]:
    backbones.register(_name, f"timm {_label} (torchvision layout, zero_init_last=False)")(TORCHVISION_LAYOUT)
