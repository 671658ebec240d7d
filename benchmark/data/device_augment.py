"""Batched strong augmentations on uint8 NCHW device tensors: per-sample parameters, every draw from one generator."""

# The batched `cifar_strong` / `imagenet_strong` (registered in strong_augment.py). A batch goes through every op
# of a pipeline at once; per-sample choices (branch, sub-policy, op, magnitude, sign, coin) are tensors and select
# results with `torch.where`, so both branches and every op of a policy slot are computed for the whole batch and
# nothing depends on data-dependent shapes: no host sync, no boolean indexing, fixed draw counts per batch (the
# generator advances by the same amount whatever the images), constants built once in __init__. Kornia was not
# used: its augmentations draw from torch's global RNG and take no generator (kornia/kornia#4427).
#
# Where this differs from the per-image PIL reference (`cifar_strong_pil` / `imagenet_strong_pil`):
# - Every op is a tensor op with torchvision's tensor semantics (the v2 `functional` kernels on uint8), not PIL's.
#   AutoAugment ops equal torchvision's tensor ops exactly (geometric, LUT ops) or within 1/255 (blends, float
#   rounding); PIL differs from those by a level here and there (ImageEnhance rounding, PIL's integer grayscale).
# - RandomResizedCrop: bilinear sampling of the crop box (half-pixel centres, edge clamp, no antialias; crops are
#   never larger than the output) instead of PIL's bilinear resize of the cropped image.
# - ColorJitter: torchvision's tensor brightness / contrast / saturation / hue (HSV in float) in a per-sample random
#   order, uint8 between ops, as torchvision does on tensors.
# - SimCLR blur: a separable Gaussian (sigma ~ U(0.1, 2), taps to +/- ceil(3 sigma_max), edge pixels replicated)
#   instead of PIL's `GaussianBlur(radius=sigma)`, which approximates the same Gaussian by three box blurs.
# - RandAugment (timm rand-n2-m10-mstd0.5): the same 15 ops, level mappings and draws (op uniform with replacement,
#   p 0.5, m ~ N(10, 0.5) clipped to [0, 10], random sign, bilinear or bicubic at random), but resampling is
#   torch's grid_sample (bicubic a = -0.75 vs PIL's -0.5) and the fill colour is blended at the image border by the
#   sampled coverage (torchvision's rule) where PIL switches to the fill colour outside the image.
# - Draws: all from the given torch generator (the reference uses Python `random`, NumPy and torch's global RNG).

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as nnf
from torchvision.transforms import v2

from benchmark.data.device_ops import (
    GEOMETRIC,
    Affine,
    ColorJitter,
    Tensor,
    autocontrast,
    brightness,
    coin,
    contrast,
    cutout,
    equalize,
    gaussian_blur,
    grayscale,
    hflip,
    invert,
    pick,
    posterize,
    resized_crop,
    rrc_params,
    saturation,
    sharpness,
    solarize,
    solarize_add,
    uniform,
)

# timm's default RandAugment op set (`_RAND_TRANSFORMS`); TranslateX/Y here are timm's TranslateXRel/YRel
RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY")


# ---------------------------------------------------------------------------------------------------------------
# Policies


