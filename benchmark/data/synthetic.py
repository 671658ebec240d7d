"""Embedded `synthetic_lt` dataset: coloured shapes on random textured backgrounds, generated in numpy."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from benchmark.data.profile import exp_profile

_ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

_SCALE = (0.35, 0.6)  # object side as a fraction of the image side
_MAX_ROT = math.pi / 10  # object rotation range (radians, +-)
_NOISE = 0.04  # std of the per-pixel noise (image range [0, 1])
_BG_VIVID = 0.2  # fraction of background colours as saturated as the objects
_OBJ_SV = (0.75, 1.0)  # object saturation and value ranges
_CHUNK = 256  # images painted at a time (keeps the float32 working set in cache)

# Shapes in object-local coordinates (u right, v down, both in [-1, 1] at the object's half-size), the
# most distinct ones first (small num_classes use only the first few).
_SHAPES: list[tuple[str, _ShapeFn]] = [
    ("ring", lambda u, v: (u * u + v * v < 0.9) & (u * u + v * v > 0.3)),
    ("cross", lambda u, v: ((np.abs(u) < 0.3) | (np.abs(v) < 0.3)) & (np.maximum(np.abs(u), np.abs(v)) < 0.95)),
    ("triangle", lambda u, v: (v < 0.75) & (np.abs(u) < 0.55 * (v + 0.95))),
    ("square", lambda u, v: np.maximum(np.abs(u), np.abs(v)) < 0.78),
    ("disc", lambda u, v: u * u + v * v < 0.85),
    ("bar", lambda u, v: (np.abs(u) < 0.95) & (np.abs(v) < 0.35)),
    ("diamond", lambda u, v: np.abs(u) + np.abs(v) < 1.0),
    ("frame", lambda u, v: (np.maximum(np.abs(u), np.abs(v)) < 0.85) & (np.maximum(np.abs(u), np.abs(v)) > 0.5)),
    ("xcross", lambda u, v: ((np.abs(u - v) < 0.4) | (np.abs(u + v) < 0.4)) & (u * u + v * v < 0.9)),
    ("halfdisc", lambda u, v: (u * u + v * v < 0.9) & (v > -0.1)),
    ("crescent", lambda u, v: (u * u + v * v < 0.9) & ((u - 0.45) ** 2 + (v + 0.15) ** 2 > 0.45)),
    ("pillar", lambda u, v: (np.abs(u) < 0.35) & (np.abs(v) < 0.95)),
]

_HUE_NAMES = [(0, "red"), (30, "orange"), (60, "yellow"), (90, "lime"), (120, "green"), (165, "teal"),
              (180, "cyan"), (210, "azure"), (240, "blue"), (270, "violet"), (285, "purple"),
              (300, "magenta"), (330, "pink")]


def class_layout(num_classes: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(shape index, hue in [0, 1), name) per class: distinct (shape, hue) pairs, shapes and hues interleaved."""
    if num_classes < 2:
        raise ValueError(f"synthetic_lt needs at least 2 classes, got {num_classes}")
    n_shapes = min(len(_SHAPES), max(2, math.ceil(math.sqrt(num_classes)) - 1))
    n_hues = math.ceil(num_classes / n_shapes)
    k = np.arange(num_classes)
    shape = k % n_shapes
    hue_idx = (shape + k // n_shapes) % n_hues  # bijective on k < n_shapes * n_hues
    hues = hue_idx / n_hues
    hue_names = []
    for j in range(n_hues):
        deg = 360.0 * j / n_hues
        hue_names.append(min(_HUE_NAMES, key=lambda hn: min(abs(hn[0] - deg), 360 - abs(hn[0] - deg)))[1])
    if len(set(hue_names)) < n_hues:
        hue_names = [f"{n}{j}" for j, n in enumerate(hue_names)]
    names = [f"{hue_names[h]}_{_SHAPES[s][0]}" for s, h in zip(shape.tolist(), hue_idx.tolist(), strict=True)]
    return shape, hues, names


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all inputs in [0, 1] with the same shape; output has a trailing axis of 3."""
    i = np.floor(h * 6.0) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in
                      [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]], 0)
    return np.take_along_axis(table, i.astype(np.int64)[None, ..., None], 0)[0]


def _background_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mostly muted colours (any hue), a fifth of them as saturated as the objects."""
    sat = np.where(rng.random(n) < _BG_VIVID, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.45, n))
    return _hsv_to_rgb(rng.random(n), sat, rng.uniform(0.15, 0.95, n))


