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
from torchvision.transforms.v2 import functional as TF

Tensor = torch.Tensor
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
# timm's default RandAugment op set (`_RAND_TRANSFORMS`); TranslateX/Y here are timm's TranslateXRel/YRel
RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
            "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY")


def col(v: Tensor) -> Tensor:
    """A per-sample vector [B] as [B, 1, 1, 1], to broadcast over NCHW."""
    return v.view(-1, 1, 1, 1)


def pick(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per sample: `a` where mask [B] is true, else `b`."""
    return torch.where(col(mask), a, b)


def uniform(shape: Sequence[int] | int, lo: float, hi: float, gen: torch.Generator) -> Tensor:
    """U(lo, hi) draws in float64 from `gen` on its device."""
    return torch.rand(shape, generator=gen, device=gen.device, dtype=torch.float64) * (hi - lo) + lo


def coin(b: int, p: float, gen: torch.Generator) -> Tensor:
    """b Bernoulli(p) draws."""
    return torch.rand(b, generator=gen, device=gen.device) < p


# ---------------------------------------------------------------------------------------------------------------
# Colour and LUT ops: uint8 [B, C, H, W] in and out, per-sample float64 arguments [B] (torchvision tensor kernels)


def blend(img1: Tensor, img2: Tensor, ratio: Tensor) -> Tensor:
    """torchvision `_blend`: ratio * img1 + (1 - ratio) * img2, clamped, truncated to uint8."""
    r, q = col(ratio).float(), col(1.0 - ratio).float()
    return (img1 * r + img2 * q).clamp_(0, 255).to(torch.uint8)


def grayscale_float(x: Tensor) -> Tensor:
    """ITU-R 601 luma [B, 1, H, W] in float32, computed as torchvision does."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)


def grayscale(x: Tensor) -> Tensor:
    """rgb_to_grayscale with 3 output channels (uint8)."""
    return grayscale_float(x).to(torch.uint8).expand_as(x)


def brightness(x: Tensor, f: Tensor) -> Tensor:
    return (x * col(f).float()).clamp_(0, 255).to(torch.uint8)


def saturation(x: Tensor, f: Tensor) -> Tensor:
    return blend(x, grayscale_float(x).floor_(), f)


def contrast(x: Tensor, f: Tensor) -> Tensor:
    return blend(x, grayscale_float(x).floor_().mean(dim=(-3, -2, -1), keepdim=True), f)


def sharpness(x: Tensor, f: Tensor) -> Tensor:
    """Blend with the 3x3 SMOOTH filter (1s around a 5, /13) inside a 1-pixel border that stays as it is."""
    c = x.shape[1]
    centre = torch.arange(9, device=x.device).view(3, 3) == 4  # made on the device: no host copy per call
    k = torch.where(centre, 5.0 / 13.0, 1.0 / 13.0)
    out = x.float()
    blurred = nnf.conv2d(out, k.expand(c, 1, 3, 3), groups=c).round_()
    inner = out[..., 1:-1, 1:-1]
    inner.add_(blurred.sub_(inner) * col(1.0 - f).float())
    return out.clamp_(0, 255).to(torch.uint8)


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """Keep the `bits` (0..8) high bits of each value."""
    keep = bits.long().clamp(0, 8)
    mask = (255 << (8 - keep)) & 255
    return x & col(mask).to(torch.uint8)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """Invert values >= threshold."""
    return torch.where(x >= col(threshold).float(), 255 - x, x)


def solarize_add(x: Tensor, add: Tensor) -> Tensor:
    """timm SolarizeAdd: values below 128 get `add`, capped at 255."""
    y = (x.short() + col(add).short()).clamp_(max=255).to(torch.uint8)
    return torch.where(x < 128, y, x)


def autocontrast(x: Tensor) -> Tensor:
    """Stretch each channel of each image to [0, 255] (constant channels unchanged)."""
    xf = x.float()
    lo, hi = xf.amin(dim=(-2, -1), keepdim=True), xf.amax(dim=(-2, -1), keepdim=True)
    flat = hi == lo
    inv_scale = torch.where(flat, 1.0, (hi - lo).mul_(1.0 / 255))
    return (xf - torch.where(flat, 0.0, lo)).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


def equalize(x: Tensor) -> Tensor:
    """Histogram equalisation per channel (torchvision's batched kernel, PIL's LUT)."""
    return TF.equalize(x)


def invert(x: Tensor) -> Tensor:
    return x.bitwise_not()


class Hue:
    """Per-sample hue shift in HSV (torchvision's float HSV round trip, with its LUT kept on the device)."""

    def __init__(self, device: torch.device) -> None:
        self.select = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], device=device)

    def __call__(self, x: Tensor, f: Tensor) -> Tensor:
        img = x.float().mul_(1.0 / 255)
        r, g, _ = img.unbind(dim=-3)
        minc, maxc = torch.aminmax(img, dim=-3)
        eqc = maxc == minc
        rng = maxc - minc
        ones = torch.ones_like(maxc)
        s = rng / torch.where(eqc, ones, maxc)
        rc, gc, bc = ((maxc.unsqueeze(-3) - img) / torch.where(eqc, ones, rng).unsqueeze(-3)).unbind(dim=-3)
        neq_r, eq_g = maxc != r, maxc == g
        h = (bc - gc) * ~neq_r + (rc + 2.0 - bc) * (eq_g & neq_r) + (gc + 4.0 - rc) * (neq_r & ~eq_g)
        h = h.mul_(1.0 / 6.0).add_(1.0).fmod_(1.0)
        h = h.add_(f.float().view(-1, 1, 1)).remainder_(1.0)
        # HSV -> RGB
        h6 = h.mul(6)
        i = torch.floor(h6)
        fr = h6.sub_(i)
        sxf = s * fr
        q = (1.0 - sxf).mul_(maxc).clamp_(0.0, 1.0)
        t = sxf.add_(1.0 - s).mul_(maxc).clamp_(0.0, 1.0)
        p = (1.0 - s).mul_(maxc).clamp_(0.0, 1.0)
        vpqt = torch.stack((maxc, p, q, t), dim=-3)
        sel = self.select[:, i.to(torch.long).remainder_(6)].moveaxis(0, -3)
        return vpqt.gather(-3, sel).mul_(255 + 1.0 - 1e-3).to(torch.uint8)


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """Separable Gaussian with per-sample sigma [B], taps -radius..radius, edge pixels replicated; rounds."""
    h, w = x.shape[-2:]
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    wts = torch.exp(-(k**2) / (2 * sigma.float().view(-1, 1) ** 2))
    wts = wts / wts.sum(1, keepdim=True)  # [B, K]
    xp = nnf.pad(x.float(), (radius, radius, radius, radius), mode="replicate")
    rows = sum(xp[..., j:j + h, :] * col(wts[:, j]) for j in range(2 * radius + 1))
    out = sum(rows[..., j:j + w] * col(wts[:, j]) for j in range(2 * radius + 1))
    return out.round_().clamp_(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Geometry: per-sample affine resampling (torchvision's inverse matrix and grid), crops, flips


def inverse_affine(angle: Tensor, tx: Tensor, ty: Tensor, shear_x: Tensor, shear_y: Tensor, cx: Tensor,
                   cy: Tensor) -> Tensor:
    """torchvision `_get_inverse_affine_matrix` (scale 1) for per-sample float64 parameters (degrees, pixels)
    -> [B, 2, 3]; the centre (cx, cy) is relative to the image centre."""
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear_x), torch.deg2rad(shear_y)
    cos_sy, tan_sx = torch.cos(sy), torch.tan(sx)
    cxt, cyt = cx + tx, cy + ty
    a = torch.cos(rot - sy) / cos_sy
    b = -(a * tan_sx + torch.sin(rot))
    c = torch.sin(rot - sy) / cos_sy
    d = torch.cos(rot) - c * tan_sx
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = cx - m0 * cxt - m1 * cyt
    m5 = cy - m3 * cxt - m4 * cyt
    return torch.stack((m0, m1, m2, m3, m4, m5), dim=1).view(-1, 2, 3)


class Affine:
    """Resample a uint8 batch through per-sample inverse affine matrices, filling outside with `fill`."""

    def __init__(self, h: int, w: int, fill: Sequence[float], device: torch.device) -> None:
        self.h, self.w = h, w
        base = torch.empty(1, h, w, 3, device=device)
        base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=device))
        base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=device).unsqueeze(-1))
        base[..., 2].fill_(1)
        self.base = base.view(1, h * w, 3)
        self.half = torch.tensor([0.5 * w, 0.5 * h], device=device)
        self.fill = torch.tensor([float(v) for v in fill], device=device).view(1, -1, 1, 1)

    def theta(self, kind: Tensor, arg: Tensor) -> Tensor:
        """Inverse matrices [B, 2, 3] for per-sample geometric ops, kind = index into GEOMETRIC (-1: identity),
        arguments float64 [B]: Rotate degrees counter-clockwise about the centre; ShearX/Y factor about the
        top-left corner (PIL's (1, f, 0, 0, 1, 0)); TranslateX/Y pixels (content moves by +arg)."""
        z = torch.zeros_like(arg)
        angle = torch.where(kind == 0, -torch.remainder(arg, 360.0), z)  # torchvision rotate: -(angle % 360)
        deg = torch.rad2deg(torch.atan(arg))  # torchvision AutoAugment shears by atan(m) degrees: factor m
        sx, sy = torch.where(kind == 1, deg, z), torch.where(kind == 2, deg, z)
        tx, ty = torch.where(kind == 3, arg, z), torch.where(kind == 4, arg, z)
        shear = (kind == 1) | (kind == 2)  # about the top-left corner (centre [0, 0] in torchvision)
        cx, cy = torch.where(shear, -self.w * 0.5, z), torch.where(shear, -self.h * 0.5, z)
        return inverse_affine(angle, tx, ty, sx, sy, cx, cy)

    def __call__(self, x: Tensor, theta: Tensor, mode: str = "nearest") -> Tensor:
        b, c = x.shape[:2]
        grid = self.base.expand(b, -1, -1).bmm(theta.float().transpose(1, 2) / self.half).view(b, self.h, self.w, 2)
        xf = torch.cat((x.float(), torch.ones_like(x[:, :1], dtype=torch.float32)), dim=1)
        out = nnf.grid_sample(xf, grid, mode=mode, padding_mode="zeros", align_corners=False)
        img, mask = out[:, :c], out[:, c:]
        if mode == "nearest":
            img = torch.where(mask < 0.5, self.fill.expand_as(img), img)
        else:
            img = (img - self.fill).mul_(mask.clamp(0, 1)).add_(self.fill)
        return img.round_().clamp_(0, 255).to(torch.uint8)


