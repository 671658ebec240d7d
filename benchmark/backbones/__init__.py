"""Backbones: a name registry of timm models; importing this package registers every one (any timm name also works)."""

from benchmark.backbones import resnet_cifar, ride, torchvision_layout  # noqa: F401  (registration side effects)
from benchmark.backbones.build import backbone_spec, build_backbone, check_backbone, supports_cosine_head
from benchmark.backbones.spec import BackboneSpec, backbones

__all__ = ["BackboneSpec", "backbone_spec", "backbones", "build_backbone", "check_backbone", "supports_cosine_head"]
