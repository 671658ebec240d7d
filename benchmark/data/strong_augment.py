"""Strong 400-epoch augmentations (naver-ai/cmo, after PaCo): batched `cifar_strong` / `imagenet_strong`, PIL `*_pil`"""

# Registered names: `cifar_strong` and `imagenet_strong` are the batched device versions (device_augment.py, whose
# header lists how they differ from these PIL pipelines); `cifar_strong_pil` and `imagenet_strong_pil` are the
# per-image PIL reference below, which the tests compare against. All four are packable; only the batched ones are
# graph-safe (the PIL ones copy each batch to the host).
#
# The PIL versions follow the BatchAugment interface: `aug(idx, gen)` returns normalised float
# NCHW on the images' device, `aug.normalize(x_nhwc)` serves evaluation. Each image of the batch is copied to the
# CPU and run through one of two per-image pipelines, picked with probability 0.5 by Python's `random`, as the
# reference datasets do (`if random.random() < 0.5: transform[0] else transform[1]`). The ops are the reference's
# PIL transforms (torchvision v1 classes, a torchvision AutoAugment, timm's RandAugment), so RNG comes from the
# global Python / NumPy / torch-CPU generators; for each batch these are seeded from one draw of `gen` and
# restored afterwards, so a run is reproducible from the generator state and the global RNGs are left untouched.
#
# Where this differs from the official code (naver-ai/cmo, copied from PaCo):
# - AutoAugment: the reference uses util/autoaug.py's `CIFAR10Policy` (the DeepVoltaire third-party copy); here
#   torchvision's `v2.AutoAugment(AutoAugmentPolicy.CIFAR10, fill=128)` on the PIL image. Same 25 sub-policies,
#   probabilities, magnitude bins (shear 0-0.3, translate 0-150/331 of the side, rotate 0-30 deg, enhance 1 +/- 0-0.9,
#   posterize 8..4 bits) and random signs. Differences: torchvision resamples shear/rotate with NEAREST (the copy
#   uses BICUBIC for shear), its solarize thresholds are linspace(255, 0) instead of linspace(256, 0) (bin 0 then
#   inverts pure-white pixels), and the copy's rotate fills through an RGBA composite with grey 128 (same result).
# - Cutout: util/autoaug.py's `Cutout(n_holes=1, length=16)` (centre ~ np.random.randint over H and W, box
#   [c - 8, c + 8) clipped to the image, multiplied by 0 after ToTensor, i.e. black before Normalize). Same rule
#   here on the uint8 tensor, with the centre drawn from the seeded Python `random` instead of NumPy.
# - RandAugment: the reference's util/randaugment.py is a copy of an older timm `rand_augment_transform`; this uses
#   timm's current one with the same string "rand-n2-m10-mstd0.5" and hparams (translate_const int(0.45 * size),
#   fill = ImageNet mean (124, 116, 104), also for iNat). timm needs PIL images, hence PIL throughout. Its default op
#   set and level mappings equal the copy's (Posterize = the TPU "keep int(4m/10) bits" variant, SolarizeAdd,
#   TranslateXRel/YRel 0.45, each op with p 0.5, m ~ N(10, 0.5) clipped to [0, 10], bilinear or bicubic at random).
# - SimCLR blur: the reference's moco_loader.GaussianBlur, PIL `ImageFilter.GaussianBlur(radius=sigma)` with
#   sigma ~ U(0.1, 2); reproduced exactly (it is not torchvision's kernel-size-based GaussianBlur).
# - Image size: crops output the stored image size (32 for CIFAR, the stored side for ImageNet-LT / iNat) rather than
#   a fixed 224.

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image, ImageFilter
from timm.data.auto_augment import rand_augment_transform
from torchvision import transforms as T
from torchvision.transforms import v2
from torchvision.transforms.functional import pil_to_tensor