def rrc_params(b: int, h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float],
               gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torchvision RandomResizedCrop.get_params for b images at once: ten (area, log-ratio) tries per image, the
    first that fits wins, else the central crop of the clamped aspect ratio. Returns top, left, height, width."""
    area = h * w
    target = area * uniform((b, 10), scale[0], scale[1], gen)
    aspect = torch.exp(uniform((b, 10), math.log(ratio[0]), math.log(ratio[1]), gen))
    cw, ch = torch.sqrt(target * aspect).round(), torch.sqrt(target / aspect).round()
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first fitting try (argmax returns the first max)
    found = ok.any(dim=1)
    in_ratio = w / h
    if in_ratio < min(ratio):
        fw, fh = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = h, int(round(h * max(ratio)))
    else:
        fw, fh = w, h
    ch = torch.where(found, ch.gather(1, first).squeeze(1), float(fh)).long()
    cw = torch.where(found, cw.gather(1, first).squeeze(1), float(fw)).long()
    u = torch.rand((2, b), generator=gen, device=gen.device, dtype=torch.float64)
    top = torch.minimum((u[0] * (h - ch + 1)).long(), h - ch)
    left = torch.minimum((u[1] * (w - cw + 1)).long(), w - cw)
    top = torch.where(found, top, (h - fh) // 2)
    left = torch.where(found, left, (w - fw) // 2)
    return top, left, ch, cw


def _taps(start: Tensor, size: Tensor, out: int, ar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Bilinear source taps (align_corners=False, clamped to the box) of `out` samples over [start, start+size)."""
    s = ((ar + 0.5) * (size.float() / out).view(-1, 1) - 0.5).clamp_(min=0)
    i0 = s.floor()
    lam = s - i0
    i0 = i0.long()
    i1 = torch.minimum(i0 + 1, (size - 1).view(-1, 1))
    return start.view(-1, 1) + i0, start.view(-1, 1) + i1, lam


