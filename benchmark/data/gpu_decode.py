"""The gpu_decode input pipeline for file datasets: threads read JPEG bytes, torchvision decodes a batch on the
training device, RandomResizedCrop / flip / ColorJitter / normalise run there, in the samplers' index order."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

from benchmark.data.base import DataError
from benchmark.data.device_ops import ColorJitter, hflip
from benchmark.data.pipeline import host_to_device
from benchmark.data.split_lists import FileLTData

Tensor = torch.Tensor
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def rrc_boxes(h: Tensor, w: Tensor, gen: torch.Generator, scale: tuple[float, float] = SCALE,
              ratio: tuple[float, float] = RATIO) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torchvision RandomResizedCrop.get_params for images of sizes (h[i], w[i]) at once (int64 [B] on the
    generator's device): ten (area, log-ratio) tries each, the first that fits wins, else the central crop of the
    clamped aspect ratio. Returns top, left, height, width."""
    b, dev = len(h), gen.device
    h, w = h.to(dev, torch.float64), w.to(dev, torch.float64)
    area = (h * w)[:, None]
    target = area * (torch.rand((b, 10), generator=gen, device=dev, dtype=torch.float64) * (scale[1] - scale[0])
                     + scale[0])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(torch.rand((b, 10), generator=gen, device=dev, dtype=torch.float64) * (hi - lo) + lo)
    cw, ch = torch.sqrt(target * aspect).round(), torch.sqrt(target / aspect).round()
    ok = (cw > 0) & (cw <= w[:, None]) & (ch > 0) & (ch <= h[:, None])
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = ok.any(dim=1)
    in_ratio = w / h  # the fallback: the whole image, clamped to the ratio range
    fw = torch.where(in_ratio < min(ratio), w, torch.where(in_ratio > max(ratio), (h * max(ratio)).round(), w))
    fh = torch.where(in_ratio < min(ratio), (w / min(ratio)).round(), h)
    ch = torch.where(found, ch.gather(1, first).squeeze(1), fh)
    cw = torch.where(found, cw.gather(1, first).squeeze(1), fw)
    u = torch.rand((2, b), generator=gen, device=dev, dtype=torch.float64)
    top = torch.minimum((u[0] * (h - ch + 1)).floor(), h - ch)
    left = torch.minimum((u[1] * (w - cw + 1)).floor(), w - cw)
    top = torch.where(found, top, ((h - fh) / 2).floor())
    left = torch.where(found, left, ((w - fw) / 2).floor())
    return top.long(), left.long(), ch.long(), cw.long()