class OpTable:
    """Applies one op per sample (a name from `names`, -1 = none) with per-sample kernel arguments.

    Kernel arguments: Rotate degrees, ShearX/Y factor, TranslateX/Y pixels (see `Affine.theta`), Brightness /
    Color / Contrast / Sharpness enhancement factor, Posterize bits kept, Solarize threshold, SolarizeAdd amount.
    All geometric ops of a call share one resampling (`modes`: one per interpolation, picked per sample).
    """

    def __init__(self, names: Sequence[str], h: int, w: int, fill: Sequence[float], device: torch.device) -> None:
        self.names = tuple(names)
        self.affine = Affine(h, w, fill, device)
        self.geo_of = torch.tensor([GEOMETRIC.index(n) if n in GEOMETRIC else -1 for n in self.names], device=device)
        self.kernels: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
            "AutoContrast": lambda x, a: autocontrast(x), "Equalize": lambda x, a: equalize(x),
            "Invert": lambda x, a: invert(x), "Posterize": posterize, "Solarize": solarize,
            "SolarizeAdd": solarize_add, "Color": saturation, "Contrast": contrast, "Brightness": brightness,
            "Sharpness": sharpness}

    def apply(self, x: Tensor, op: Tensor, arg: Tensor, present: Sequence[int] | None = None,
              modes: Sequence[str] = ("nearest",), mode_index: Tensor | None = None) -> Tensor:
        """op [B] (index into names, -1 none), arg [B] float64; `present` limits the loop to the ops that occur."""
        present = range(len(self.names)) if present is None else present
        if any(self.names[k] in GEOMETRIC for k in present):
            kind = torch.where(op >= 0, self.geo_of[op.clamp(min=0)], -1)
            theta = self.affine.theta(kind, arg)
            moved = self.affine(x, theta, modes[0])
            for j, mode in enumerate(modes[1:], start=1):
                moved = pick(mode_index == j, self.affine(x, theta, mode), moved)
            x = pick(kind >= 0, moved, x)
        y = x
        for k in present:
            if self.names[k] not in GEOMETRIC:
                y = pick(op == k, self.kernels[self.names[k]](x, arg), y)
        return y


def tv_arg(name: str, magnitude: Tensor) -> Tensor:
    """torchvision AutoAugment's signed magnitude -> kernel argument (`_apply_image_or_video_transform`)."""
    if name in ("TranslateX", "TranslateY", "Posterize"):
        return torch.trunc(magnitude)  # int(magnitude)
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 1.0 + magnitude
    if name == "Solarize":
        return 255.0 * magnitude
    return magnitude  # Rotate degrees, Shear factor (torchvision shears by atan(m), i.e. factor m), no-arg ops


