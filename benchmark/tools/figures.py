"""`lt-bench figure cmo-samples`: the paper's Fig. 2, a grid of CMO-augmented samples made by the product's own
mixer (background ~ P, foreground ~ the minority-weighted Q, CutMix box) on a dataset's train split."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from benchmark.config.catalog import load_dataset  # noqa: E402
from benchmark.data.samplers import SamplerContext, samplers  # noqa: E402
from benchmark.data.split_lists import FileDataset  # noqa: E402
from benchmark.methods.mixers import MixContext, mixers  # noqa: E402
from benchmark.schema.files import atomic_write
from benchmark.schema.settings import DataSettings  # noqa: E402

GRID_DPI = 150
TILE_IN = 1.25  # inches per grid cell (image + caption)


@dataclass
class SampleGrid:
    """rows x (1 + cols) images: per row the foreground image (drawn from Q) then `cols` CMO samples."""

    images: np.ndarray  # float [rows, 1 + cols, H, W, 3] in [0, 1]
    captions: list[list[str]]
    foreground_classes: list[int]
    class_counts: list[int]


def _images(data: Any, idx: np.ndarray, size: int | None) -> np.ndarray:
    """Train images at `idx` as uint8 NHWC (array datasets directly, file datasets read and resized)."""
    if hasattr(data, "train_x"):
        return data.train_x[idx]
    side = size or 128
    ds = FileDataset(data.root, data.train_paths, data.train_y,
                     lambda im: np.asarray(im.resize((side, side))))
    return np.stack([ds[int(i)][0] for i in idx])


def cmo_samples(data: Any, rows: int = 4, cols: int = 6, *, mixer: str = "cmo", alpha: float = 1.0,
                fg_power: float = 1.0, seed: int = 0, image_size: int | None = None) -> SampleGrid:
    """Draw `rows` foreground images from the mixer's foreground stream (Q for CMO: per-sample weight
    (1/n_k)^r), and for each `cols` background images from its background stream (P), then mix each pair with
    the registered mixing op (its own lam ~ Beta(alpha, alpha) and box per sample)."""
    spec = mixers.get(mixer)
    if spec.op is None or spec.foreground in (None, "self"):
        raise ValueError(f"mixer '{mixer}' pairs no second stream; use cmo, cutmix, cmo_back, cmo_minor or cmo_mixup")
    labels = torch.as_tensor(np.asarray(data.train_y), dtype=torch.int64)
    counts = data.class_counts
    ctx = SamplerContext(labels=labels, class_counts=counts, fg_power=fg_power)
    gen = torch.Generator().manual_seed(seed)
    fg = samplers.get(spec.foreground)(ctx).epoch(gen)[:rows].numpy()
    bg = samplers.get(spec.background)(ctx).epoch(gen)[: rows * cols].numpy()
    if len(fg) < rows or len(bg) < rows * cols:
        raise ValueError(f"the train split has {len(labels)} images: too few for a {rows} x {cols} grid")
    xf = torch.from_numpy(_images(data, fg, image_size)).permute(0, 3, 1, 2).float() / 255.0
    xb = torch.from_numpy(_images(data, bg, image_size)).permute(0, 3, 1, 2).float() / 255.0
    rng = np.random.default_rng(seed)
    mctx = MixContext(alpha=alpha, class_counts=torch.as_tensor(counts))
    names = [str(n) for n in getattr(data, "class_names", []) or []]
    names += [str(k) for k in range(len(names), len(counts))]
    out = np.zeros((rows, 1 + cols, *xf.shape[2:], 3), dtype=np.float32)
    captions: list[list[str]] = []
    for i in range(rows):
        yf = int(labels[fg[i]])
        out[i, 0] = xf[i].permute(1, 2, 0).numpy()
        caps = [f"{names[yf]}\n(n={counts[yf]})"]
        for j in range(cols):
            b = i * cols + j
            yb = int(labels[bg[b]])
            m = spec.op(xb[b:b + 1], labels[bg[b:b + 1]], xf[i:i + 1], labels[fg[i:i + 1]], rng, mctx)
            out[i, 1 + j] = m.x[0].clamp(0, 1).permute(1, 2, 0).numpy()
            lam = float(m.lam) if not torch.is_tensor(m.lam) else float(m.lam.flatten()[0])
            caps.append(f"{names[yf]} {1 - lam:.2f}\non {names[yb]}")
        captions.append(caps)
    return SampleGrid(out, captions, [int(labels[k]) for k in fg], list(counts))


def grid_figure(grid: SampleGrid, title: str) -> Any:
    """The grid as a figure of exactly (1 + cols) x rows tiles of TILE_IN inches (pixel size: tiles x dpi)."""
    rows, ncols = grid.images.shape[:2]
    head = 0.2 + 0.14 * (title.count("\n") + 1)  # inches above the grid for the title
    height = rows * TILE_IN + head
    fig, axes = plt.subplots(rows, ncols, figsize=(ncols * TILE_IN, height), squeeze=False)
    for i in range(rows):
        for j in range(ncols):
            ax = axes[i][j]
            ax.imshow(grid.images[i, j], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(grid.captions[i][j], fontsize=5.5, pad=2)
            for s in ax.spines.values():
                s.set_edgecolor("crimson" if j == 0 else "0.6")
    fig.suptitle(title, fontsize=7, y=1 - 0.08 / height, va="top")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - (head + 0.25) / height,
                        wspace=0.05, hspace=0.45)
    return fig


def write_cmo_samples(out: Path, dataset: str = "synthetic_lt", data_options: dict[str, Any] | None = None, *,
                      rows: int = 4, cols: int = 6, alpha: float = 1.0, mixer: str = "cmo",
                      seed: int = 0) -> tuple[Path, SampleGrid]:
    """Load the dataset (no download unless data_options says download=true), make the grid and write it
    atomically (.png / .pdf / .svg). data_options: DataSettings fields (root, format, imbalance_ratio, ...)."""
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("png", "pdf", "svg"):
        raise ValueError(f"--out {out}: use a .png, .pdf or .svg file name")
    if rows < 1 or cols < 1 or rows * cols > 400:
        raise ValueError(f"--rows {rows} --cols {cols}: give at least 1 each and at most 400 samples")
    given = {str(k).removeprefix("data."): v for k, v in (data_options or {}).items()}
    opts: dict[str, Any] = {"download": False, **given, "name": dataset}
    try:
        settings = DataSettings(**opts)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"--data {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    image_size = settings.image_size
    data = load_dataset(settings)
    grid = cmo_samples(data, rows, cols, mixer=mixer, alpha=alpha, seed=seed, image_size=image_size)
    title = (f"{mixer.upper() if mixer == 'cmo' else mixer} samples on {dataset} (train split): red = foreground "
             f"drawn from the minority-weighted Q, then its patch pasted on backgrounds drawn from P "
             f"(caption: class, patch area, background class); α = {alpha:g}, seed {seed}")
    fig = grid_figure(grid, "\n".join(textwrap.wrap(title, 16 * (1 + cols))))
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=GRID_DPI, format=fmt), suffix=out.suffix)
    finally:
        plt.close(fig)
    return out, grid
