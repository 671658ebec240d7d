"""Batch sources for the training loop: a device-resident tensor path and a DataLoader (reference) path."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmark.data.augment import augmentations
from benchmark.data.base import LTData
from benchmark.data.pipeline import BatchAugment, eval_batches, to_device_images

Batch = Callable[[], tuple[torch.Tensor, torch.Tensor]]  # produces (normalised images, labels) on the device


@dataclass(frozen=True)
class LazyBatch:
    """One step's batch of a device-resident split, built on demand: a batch never used draws nothing."""

    source: TensorSource
    idx: torch.Tensor
    gen: torch.Generator

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.source.aug(self.idx, self.gen), self.source.labels[self.idx]


def build_batches(batches: Sequence[Batch]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Several runs' batches of one step. Batches of one device split with the standard crop / flip draw their own
    crops from their own generators and share one gather (the values of building each alone, fewer kernels)."""
    out: list[Any] = [None] * len(batches)
    shared: dict[int, list[int]] = {}
    for i, b in enumerate(batches):
        if isinstance(b, LazyBatch) and type(b.source.aug) is BatchAugment:  # crop + flip only
            shared.setdefault(id(b.source), []).append(i)
        else:
            out[i] = b()
    for members in shared.values():
        group = [batches[i] for i in members]
        source = group[0].source  # type: ignore[union-attr]
        draws = [source.aug.draw(len(b.idx), b.gen) for b in group]  # type: ignore[union-attr]
        idx = torch.cat([b.idx for b in group])  # type: ignore[union-attr]
        x = source.aug.apply(idx, *(torch.cat(parts) for parts in zip(*draws, strict=True)))
        sizes = [len(b.idx) for b in group]  # type: ignore[union-attr]
        for i, xi, yi in zip(members, x.split(sizes), source.labels[idx].split(sizes), strict=True):
            out[i] = (xi, yi)
    return out


class TensorSource:
    """The split as uint8 on the training device; crop/flip/normalise batched there; batches built on demand."""

    kind = "tensor"

    def __init__(self, data: LTData, augment: str, device: torch.device) -> None:
        self.labels = torch.from_numpy(data.train_y).to(device)
        self.aug = augmentations.get(augment)(to_device_images(data.train_x, device), data.mean, data.std,
                                              data.crop_pad)
        self.test_x = to_device_images(data.test_x, device)
        self.test_y = torch.from_numpy(data.test_y).to(device)

    def batches(self, order: torch.Tensor, bs: int, steps: int, gen: torch.Generator,
                shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        """One lazy batch per step: a batch that is never used costs nothing (and draws nothing). With several
        ranks, rank r takes every world-th image of each global batch (DataParallel-style split)."""
        rank, world = shard
        for step in range(steps):
            yield LazyBatch(self, order[step * bs:(step + 1) * bs][rank::world], gen)

    def test_batches(self, bs: int = 1000, part: range | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised test batches in list order; `part`: only these (contiguous) positions, a rank's slice."""
        lo, hi = (part.start, part.stop) if part is not None else (0, len(self.test_y))
        for x, y in eval_batches(self.test_x[lo:hi], self.test_y[lo:hi], bs):
            yield self.aug.normalize(x), y


class _ArrayDataset(Dataset):
    """uint8 HWC arrays served as PIL images through torchvision transforms (the reference CIFAR pipeline)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Any) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def reference_cifar_transforms(data: LTData) -> tuple[Any, Any]:
    """RandomCrop(size, padding) + RandomHorizontalFlip + ToTensor + Normalize, and ToTensor + Normalize."""
    from torchvision import transforms as T

    size = data.train_x.shape[1]
    norm = T.Normalize(data.mean, data.std)
    train = T.Compose([T.RandomCrop(size, padding=data.crop_pad), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    return train, T.Compose([T.ToTensor(), norm])


class _Plan:
    """A batch sampler whose batches are replaced for each pass, so one DataLoader keeps its workers across epochs."""

    def __init__(self) -> None:
        self.chunks: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


class LoaderSource:
    """DataLoader workers decode and transform each image on the CPU, as the official code does.

    `train_set` / `test_set` are map-style datasets yielding (normalised CHW tensor, label); the batch
    order comes from the run's samplers, so both sources draw the same distributions. Workers are persistent: each
    stream (background, foreground, test) reuses an idle loader and its worker processes, which are seeded once when
    they start and continue their random streams from epoch to epoch.
    """

    kind = "reference"

    def __init__(self, train_set: Dataset, test_set: Dataset, labels: np.ndarray, device: torch.device,
                 workers: int) -> None:
        self.train_set, self.test_set = train_set, test_set
        self.labels = torch.from_numpy(labels).to(device)
        self.device, self.workers = device, workers
        self._idle: dict[int, list[tuple[DataLoader, _Plan]]] = {}

    @classmethod
    def for_arrays(cls, data: LTData, device: torch.device, workers: int) -> LoaderSource:
        train_t, test_t = reference_cifar_transforms(data)
        return cls(_ArrayDataset(data.train_x, data.train_y, train_t), _ArrayDataset(data.test_x, data.test_y, test_t),
                   data.train_y, device, workers)

    def _batches_of(self, dataset: Dataset, batches: list[list[int]], seed: int) -> Iterator[Any]:
        """Load `batches` of `dataset` with an idle persistent loader of that dataset (a new one when none is idle);
        the loader is idle again once its last batch is out."""
        idle = self._idle.setdefault(id(dataset), [])
        if idle:
            loader, plan = idle.pop()
        else:
            plan = _Plan()
            loader = DataLoader(dataset, batch_sampler=plan, num_workers=self.workers,
                                pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(seed),
                                persistent_workers=self.workers > 0)
        plan.chunks = batches
        for i, batch in enumerate(loader):
            if i == len(batches) - 1:
                idle.append((loader, plan))
            yield batch

    def batches(self, order: torch.Tensor, bs: int, steps: int, gen: torch.Generator,
                shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        rank, world = shard
        chunks = [order[i * bs:(i + 1) * bs][rank::world].tolist() for i in range(steps)]
        seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())  # worker RNG seeds
        for x, y in self._batches_of(self.train_set, chunks, seed):
            xb, yb = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            yield lambda xb=xb, yb=yb: (xb, yb)

    def test_batches(self, bs: int = 256, part: range | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Test batches in list order; `part`: only these positions (a rank's slice), decoded by this rank alone."""
        idx = list(part if part is not None else range(len(self.test_set)))  # type: ignore[arg-type]
        chunks = [idx[i:i + bs] for i in range(0, len(idx), bs)]
        for x, y in self._batches_of(self.test_set, chunks, 0):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
