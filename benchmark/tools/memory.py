"""Training-memory estimate of a backbone at a batch size: the tensors its forward saves for backward, counted on
the CPU at a small batch and scaled, plus weights, gradients and SGD momentum (Table 8's batch 512 question)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from benchmark.backbones import build_backbone
from benchmark.engine.step import bf16_autocast

GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per image saved for backward, fixed bytes (weights + grads + momentum) and the total at `batch`."""

    backbone: str
    precision: str
    image_size: int
    saved_bytes_per_image: float
    fixed_bytes: int
    batch: int
    total_gib: float  # saved activations x batch + fixed; allocator slack and kernel workspaces come on top

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def saved_bytes(model: nn.Module, x: torch.Tensor, bf16: bool = False) -> int:
    """Bytes of the distinct storages the forward of `model` on `x` saves for backward (train mode)."""
    seen: dict[tuple[int, torch.device], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[(s.data_ptr(), t.device)] = s.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), bf16_autocast(x.device, bf16)():
        model(x)
    return sum(seen.values())


def estimate(backbone: str, batch: int = 512, image_size: int = 224, precision: str = "fp32",
             num_classes: int = 8142, probe_batch: int = 2) -> MemoryEstimate:
    """Saved-activation bytes measured at `probe_batch` on the CPU, scaled to `batch`; fixed = 3 x fp32 parameters.
    The probe's per-image figure excludes what does not grow with the batch (its weights saved by layers)."""
    torch.manual_seed(0)
    model = build_backbone(backbone, num_classes)
    params = sum(p.numel() for p in model.parameters())
    bf16 = precision == "bf16"
    a = saved_bytes(model, torch.randn(probe_batch, 3, image_size, image_size), bf16)
    b = saved_bytes(model, torch.randn(2 * probe_batch, 3, image_size, image_size), bf16)
    per_image = (b - a) / probe_batch
    fixed = 3 * 4 * params
    return MemoryEstimate(backbone, precision, image_size, per_image, fixed, batch,
                          (per_image * batch + fixed) / GIB)