def resized_crop(images: Tensor, idx: Tensor, top: Tensor, left: Tensor, ch: Tensor, cw: Tensor, out_h: int,
                 out_w: int) -> Tensor:
    """Crop boxes of images[idx] (uint8 NHWC) resized bilinearly to (out_h, out_w): uint8 NCHW."""
    dev = images.device
    y0, y1, ly = _taps(top, ch, out_h, torch.arange(out_h, device=dev, dtype=torch.float32))
    x0, x1, lx = _taps(left, cw, out_w, torch.arange(out_w, device=dev, dtype=torch.float32))
    n, c = idx[:, None, None, None], torch.arange(images.shape[3], device=dev)[None, :, None, None]

    def at(rows: Tensor, cols: Tensor) -> Tensor:
        return images[n, rows[:, None, :, None], cols[:, None, None, :], c].float()

    ly, lx = ly[:, None, :, None], lx[:, None, None, :]
    top_row = at(y0, x0) * (1 - lx) + at(y0, x1) * lx
    bottom_row = at(y1, x0) * (1 - lx) + at(y1, x1) * lx
    return (top_row * (1 - ly) + bottom_row * ly).round_().clamp_(0, 255).to(torch.uint8)


def hflip(x: Tensor, flip: Tensor) -> Tensor:
    return pick(flip, x.flip(-1), x)


