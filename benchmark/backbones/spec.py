"""The backbone registry: each name a timm model with the kwargs that match the official code, and what it takes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark.schema.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    """A timm model with the kwargs that make it match the official code, and what it can take."""

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    expert_heads: bool = False  # multi-expert (RIDE): own cosine heads, takes num_experts, no cosine classifier
    own_cosine_head: bool = False  # builds its cosine classifier itself (`cosine_head=True`, ResNet-32's use_norm)


backbones: Registry[BackboneSpec] = Registry("backbones")