from benchmark.data.augment import augmentations
from benchmark.data.device_augment import CifarStrongBatch, ImagenetStrongBatch

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RandAugment fill colour, for ImageNet-LT and iNat alike (reference)
RANDAUG_FILL = tuple(min(255, round(255 * m)) for m in IMAGENET_MEAN)  # (124, 116, 104)
RANDAUG_CONFIG = "rand-n2-m10-mstd0.5"

ImageOp = Callable[[Image.Image], torch.Tensor]  # PIL image -> uint8 CHW tensor


@contextlib.contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's CPU generators for the block; restore their states afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class SimclrBlur:
    """The SimCLR / MoCo Gaussian blur of the reference: PIL GaussianBlur with radius sigma ~ U(lo, hi)."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        self.sigma = sigma

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


class Cutout:
    """Zero `n_holes` squares of side `length` (centre uniform over the image, clipped) in a CHW tensor."""

    def __init__(self, n_holes: int = 1, length: int = 16) -> None:
        self.n_holes, self.length = n_holes, length

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x.clone()
        for _ in range(self.n_holes):
            cy, cx = random.randrange(h), random.randrange(w)
            y1, y2 = max(cy - self.length // 2, 0), min(cy + self.length // 2, h)
            x1, x2 = max(cx - self.length // 2, 0), min(cx + self.length // 2, w)
            x[..., y1:y2, x1:x2] = 0
        return x


class TwoBranchAugment:
    """Per sample: pipeline `first` with probability p_first, else `second`; then Normalize on the device.

    `last_first` (bool [B], CPU) records which samples of the last batch took `first` (for tests and checks).
    """

    def __init__(self, images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], first: ImageOp,
                 second: ImageOp, p_first: float = 0.5) -> None:
        c = images.shape[3]
        self.images, self.first, self.second, self.p_first = images, first, second, p_first
        self.mean = torch.tensor(mean, device=images.device).view(1, c, 1, 1) * 255
        self.std = torch.tensor(std, device=images.device).view(1, c, 1, 1) * 255
        self.last_first: torch.Tensor | None = None

    def normalize(self, x_nhwc: torch.Tensor) -> torch.Tensor:
        return (x_nhwc.permute(0, 3, 1, 2).float() - self.mean) / self.std

    def __call__(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
        batch = self.images[idx].cpu().numpy()
        out, took_first = [], []
        with seeded_global_rngs(seed):
            for img in batch:
                a = random.random() < self.p_first
                pil = Image.fromarray(img)
                out.append(self.first(pil) if a else self.second(pil))
                took_first.append(a)
        self.last_first = torch.tensor(took_first, dtype=torch.bool)
        x = torch.stack(out).to(self.images.device)
        return (x.float() - self.mean) / self.std


def cifar_strong(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], pad: int = 4, *,
                 p_regular: float = 0.5, autoaugment: bool = True, flip: bool = True, cutout: int = 16,
                 simclr_blur: tuple[float, float] = (0.1, 2.0)) -> CifarStrongBatch:
    """Batched `cifar_strong_pil` on the images' device (same switches)."""
    return CifarStrongBatch(images, mean, std, pad, p_regular=p_regular, autoaugment=autoaugment, flip=flip,
                            cutout=cutout, simclr_blur=simclr_blur)


def imagenet_strong(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], pad: int = 0, *,
                    p_randaug: float = 0.5) -> ImagenetStrongBatch:
    """Batched `imagenet_strong_pil` on the images' device; `pad` is unused."""
    return ImagenetStrongBatch(images, mean, std, p_randaug=p_randaug, fill=RANDAUG_FILL)


