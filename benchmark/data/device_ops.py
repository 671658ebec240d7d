"""Batched image ops on uint8 NCHW device tensors with per-sample arguments: colour / LUT ops, blur, affine
resampling, resized crops, flips, Cutout and ColorJitter (torchvision's tensor semantics; the pieces of the policies
and pipelines in device_augment.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as nnf
from torchvision.transforms.v2 import functional as TF

Tensor = torch.Tensor
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")


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