def cutout(x: Tensor, length: int, gen: torch.Generator) -> Tensor:
    """Zero one length x length box per image, centre uniform over the pixels, clipped (Cutout(1, length))."""
    b, _, h, w = x.shape
    u = torch.rand((2, b), generator=gen, device=gen.device, dtype=torch.float64)
    cy, cx = (u[0] * h).long().view(-1, 1), (u[1] * w).long().view(-1, 1)
    ar_h, ar_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    rows = (ar_h >= cy - length // 2) & (ar_h < cy + length // 2)
    cols = (ar_w >= cx - length // 2) & (ar_w < cx + length // 2)
    hole = rows[:, None, :, None] & cols[:, None, None, :]
    return x.masked_fill(hole, 0)


class ColorJitter:
    """torchvision ColorJitter(b, c, s, h) per sample: factors U(1-b, 1+b) etc., the four ops in a random order."""

    def __init__(self, b: float, c: float, s: float, h: float, device: torch.device) -> None:
        self.ranges = [(max(0.0, 1 - b), 1 + b), (max(0.0, 1 - c), 1 + c), (max(0.0, 1 - s), 1 + s), (-h, h)]
        self.ops: list[Callable[[Tensor, Tensor], Tensor]] = [brightness, contrast, saturation, Hue(device)]
        self.use_hue = h > 0

    def draw(self, b: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        order = torch.rand((b, 4), generator=gen, device=gen.device).argsort(dim=1)  # a uniform permutation
        factors = torch.stack([uniform(b, lo, hi, gen) for lo, hi in self.ranges], dim=1)
        return order, factors

    def apply(self, x: Tensor, order: Tensor, factors: Tensor) -> Tensor:
        for pos in range(4):
            y = x
            for k, op in enumerate(self.ops):
                if k < 3 or self.use_hue:
                    y = pick(order[:, pos] == k, op(x, factors[:, k]), y)
            x = y
        return x

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        return self.apply(x, *self.draw(x.shape[0], gen))


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
# The two 400-epoch pipelines (spec §3.3)


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
        self.pad, self.p_regular, self.flip, self.cutout = pad, p_regular, flip, cutout
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

    def __call__(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        self.last = {}
        first = coin(len(idx), self.p_regular, gen)
        x = pick(first, self.regular(idx, gen), self.simclr(idx, gen))
        self.last_first = first
        return self.finish(x)


class ImagenetStrongBatch(StrongBatch):
    """ImageNet-LT / iNat `--use_randaug`, per sample with p_randaug: RRC + flip + ColorJitter(0.4, 0.4, 0.4) +
    RandAugment rand-n2-m10-mstd0.5 (fill ImageNet mean); else RRC + jitter + gray 0.2 + blur p0.5 + flip."""

    def __init__(self, images: Tensor, mean: tuple[float, ...], std: tuple[float, ...], *,
                 p_randaug: float = 0.5, fill: Sequence[float] = (124, 116, 104)) -> None:
        super().__init__(images, mean, std)
        dev = images.device
        self.p_randaug = p_randaug
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

    def __call__(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        self.last = {}
        first = coin(len(idx), self.p_randaug, gen)
        x = pick(first, self.regular(idx, gen), self.simclr(idx, gen))
        self.last_first = first
        return self.finish(x)