def cifar_strong_pil(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], pad: int = 4, *,
                     p_regular: float = 0.5, autoaugment: bool = True, flip: bool = True, cutout: int = 16,
                     simclr_blur: tuple[float, float] = (0.1, 2.0)) -> TwoBranchAugment:
    """CMO / PaCo CIFAR `--use_randaug`: (a) crop+flip+AutoAugment+Cutout or (b) SimCLR-style, 50:50 per sample.

    The keyword switches exist for tests (e.g. Cutout alone); the registered augmentation uses the defaults.
    """
    size = (images.shape[1], images.shape[2])
    regular: list[Callable] = [T.RandomCrop(size, padding=pad)]
    if flip:
        regular.append(T.RandomHorizontalFlip())
    if autoaugment:
        regular.append(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10, fill=128))
    regular.append(pil_to_tensor)
    if cutout > 0:
        regular.append(Cutout(n_holes=1, length=cutout))
    sim = [
        T.RandomResizedCrop(size, scale=(0.2, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([SimclrBlur(simclr_blur)], p=0.5),
        pil_to_tensor,
    ]
    return TwoBranchAugment(images, mean, std, T.Compose(regular), T.Compose(sim), p_first=p_regular)


def imagenet_strong_pil(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], pad: int = 0, *,
                        p_randaug: float = 0.5) -> TwoBranchAugment:
    """CMO / PaCo ImageNet-LT and iNat `--use_randaug`: (a) RRC+flip+jitter+RandAugment or (b) SimCLR-style.

    `pad` is unused (the factory signature of the registry); outputs keep the stored image size.
    """
    first, second = imagenet_strong_branches((images.shape[1], images.shape[2]))
    return TwoBranchAugment(images, mean, std, first, second, p_first=p_randaug)


def imagenet_strong_branches(size: tuple[int, int]) -> tuple[ImageOp, ImageOp]:
    """The two per-sample PIL pipelines of the 400-epoch ImageNet-LT / iNat recipe (output uint8 CHW tensors)."""
    hparams = {"translate_const": int(size[0] * 0.45), "img_mean": RANDAUG_FILL}
    randaug = [
        T.RandomResizedCrop(size, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.0)], p=1.0),
        rand_augment_transform(RANDAUG_CONFIG, hparams),
        pil_to_tensor,
    ]
    sim = [
        T.RandomResizedCrop(size),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.0)], p=1.0),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([SimclrBlur((0.1, 2.0))], p=0.5),
        T.RandomHorizontalFlip(),
        pil_to_tensor,
    ]
    return T.Compose(randaug), T.Compose(sim)


class ImagenetStrongTransform:
    """Per-image transform for file datasets (DataLoader workers): a 50:50 branch, then Normalize."""

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...], p_randaug: float = 0.5) -> None:
        self.first, self.second = imagenet_strong_branches((size, size))
        self.p_randaug = p_randaug
        self.mean = torch.tensor(mean).view(-1, 1, 1) * 255
        self.std = torch.tensor(std).view(-1, 1, 1) * 255

    def __call__(self, img: Image.Image) -> torch.Tensor:
        x = self.first(img) if random.random() < self.p_randaug else self.second(img)
        return (x.float() - self.mean) / self.std


augmentations.register(
    "cifar_strong", "400-epoch CIFAR (PaCo/CMO --use_randaug): 50:50 per sample AutoAugment-CIFAR10 + Cutout 16 "
    "or SimCLR (RRC 0.2-1, jitter p0.8, gray 0.2, blur p0.5); batched on the device")(cifar_strong)
augmentations.register(
    "imagenet_strong", "400-epoch ImageNet-LT / iNat (--use_randaug): 50:50 per sample RRC + jitter + "
    "RandAugment rand-n2-m10-mstd0.5 or SimCLR (RRC, jitter, gray 0.2, blur p0.5); batched on the device")(
    imagenet_strong)
augmentations.register(
    "cifar_strong_pil", "cifar_strong as the reference's per-image PIL ops (torchvision AutoAugment, PIL blur); "
    "host copy per batch", graph_safe=False)(cifar_strong_pil)
augmentations.register(
    "imagenet_strong_pil", "imagenet_strong as the reference's per-image PIL ops (timm RandAugment, PIL blur); "
    "host copy per batch", graph_safe=False)(imagenet_strong_pil)
