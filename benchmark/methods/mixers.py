"""Batch mixers: which streams feed background and foreground, and how a pair of batches is mixed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.data.pipeline import host_to_device
from benchmark.schema.registry import Registry


@dataclass(frozen=True)
class Box:
    """A CutMix box over tensor dims 2 (x1:x2) and 3 (y1:y2), as in the reference rand_bbox."""

    x1: int
    x2: int
    y1: int
    y2: int

    def area(self) -> int:
        return (self.x2 - self.x1) * (self.y2 - self.y1)


def rand_bbox(d2: int, d3: int, lam: float, rng: np.random.Generator) -> Box:
    """CutMix box: side int(d * sqrt(1 - lam)), uniform centre, half-widths floor(cut/2), clipped."""
    cut = np.sqrt(1.0 - lam)
    cut_w, cut_h = int(d2 * cut), int(d3 * cut)
    cx, cy = int(rng.integers(d2)), int(rng.integers(d3))
    return Box(int(np.clip(cx - cut_w // 2, 0, d2)), int(np.clip(cx + cut_w // 2, 0, d2)),
               int(np.clip(cy - cut_h // 2, 0, d3)), int(np.clip(cy + cut_h // 2, 0, d3)))


@dataclass(frozen=True)
class Mixed:
    """A mixed batch: loss = lam * L(y_a) + (1 - lam) * L(y_b); lam is a float or a per-sample tensor."""

    x: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: float | torch.Tensor


@dataclass(frozen=True)
class MixContext:
    """What a mixing op may know: alpha of Beta(alpha, alpha) and the train class counts (on the device)."""

    alpha: float
    class_counts: torch.Tensor
    minority: torch.Tensor | None = None  # bool [C]: medium + few classes (Table 12's minority group)
    mean: tuple[float, ...] | None = None  # the dataset's normalisation, for ops that work on pixel values
    std: tuple[float, ...] | None = None
    args: Mapping[str, float | int | bool | str] = field(default_factory=dict)  # the mixer's options, resolved


MixOp = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, np.random.Generator, MixContext], Mixed]


@dataclass(frozen=True)
class MixerSpec:
    """A registered mixer: background / foreground stream samplers and the pairwise mixing op.

    Streams name samplers ('instance', 'q', 'uniform'); `foreground` None means no second stream and 'self'
    means the op pairs the batch with itself (Remix).
    """

    background: str
    foreground: str | None
    op: MixOp | None
    per_sample_lam: bool = False  # the op gives one label weight per sample (Remix), not one lam per batch
    options: Mapping[str, float | int | bool | str] = field(default_factory=dict)  # its own knobs and defaults

    def resolve(self, args: Mapping[str, float | int | bool | str] | None) -> dict[str, float | int | bool | str]:
        """The op's options: the declared defaults updated by a run's `method.mixer_args`."""
        return {**self.options, **(args or {})}

    def active(self, epoch: int, epochs: int, start: int, end: int) -> bool:
        """The reference window start < epoch < epochs - end (0-based epoch)."""
        return self.foreground is not None and start < epoch < epochs - end


def cutmix_op(xb: torch.Tensor, yb: torch.Tensor, xf: torch.Tensor, yf: torch.Tensor, rng: np.random.Generator,
              ctx: MixContext) -> Mixed:
    """Paste one box of each foreground image into its paired background image; lam from the clipped box."""
    return cutmix_pair(xb, yb, xf, yf, ctx.alpha, rng)[0]


def cutmix_pair(xb: torch.Tensor, yb: torch.Tensor, xf: torch.Tensor, yf: torch.Tensor, alpha: float,
                rng: np.random.Generator) -> tuple[Mixed, Box]:
    """CutMix of two aligned batches with one box for the whole batch; also returns the box."""
    lam = float(rng.beta(alpha, alpha))
    box = rand_bbox(xb.shape[2], xb.shape[3], lam, rng)
    x = xb.clone()
    x[:, :, box.x1:box.x2, box.y1:box.y2] = xf[:, :, box.x1:box.x2, box.y1:box.y2]
    lam = 1.0 - box.area() / (xb.shape[2] * xb.shape[3])
    return Mixed(x, yb, yf, lam), box


mixers: Registry[MixerSpec] = Registry("mixers")
mixers.register("none", "no mixing: plain batches from the instance stream")(MixerSpec("instance", None, None))
mixers.register("cmo", "CMO: background ~ P, foreground patch ~ Q (minority-weighted), CutMix box")(
    MixerSpec("instance", "q", cutmix_op))
mixers.register("cutmix", "CutMix baseline: background ~ P, foreground ~ P (uniform draws, = CMO with r=0)")(
    MixerSpec("instance", "uniform", cutmix_op))


def mixup_op(xb: torch.Tensor, yb: torch.Tensor, xf: torch.Tensor, yf: torch.Tensor, rng: np.random.Generator,
             ctx: MixContext) -> Mixed:
    """Mixup of two aligned batches: x = lam * xb + (1 - lam) * xf, lam ~ Beta(alpha, alpha)."""
    lam = float(rng.beta(ctx.alpha, ctx.alpha))
    return Mixed(lam * xb + (1 - lam) * xf, yb, yf, lam)


def remix_label_weight(lam: float, n_i: torch.Tensor, n_j: torch.Tensor, kappa: float = 3.0,
                       tau: float = 0.5) -> torch.Tensor:
    """Remix's per-sample label weight for y_i: 0 if n_i/n_j >= kappa and lam < tau; 1 if n_i/n_j <= 1/kappa and
    1 - lam < tau; lam otherwise (the minority label wins when its image dominates enough)."""
    ratio = n_i.double() / n_j.double()
    out = torch.full_like(ratio, lam)
    out = torch.where((ratio >= kappa) & (lam < tau), torch.zeros_like(out), out)
    out = torch.where((ratio <= 1.0 / kappa) & (1.0 - lam < tau), torch.ones_like(out), out)
    return out.float()


def remix_op(xb: torch.Tensor, yb: torch.Tensor, xf: torch.Tensor, yf: torch.Tensor, rng: np.random.Generator,
             ctx: MixContext) -> Mixed:
    """Remix (options kappa 3, tau 0.5): Mixup with a random permutation of the batch, per-sample label weights."""
    perm = host_to_device(torch.from_numpy(rng.permutation(len(yb))), yb.device)
    lam = float(rng.beta(ctx.alpha, ctx.alpha))
    y2 = yb[perm]
    lam_y = remix_label_weight(lam, ctx.class_counts[yb], ctx.class_counts[y2], float(ctx.args.get("kappa", 3.0)),
                               float(ctx.args.get("tau", 0.5)))
    return Mixed(lam * xb + (1 - lam) * xb[perm], yb, y2, lam_y)


mixers.register("cmo_back", "CMO_back (Table 11): background ~ Q, foreground patch ~ P")(
    MixerSpec("q", "instance", cutmix_op))
mixers.register("cmo_minor", "CMO_minor (Table 11): background and foreground both ~ Q")(
    MixerSpec("q", "q", cutmix_op))
mixers.register("cmo_mixup", "CMO's sampling (background ~ P, foreground ~ Q) mixed by Mixup (Table 12)")(
    MixerSpec("instance", "q", mixup_op))
mixers.register("remix", "Remix: in-batch Mixup, minority-favouring labels (kappa 3, tau 0.5)")(
    MixerSpec("instance", "self", remix_op, per_sample_lam=True, options={"kappa": 3.0, "tau": 0.5}))