def resize_crop(img: Tensor, top: int, left: int, ch: int, cw: int, size: int) -> Tensor:
    """One uint8 CHW image's box resized to size x size, bilinear with antialiasing (as PIL's resize): float CHW."""
    box = img[None, :, top:top + ch, left:left + cw].float()
    return nnf.interpolate(box, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def resize_center(img: Tensor, short: int, size: int) -> Tensor:
    """Resize(short) (shorter side, torchvision's rounding) then CenterCrop(size) of a uint8 CHW image: float CHW."""
    h, w = img.shape[-2:]
    nh, nw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    x = nnf.interpolate(img[None].float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    x = x.round_().clamp_(0, 255)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return x[0, :, top:top + size, left:left + size]


@dataclass
class FileBatch:
    """One step's batch, decoded and augmented on demand (a foreground batch that is never used decodes nothing)."""

    source: GpuDecodeSource
    idx: list[int]
    data: Future  # of the decoded images (see GpuDecodeSource.decoded)
    gen: torch.Generator  # the stream's private CPU generator for the augmentation draws

    def __call__(self) -> tuple[Tensor, Tensor]:
        s = self.source
        imgs = s.ready(*self.data.result())
        h = torch.tensor([im.shape[-2] for im in imgs])
        w = torch.tensor([im.shape[-1] for im in imgs])
        top, left, ch, cw = (t.tolist() for t in rrc_boxes(h, w, self.gen))
        flip = torch.rand(len(imgs), generator=self.gen) < 0.5
        x = torch.stack([resize_crop(im, *box, s.size) for im, *box in zip(imgs, top, left, ch, cw, strict=True)])
        x = hflip(x.round_().clamp_(0, 255).to(torch.uint8), host_to_device(flip, s.device))
        if s.jitter is not None:
            order, factors = s.jitter.draw(len(imgs), self.gen)
            x = s.jitter.apply(x, host_to_device(order, s.device), host_to_device(factors, s.device))
        y = s.labels[host_to_device(torch.tensor(self.idx), s.device)]
        return s.normalize(x), y


class GpuDecodeSource:
    """File datasets with `train.pipeline: gpu_decode`. Same streams as the reference `LoaderSource`: it is handed
    the samplers' orders, draws one seed from the run's generator per stream per epoch (as the reference seeds its
    workers), and takes the augmentation draws from a private generator seeded with it; so the run's generator, and
    with it every sampled index, follows the reference path exactly.

    Threads read the files `prefetch` batches ahead of each stream; one decode thread decodes them in that order
    (on CUDA on its own stream, the training stream waits on an event), so decoding overlaps the training step; the
    crops, flips and jitter are drawn and applied when the step takes the batch."""

    kind = "gpu_decode"

    def __init__(self, data: FileLTData, device: torch.device, threads: int = 8, prefetch: int = 3) -> None:
        self.root = Path(data.root)
        self.train_paths, self.test_paths = data.train_paths, data.test_paths
        self.labels = torch.from_numpy(data.train_y).to(device)
        self.test_y = torch.from_numpy(data.test_y).to(device)
        self.device, self.size, self.prefetch = device, data.image_size, max(1, prefetch)
        self.mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(data.std, device=device).view(1, 3, 1, 1) * 255
        self.jitter = ColorJitter(0.4, 0.4, 0.4, 0.0, device) if data.jitter else None
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="ltbench-read")
        self.decoder = ThreadPoolExecutor(1, thread_name_prefix="ltbench-decode")
        self.side = torch.cuda.Stream(device) if device.type == "cuda" else None

    def read(self, paths: list[str], idx: list[int]) -> list[Tensor]:
        """The raw bytes of the images `idx` (uint8 1-D CPU tensors)."""
        out = []
        for i in idx:
            p = self.root / paths[i]
            try:
                out.append(read_file(str(p)))
            except RuntimeError as e:
                raise DataError(f"image {p} cannot be read (listed as {paths[i]!r} under root {self.root}; "
                                f"{str(e).rsplit(', ', 1)[-1]})") from None
        return out

    def decode(self, data: list[Tensor]) -> list[Tensor]:
        """Batched JPEG decode on the device (RGB uint8 CHW); a batch the decoder refuses (a PNG or CMYK file among
        the JPEGs) is decoded image by image on the CPU instead."""
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            return [decode_image(d, mode=ImageReadMode.RGB).to(self.device) for d in data]

    def decoded(self, read: Future) -> tuple[list[Tensor], torch.cuda.Event | None]:
        """The images of a read batch, decoded (on the decode thread; on CUDA on the side stream, with the event
        that marks the end of the decode)."""
        data = read.result()
        if self.side is None:
            return self.decode(data), None
        with torch.cuda.stream(self.side):
            imgs = self.decode(data)
            done = torch.cuda.Event()
            done.record(self.side)
        return imgs, done

    def ready(self, imgs: list[Tensor], done: torch.cuda.Event | None) -> list[Tensor]:
        """The decoded images, usable on the current stream."""
        if done is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(done)
            for im in imgs:
                im.record_stream(current)  # the allocator keeps them until the training stream is done with them
        return imgs

    def normalize(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std

    def _submit(self, paths: list[str], chunk: list[int]) -> Future:
        return self.decoder.submit(self.decoded, self.pool.submit(self.read, paths, chunk))

    def _stream(self, paths: list[str], chunks: list[list[int]]) -> Iterator[tuple[list[int], Future]]:
        """Each chunk with the future of its decoded images, read and decoded `prefetch` chunks ahead."""
        pending: deque[Future] = deque()
        for i in range(min(self.prefetch, len(chunks))):
            pending.append(self._submit(paths, chunks[i]))
        for i, chunk in enumerate(chunks):
            fut = pending.popleft()
            if i + self.prefetch < len(chunks):
                pending.append(self._submit(paths, chunks[i + self.prefetch]))
            yield chunk, fut

    def batches(self, order: Tensor, bs: int, steps: int, gen: torch.Generator,
                shard: tuple[int, int] = (0, 1)) -> Iterator[FileBatch]:
        rank, world = shard
        chunks = [order[i * bs:(i + 1) * bs][rank::world].tolist() for i in range(steps)]
        seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())  # = the reference's draw
        aug = torch.Generator().manual_seed(seed)
        for chunk, fut in self._stream(self.train_paths, chunks):
            yield FileBatch(self, chunk, fut, aug)

    def test_batches(self, bs: int = 256, part: range | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Test batches in list order; `part`: only these positions (a rank's slice), decoded by this rank alone."""
        idx = list(part if part is not None else range(len(self.test_paths)))
        chunks = [idx[i:i + bs] for i in range(0, len(idx), bs)]
        short = int(self.size * 256 / 224)
        for chunk, fut in self._stream(self.test_paths, chunks):
            x = torch.stack([resize_center(im, short, self.size) for im in self.ready(*fut.result())])
            yield self.normalize(x), self.test_y[chunk[0]:chunk[-1] + 1]


def crop_area_fractions(h: int, w: int, n: int, seed: int = 0) -> np.ndarray:
    """Crop area / image area of n draws of `rrc_boxes` on an h x w image (for comparisons with torchvision's)."""
    _, _, ch, cw = rrc_boxes(torch.full((n,), h), torch.full((n,), w), torch.Generator().manual_seed(seed))
    return (ch * cw).double().div(h * w).numpy()
