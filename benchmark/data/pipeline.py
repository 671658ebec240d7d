"""Batched augmentation on a device-resident uint8 train split: pad-crop, flip, normalise."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def to_device_images(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC array -> uint8 NHWC tensor on the device."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def host_to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small host tensor made this step (draws, weights) to the device without waiting for the GPU:
    from pinned memory the copy is asynchronous; from pageable memory it may wait for queued work."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class BatchAugment:
    """RandomCrop(size, padding=pad, zero fill) + RandomHorizontalFlip + Normalize, for a batch of indices.

    Same distribution as the torchvision transforms of the reference code; the draws come from a
    torch generator, one crop offset pair and one flip bit per image.
    """

    def __init__(self, images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 pad: int = 4, flip: bool = True) -> None:
        n, h, w, c = images.shape
        self.h, self.w, self.pad, self.flip = h, w, pad, flip
        self.padded = torch.nn.functional.pad(images, (0, 0, pad, pad, pad, pad))  # zero pad H and W
        dev = images.device
        self.mean = torch.tensor(mean, device=dev).view(1, c, 1, 1) * 255
        self.std = torch.tensor(std, device=dev).view(1, c, 1, 1) * 255
        self.ar_h = torch.arange(h, device=dev)
        self.ar_w = torch.arange(w, device=dev)

    def draw(self, b: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crop offsets (top, left) in [0, 2*pad] and flip bits for b images."""
        dev = gen.device
        top = torch.randint(0, 2 * self.pad + 1, (b,), generator=gen, device=dev)
        left = torch.randint(0, 2 * self.pad + 1, (b,), generator=gen, device=dev)
        flip = torch.rand(b, generator=gen, device=dev) < 0.5 if self.flip else torch.zeros(b, dtype=torch.bool,
                                                                                               device=dev)
        return top, left, flip

    def apply(self, idx: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Crop/flip images `idx` with the given draws; returns normalised float NCHW."""
        rows = top[:, None] + self.ar_h  # [B, H]
        cols = torch.where(flip[:, None], left[:, None] + (self.w - 1 - self.ar_w), left[:, None] + self.ar_w)
        x = self.padded[idx[:, None, None], rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
        return self.normalize(x)

    def normalize(self, x_nhwc: torch.Tensor) -> torch.Tensor:
        return (x_nhwc.permute(0, 3, 1, 2).float() - self.mean) / self.std

    def __call__(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.apply(idx, *self.draw(len(idx), gen))


def eval_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential uint8 batches of the test split."""
    for i in range(0, len(y), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


class RotateAugment(BatchAugment):
    """RIDE's CIFAR train transform: RandomCrop(size, padding=pad) + RandomHorizontalFlip + RandomRotation(15) +
    Normalize, batched: crop and flip as `BatchAugment`, then each image turned by its own angle ~ U(-15, 15)
    degrees about its centre, nearest neighbour, zero fill (torchvision's RandomRotation defaults). Nearest-pixel
    sampling on the tensor grid can pick a neighbouring pixel at a few positions where PIL's rounding differs."""

    def __init__(self, images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], pad: int = 4,
                 degrees: float = 15.0) -> None:
        super().__init__(images, mean, std, pad)
        self.degrees = degrees

    def __call__(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = self.apply(idx, *self.draw(len(idx), gen))
        angle = (torch.rand(len(idx), generator=gen, device=gen.device) * 2 - 1) * self.degrees
        return rotate_batch(x, angle, self.normalize(torch.zeros(1, 1, 1, x.shape[1], device=x.device)))


def rotate_batch(x: torch.Tensor, degrees: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Turn each NCHW image by its angle (degrees, counter-clockwise as torchvision) about its centre; pixels from
    outside the image take `fill` ([1, C, 1, 1], e.g. black after normalisation)."""
    theta = torch.deg2rad(degrees.to(x.device, torch.float32))
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    # output (u, v) in [-1, 1] samples input at R(-theta) (u, v): counter-clockwise turn of the image content
    affine = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(affine, list(x.shape), align_corners=False)
    ones = torch.ones_like(x[:, :1])
    out = torch.nn.functional.grid_sample(torch.cat([x, ones], 1), grid, mode="nearest", padding_mode="zeros",
                                          align_corners=False)
    inside = out[:, -1:]
    return out[:, :-1] * inside + fill * (1 - inside)
