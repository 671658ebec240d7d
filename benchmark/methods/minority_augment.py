"""Table 12's "CMO w/ Gaussian blur / colour jitter": minority foreground samples augmented and appended."""

# Operational definition (not in the official naver-ai/cmo code; from the paper's Table 12 text and appendix): classes
# are split into a majority (many-shot) and a minority group (medium + few shot, `MixContext.minority`, from the
# suite's shot thresholds); minority images are augmented and those classes are oversampled. Here, when the mixer
# fires (same probability and active window as CMO), the foreground batch is drawn from the sampler 'q' (class-
# balanced with the default r = 1, the CMO stream), its majority-class samples are dropped, the minority ones are
# augmented and appended to the background batch as extra samples with their own labels (lam = 1: no mixing, no
# background).
#
# Augmentations, "using the PyTorch implemented functions" (paper), per sample with parameters drawn from the
# loop's NumPy generator:
# - colour jitter = torchvision ColorJitter(brightness=0.5, hue=0.3): brightness factor ~ U(0.5, 1.5), hue shift
#   ~ U(-0.3, 0.3), applied in random order (ColorJitter permutes its ops). Brightness clamps to [0, 1] and hue
#   works in HSV, so the normalised batch is un-normalised, jittered and re-normalised. The mean/std are taken from
#   `ctx.mean` / `ctx.std` when the MixContext carries them, else the CIFAR constants (exact for Table 12, which is
#   CIFAR-100-LT only; approximate for other datasets until the loop passes them).
# - Gaussian blur = torchvision GaussianBlur(kernel_size=(5, 7), sigma=(0.1, 5)): torchvision reads the pair as
#   (width, height), so the kernel is 5 wide and 7 high (not a size chosen from {5, 7}); one sigma ~ U(0.1, 5)
#   for both directions. The blur is linear with a normalised kernel and reflect padding, so it commutes with the
#   per-channel Normalize and runs on the normalised tensor directly.

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torchvision.transforms.functional as TF

from benchmark.data.base import CIFAR_MEAN, CIFAR_STD
from benchmark.methods.mixers import MixContext, Mixed, MixerSpec, MixOp, mixers

JITTER_BRIGHTNESS = 0.5  # factor ~ U(1 - 0.5, 1 + 0.5)
JITTER_HUE = 0.3  # shift ~ U(-0.3, 0.3)
BLUR_KERNEL = (5, 7)  # torchvision (width, height)
BLUR_SIGMA = (0.1, 5.0)

MinorityAug = Callable[[torch.Tensor, np.random.Generator, MixContext], torch.Tensor]


def _norm_stats(x: torch.Tensor, ctx: MixContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ([1, C, 1, 1]) of the Normalize that produced x."""
    mean, std = getattr(ctx, "mean", None), getattr(ctx, "std", None)
    mean, std = (CIFAR_MEAN, CIFAR_STD) if mean is None or std is None else (mean, std)
    shape = (1, x.shape[1], 1, 1)
    return (torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape),
            torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape))


def jitter_params(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brightness factors, hue shifts and 'brightness first' flags for n samples."""
    brightness = rng.uniform(1 - JITTER_BRIGHTNESS, 1 + JITTER_BRIGHTNESS, n)
    hue = rng.uniform(-JITTER_HUE, JITTER_HUE, n)
    return brightness, hue, rng.random(n) < 0.5


def color_jitter(x: torch.Tensor, rng: np.random.Generator, ctx: MixContext) -> torch.Tensor:
    """ColorJitter(brightness=0.5, hue=0.3) per sample of a normalised NCHW batch (undo Normalize, jitter, redo)."""
    mean, std = _norm_stats(x, ctx)
    img = (x * std + mean).clamp(0, 1)
    out = []
    for im, b, h, b_first in zip(img, *jitter_params(len(x), rng), strict=True):
        if b_first:
            im = TF.adjust_hue(TF.adjust_brightness(im, float(b)), float(h))
        else:
            im = TF.adjust_brightness(TF.adjust_hue(im, float(h)), float(b))
        out.append(im)
    return (torch.stack(out) - mean) / std


def blur_sigmas(n: int, rng: np.random.Generator) -> np.ndarray:
    """One sigma ~ U(0.1, 5) per sample (used for both directions, as torchvision's GaussianBlur)."""
    return rng.uniform(*BLUR_SIGMA, n)


def gaussian_blur(x: torch.Tensor, rng: np.random.Generator, ctx: MixContext) -> torch.Tensor:
    """GaussianBlur(kernel_size=(5, 7), sigma=(0.1, 5)) per sample, on the normalised batch (blur is linear)."""
    return torch.cat([TF.gaussian_blur(im[None], list(BLUR_KERNEL), [float(s), float(s)])
                      for im, s in zip(x, blur_sigmas(len(x), rng), strict=True)])


def minority_op(augment: MinorityAug) -> MixOp:
    """A mixing op that appends the augmented minority-class foreground samples to the background batch."""

    def op(xb: torch.Tensor, yb: torch.Tensor, xf: torch.Tensor, yf: torch.Tensor, rng: np.random.Generator,
           ctx: MixContext) -> Mixed:
        if ctx.minority is None:
            raise ValueError("minority augmentation needs MixContext.minority (the medium + few class mask)")
        keep = ctx.minority[yf]
        if not bool(keep.any()):
            return Mixed(xb, yb, yb, 1.0)
        y = torch.cat([yb, yf[keep]])
        return Mixed(torch.cat([xb, augment(xf[keep], rng, ctx)]), y, y, 1.0)

    op.__doc__ = f"Append the minority foreground samples augmented by {augment.__name__} (lam = 1)."
    return op


# The batch grows when the op fires and `keep.any()` reads the device: these train alone, outside CUDA graphs.
mixers.register("minority_jitter", "Table 12 CMO w/ colour jitter: class-balanced foreground (q), its minority "
                "(medium+few) samples jittered (brightness 0.5, hue 0.3) and appended",
                packable=False, graph_safe=False)(MixerSpec("instance", "q", minority_op(color_jitter)))
mixers.register("minority_blur", "Table 12 CMO w/ Gaussian blur: class-balanced foreground (q), its minority "
                "(medium+few) samples blurred (kernel 5x7, sigma 0.1-5) and appended",
                packable=False, graph_safe=False)(MixerSpec("instance", "q", minority_op(gaussian_blur)))