def _draw_params(rng: np.random.Generator, labels: np.ndarray, shape_of: np.ndarray,
                 hue_of: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image random parameters; the background ones are drawn identically for every class."""
    n = len(labels)
    half = rng.uniform(*_SCALE, n) / 2  # object half-size as a fraction of the side
    hue = (hue_of[labels] + rng.normal(0, 0.015, n)) % 1.0
    params = {
        # background: two colours blended along low-frequency stripes and a linear gradient
        "c1": _background_colours(rng, n), "c2": _background_colours(rng, n),
        "theta1": rng.uniform(0, 2 * np.pi, n), "theta2": rng.uniform(0, 2 * np.pi, n),
        "freq": rng.uniform(0.5, 3.0, n), "phase": rng.uniform(0, 2 * np.pi, n), "mix": rng.uniform(0, 1, n),
        # object: class shape and hue, random position / scale / rotation / colour jitter / shading
        "half": half, "cx": rng.uniform(half, 1 - half), "cy": rng.uniform(half, 1 - half),
        "rot": rng.uniform(-_MAX_ROT, _MAX_ROT, n),
        "colour": _hsv_to_rgb(hue, rng.uniform(*_OBJ_SV, n), rng.uniform(*_OBJ_SV, n)),
        "shade_u": rng.uniform(-0.25, 0.25, n), "shade_v": rng.uniform(-0.25, 0.25, n),
    }
    out = {k: v.astype(np.float32) for k, v in params.items()}
    out["shape"] = shape_of[labels]
    return out


def _paint(p: dict[str, np.ndarray], size: int, noise: np.ndarray) -> np.ndarray:
    """float32 [n, size, size, 3] images in [0, 1] from per-image parameters and uniform noise in [0, 1)."""
    coord = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in (0, 1)
    ys, xs = coord[None, :, None], coord[None, None, :]

    def im(key: str) -> np.ndarray:
        return p[key][:, None, None]

    def col(key: str) -> np.ndarray:
        return p[key][:, None, None, :]

    proj1 = np.cos(im("theta1")) * xs + np.sin(im("theta1")) * ys
    proj2 = np.cos(im("theta2")) * (xs - 0.5) + np.sin(im("theta2")) * (ys - 0.5)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * im("freq") * proj1 + im("phase"))
    t = im("mix") * stripes + (1 - im("mix")) * np.clip(proj2 + 0.5, 0, 1)
    img = col("c1") + (col("c2") - col("c1")) * t[..., None]

    dx, dy = xs - im("cx"), ys - im("cy")
    cos_r, sin_r, inv = np.cos(im("rot")), np.sin(im("rot")), 1 / im("half")
    u = (cos_r * dx + sin_r * dy) * inv
    v = (cos_r * dy - sin_r * dx) * inv
    # Anti-aliased coverage: the shape test at 2 x 2 sub-pixel positions, averaged.
    mask = np.zeros(u.shape, dtype=np.float32)
    step = 0.25 / size * inv
    for s in np.unique(p["shape"]):
        idx = np.flatnonzero(p["shape"] == s)
        for ox, oy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            du = (cos_r[idx] * ox + sin_r[idx] * oy) * step[idx]
            dv = (cos_r[idx] * oy - sin_r[idx] * ox) * step[idx]
            mask[idx] += _SHAPES[s][1](u[idx] + du, v[idx] + dv)
    mask *= 0.25
    shade = 1.0 + im("shade_u") * u + im("shade_v") * v
    obj = col("colour") * shade[..., None]
    obj -= img
    obj *= mask[..., None]
    img += obj

    noise -= 0.5
    noise *= _NOISE * math.sqrt(12)  # uniform pixel noise of std _NOISE
    img += noise
    return np.clip(img, 0, 1, out=img)


def _render(rng: np.random.Generator, labels: np.ndarray, size: int, shape_of: np.ndarray,
            hue_of: np.ndarray) -> np.ndarray:
    """Images for `labels` (uint8 [N, size, size, 3]); every random draw comes from `rng`."""
    params = _draw_params(rng, labels, shape_of, hue_of)
    out = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for a in range(0, len(labels), _CHUNK):
        chunk = {k: v[a:a + _CHUNK] for k, v in params.items()}
        noise = rng.random((len(chunk["shape"]), size, size, 3), dtype=np.float32)
        img = _paint(chunk, size, noise)
        img *= 255
        img += 0.5
        out[a:a + _CHUNK] = img
    return out


def render_synthetic(num_classes: int = 10, imbalance_ratio: float = 10.0, max_per_class: int = 300,
                     test_per_class: int = 50, image_size: int = 32, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(train_x uint8 [N,H,W,3], train_y int64 [N], test_x, test_y, class_names).

    Train class k has exp_profile(max_per_class, num_classes, imbalance_ratio)[k] images (class 0 is the
    head, labels sorted by class); test has test_per_class images per class. Train and test come from
    independent streams derived from `seed`, so the test size never changes the train images.
    """
    shape_of, hue_of, names = class_layout(num_classes)
    counts = exp_profile(max_per_class, num_classes, imbalance_ratio)
    train_rng, test_rng = np.random.default_rng(seed).spawn(2)
    train_y = np.repeat(np.arange(num_classes, dtype=np.int64), counts)
    test_y = np.repeat(np.arange(num_classes, dtype=np.int64), test_per_class)
    train_x = _render(train_rng, train_y, image_size, shape_of, hue_of)
    test_x = _render(test_rng, test_y, image_size, shape_of, hue_of)
    return train_x, train_y, test_x, test_y, names