class AutoAugment:
    """torchvision AutoAugment (CIFAR10 policy by default) per sample: sub-policy uniform, each of its two ops
    applied with its probability, magnitude bin from the policy, random sign for signed ops; NEAREST, `fill`."""

    def __init__(self, h: int, w: int, device: torch.device,
                 policy: v2.AutoAugmentPolicy = v2.AutoAugmentPolicy.CIFAR10, fill: float = 128.0) -> None:
        ref = v2.AutoAugment(policy)
        self.policies = ref._policies  # [((name, p, bin), (name, p, bin)), ...] as torchvision samples them
        names = sorted({name for sub in self.policies for name, _, _ in sub})
        self.table = OpTable(names, h, w, [fill] * 3, device)
        op, prob, mag, signed, arg_pos, arg_neg = [], [], [], [], [], []
        for sub in self.policies:
            for name, p, bin_ in sub:
                mags, sgn = ref._AUGMENTATION_SPACE[name]
                values = mags(10, h, w)
                m = torch.tensor(float(values[bin_]) if values is not None else 0.0, dtype=torch.float64)
                op.append(names.index(name))
                prob.append(p)
                mag.append(m)
                signed.append(sgn and values is not None)
                arg_pos.append(tv_arg(name, m))
                arg_neg.append(tv_arg(name, -m))
        n = len(self.policies)
        self.op = torch.tensor(op, device=device).view(n, 2)
        self.prob = torch.tensor(prob, device=device).view(n, 2)
        self.mag = torch.stack(mag).to(device).view(n, 2)
        self.signed = torch.tensor(signed, device=device).view(n, 2)
        self.arg_pos = torch.stack(arg_pos).to(device).view(n, 2)  # kernel arguments of +magnitude / -magnitude
        self.arg_neg = torch.stack(arg_neg).to(device).view(n, 2)
        self.present = [sorted(set(self.op[:, s].tolist())) for s in range(2)]
        self.last: dict[str, Tensor] = {}

    def draw(self, b: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Per sample and slot: op index (-1 = not applied), torchvision's signed magnitude and the kernel argument
        (float64)."""
        dev = gen.device
        pid = torch.randint(0, len(self.policies), (b,), generator=gen, device=dev)
        u = torch.rand((b, 2), generator=gen, device=dev)
        s = torch.rand((b, 2), generator=gen, device=dev)
        op = torch.where(u <= self.prob[pid], self.op[pid], -1)
        neg = self.signed[pid] & (s <= 0.5)
        return op, torch.where(neg, -self.mag[pid], self.mag[pid]), torch.where(neg, self.arg_neg[pid],
                                                                                 self.arg_pos[pid])

    def apply_op(self, x: Tensor, name: str, magnitude: Tensor) -> Tensor:
        """One op on every image, with torchvision's (signed) magnitude per sample."""
        k = self.table.names.index(name)
        return self.table.apply(x, torch.full_like(magnitude, k, dtype=torch.long), tv_arg(name, magnitude), [k])

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        op, mag, arg = self.draw(x.shape[0], gen)
        self.last = {"op": op, "magnitude": mag}
        for s in range(2):
            x = self.table.apply(x, op[:, s], arg[:, s], self.present[s])
        return x


class RandAugment:
    """timm `rand-n{n}-m{m}-mstd{std}` per sample: n ops uniform with replacement from `RAND_OPS`, each applied
    with p `prob`, magnitude N(m, std) clipped to [0, 10], timm's level mapping and random sign, bilinear or
    bicubic at random, fill `fill` (0-255 per channel)."""

    def __init__(self, h: int, w: int, device: torch.device, fill: Sequence[float], n: int = 2,
                 magnitude: float = 10.0, magnitude_std: float = 0.5, prob: float = 0.5,
                 translate_pct: float = 0.45) -> None:
        self.n, self.m, self.std, self.prob = n, magnitude, magnitude_std, prob
        self.table = OpTable(RAND_OPS, h, w, fill, device)
        # timm LEVEL_TO_ARG as arg = min(floor?(scale * m / 10 + offset), cap), negated at random if signed;
        # TranslateXRel is PIL (1, 0, pct * width, ...), content moving left: -pct * width pixels here
        scale = {"Rotate": 30.0, "ShearX": 0.3, "ShearY": 0.3, "TranslateX": -translate_pct * w,
                 "TranslateY": -translate_pct * h, "Color": 1.8, "Contrast": 1.8, "Brightness": 1.8,
                 "Sharpness": 1.8, "Posterize": 4.0, "Solarize": 256.0, "SolarizeAdd": 110.0}
        offset = {"Color": 0.1, "Contrast": 0.1, "Brightness": 0.1, "Sharpness": 0.1}
        cap = {"Solarize": 256.0, "SolarizeAdd": 128.0}
        f64 = {"device": device, "dtype": torch.float64}
        self.scale = torch.tensor([scale.get(n_, 0.0) for n_ in RAND_OPS], **f64)
        self.offset = torch.tensor([offset.get(n_, 0.0) for n_ in RAND_OPS], **f64)
        self.cap = torch.tensor([cap.get(n_, math.inf) for n_ in RAND_OPS], **f64)
        self.signed = torch.tensor([n_ in GEOMETRIC for n_ in RAND_OPS], device=device)
        self.floor = torch.tensor([n_ in ("Posterize", "Solarize", "SolarizeAdd") for n_ in RAND_OPS], device=device)
        self.last: dict[str, Tensor] = {}

    def level_args(self, op: Tensor, m: Tensor, negate: Tensor) -> Tensor:
        """timm's level mapping for op indices [B] (>= 0), magnitudes m and sign coins: kernel arguments."""
        arg = m / 10.0 * self.scale[op] + self.offset[op]
        arg = torch.where(self.signed[op] & negate, -arg, arg)
        return torch.minimum(torch.where(self.floor[op], torch.floor(arg), arg), self.cap[op])

    def level_arg(self, name: str, m: Tensor, negate: Tensor) -> Tensor:
        return self.level_args(torch.full_like(m, RAND_OPS.index(name), dtype=torch.long), m, negate)

    def draw(self, b: int, gen: torch.Generator) -> dict[str, Tensor]:
        dev, shape = gen.device, (b, self.n)
        op = torch.randint(0, len(RAND_OPS), shape, generator=gen, device=dev)
        applied = torch.rand(shape, generator=gen, device=dev) <= self.prob
        m = (self.m + self.std * torch.randn(shape, generator=gen, device=dev, dtype=torch.float64)).clamp(0, 10)
        negate = torch.rand(shape, generator=gen, device=dev) > 0.5
        bicubic = torch.rand(shape, generator=gen, device=dev) < 0.5
        return {"op": torch.where(applied, op, -1), "magnitude": m, "negate": negate, "bicubic": bicubic}

    def apply_op(self, x: Tensor, name: str, arg: Tensor, bicubic: Tensor) -> Tensor:
        """One op on every image with kernel arguments `arg` (float64 [B]) and interpolation choice [B]."""
        k = RAND_OPS.index(name)
        return self.table.apply(x, torch.full_like(arg, k, dtype=torch.long), arg, [k], ("bilinear", "bicubic"),
                                bicubic.long())

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        d = self.draw(x.shape[0], gen)
        self.last = d
        for s in range(self.n):
            op = d["op"][:, s]
            args = self.level_args(op.clamp(min=0), d["magnitude"][:, s], d["negate"][:, s])
            x = self.table.apply(x, op, args, None, ("bilinear", "bicubic"), d["bicubic"][:, s].long())
        return x


# ---------------------------------------------------------------------------------------------------------------
# The two 400-epoch pipelines (naver-ai/cmo: cifar_train.py / imbalance_cifar.py, util/randaugment.py)


class StrongBatch:
    """Shared parts: uint8 NHWC images on the device, normalisation, the SimCLR ops, capability flags.

    After a call, `last_first` (bool [B], on the device) says which samples took the first branch and `last`
    holds the other per-sample draws (for tests and checks; reading them syncs, the call itself does not).
    """

    def __init__(self, images: Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 blur_sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        _, self.h, self.w, c = images.shape
        dev = images.device
        self.images = images
        self.mean = torch.tensor(mean, device=dev).view(1, c, 1, 1) * 255
        self.std = torch.tensor(std, device=dev).view(1, c, 1, 1) * 255
        self.blur_sigma = blur_sigma
        self.blur_radius = math.ceil(3 * blur_sigma[1])
        self.last_first: Tensor | None = None
        self.last: dict[str, Tensor] = {}

    p_first = 0.5  # probability of the first branch (`regular`), else the SimCLR one

    def regular(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        raise NotImplementedError

    def simclr(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        raise NotImplementedError

    def __call__(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        """Both branches for the whole batch, then each sample's pick (p_first for the first); normalised NCHW."""
        self.last = {}
        first = coin(len(idx), self.p_first, gen)
        x = pick(first, self.regular(idx, gen), self.simclr(idx, gen))
        self.last_first = first
        return self.finish(x)

    def normalize(self, x_nhwc: Tensor) -> Tensor:
        return (x_nhwc.permute(0, 3, 1, 2).float() - self.mean) / self.std

    def finish(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std

    def rrc(self, idx: Tensor, scale: tuple[float, float], gen: torch.Generator) -> Tensor:
        top, left, ch, cw = rrc_params(len(idx), self.h, self.w, scale, (3 / 4, 4 / 3), gen)
        return resized_crop(self.images, idx, top, left, ch, cw, self.h, self.w)

    def gray_blur(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """RandomGrayscale(0.2), then the SimCLR Gaussian blur with p 0.5."""
        b = x.shape[0]
        gray = coin(b, 0.2, gen)
        x = pick(gray, grayscale(x), x)
        blur = coin(b, 0.5, gen)
        sigma = uniform(b, *self.blur_sigma, gen)
        x = pick(blur, gaussian_blur(x, sigma, self.blur_radius), x)
        self.last.update(gray=gray, blur=blur, sigma=sigma)
        return x


class CifarStrongBatch(StrongBatch):
    """CIFAR `--use_randaug`, per sample with p_regular: pad-crop + flip + AutoAugment(CIFAR10, fill 128) +
    Cutout; else RRC(0.2-1) + flip + ColorJitter(0.4, 0.4, 0.4, 0.1) p0.8 + gray 0.2 + blur p0.5."""

    def __init__(self, images: Tensor, mean: tuple[float, ...], std: tuple[float, ...], pad: int = 4, *,
                 p_regular: float = 0.5, autoaugment: bool = True, flip: bool = True, cutout: int = 16,
                 simclr_blur: tuple[float, float] = (0.1, 2.0)) -> None:
        super().__init__(images, mean, std, simclr_blur)
        dev = images.device
        self.pad, self.p_first, self.flip, self.cutout = pad, p_regular, flip, cutout
        self.padded = nnf.pad(images, (0, 0, pad, pad, pad, pad))  # zero pad H and W (NHWC)
        self.ar_h, self.ar_w = torch.arange(self.h, device=dev), torch.arange(self.w, device=dev)
        self.ar_c = torch.arange(images.shape[3], device=dev)
        self.autoaugment = AutoAugment(self.h, self.w, dev) if autoaugment else None
        self.jitter = ColorJitter(0.4, 0.4, 0.4, 0.1, dev)

    def regular(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        b, dev = len(idx), gen.device
        top = torch.randint(0, 2 * self.pad + 1, (b,), generator=gen, device=dev)
        left = torch.randint(0, 2 * self.pad + 1, (b,), generator=gen, device=dev)
        flip = coin(b, 0.5, gen) & self.flip
        rows = top[:, None] + self.ar_h
        cols = torch.where(flip[:, None], left[:, None] + (self.w - 1 - self.ar_w), left[:, None] + self.ar_w)
        x = self.padded[idx[:, None, None, None], rows[:, None, :, None], cols[:, None, None, :],
                        self.ar_c[None, :, None, None]]
        if self.autoaugment is not None:
            x = self.autoaugment(x, gen)
            self.last.update({f"aa_{k}": v for k, v in self.autoaugment.last.items()})
        if self.cutout > 0:
            x = cutout(x, self.cutout, gen)
        return x

    def simclr(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        b = len(idx)
        x = hflip(self.rrc(idx, (0.2, 1.0), gen), coin(b, 0.5, gen))
        jitter = coin(b, 0.8, gen)
        x = pick(jitter, self.jitter(x, gen), x)
        self.last["jitter"] = jitter
        return self.gray_blur(x, gen)


class ImagenetStrongBatch(StrongBatch):
    """ImageNet-LT / iNat `--use_randaug`, per sample with p_randaug: RRC + flip + ColorJitter(0.4, 0.4, 0.4) +
    RandAugment rand-n2-m10-mstd0.5 (fill ImageNet mean); else RRC + jitter + gray 0.2 + blur p0.5 + flip."""

    def __init__(self, images: Tensor, mean: tuple[float, ...], std: tuple[float, ...], *,
                 p_randaug: float = 0.5, fill: Sequence[float] = (124, 116, 104)) -> None:
        super().__init__(images, mean, std)
        dev = images.device
        self.p_first = p_randaug
        self.jitter = ColorJitter(0.4, 0.4, 0.4, 0.0, dev)
        self.randaug = RandAugment(self.h, self.w, dev, fill, translate_pct=0.45)

    def regular(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        x = hflip(self.rrc(idx, (0.08, 1.0), gen), coin(len(idx), 0.5, gen))
        x = self.randaug(self.jitter(x, gen), gen)
        self.last.update({f"ra_{k}": v for k, v in self.randaug.last.items()})
        return x

    def simclr(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        x = self.gray_blur(self.jitter(self.rrc(idx, (0.08, 1.0), gen), gen), gen)
        return hflip(x, coin(len(idx), 0.5, gen))
