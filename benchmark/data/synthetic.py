"""Embedded `synthetic_lt` dataset: coloured shapes on textured scenes ("contexts"), generated in numpy.

The label lives in the foreground object (a class-specific shape and hue). The background is one of a
fixed set of contexts (a palette and a texture). In the TRAIN split the context is biased by the class:
each class has a few "home" contexts that it is drawn in most of the time, as objects are photographed in
typical places. A head class has so many images that its off-home draws still show it in (nearly) every
context, while a tail class with a handful of images is seen in only one or two. In the TEST split the
context is drawn independently of the class, so what a model learned from a tail class's few contexts does
not carry over. This is the situation CMO targets: pasting minority objects onto majority images shows
them in many more contexts (and much more often).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from benchmark.data.profile import exp_profile

_ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

_SCALE = (0.5, 0.75)  # object side as a fraction of the image side
_CENTRE = 0.1  # max offset of the object centre from the image centre (fraction of the side)
_MAX_ROT = math.pi / 10  # object rotation range (radians, +-)
_NOISE = 0.04  # std of the per-pixel noise (image range [0, 1])
_OBJ_SV = (0.75, 1.0)  # object saturation and value ranges
_HUE_SPREAD = 0.02  # per-image object hue: the class hue +- this
_CTX_MAX = 12  # number of contexts: min(num_classes, _CTX_MAX), at least 2
_HOMES = 2  # home contexts per class
_P_HOME = 0.9  # train only: probability that an image's context is one of its class's homes
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

# Context textures: t(x, y) in [0, 1] blends the context's two colours (see _paint).
_TEXTURES = ("hstripes", "checker", "vstripes", "rings", "dstripes", "gradient")


def class_layout(num_classes: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(shape index, hue in [0, 1), name) per class: distinct (shape, hue) pairs.

    Up to len(_SHAPES) classes, every class has its own shape and its own hue (hues evenly spread round the
    colour wheel, so no single colour channel separates the classes); beyond that, shapes and hues are
    interleaved and shared, and only the pair identifies the class.
    """
    if num_classes < 2:
        raise ValueError(f"synthetic_lt needs at least 2 classes, got {num_classes}")
    k = np.arange(num_classes)
    if num_classes <= len(_SHAPES):
        n_hues = num_classes
        shape, hue_idx = k, k
    else:
        n_shapes = min(len(_SHAPES), max(2, math.ceil(math.sqrt(num_classes)) - 1))
        n_hues = math.ceil(num_classes / n_shapes)
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


def context_layout(num_classes: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(context table, home contexts [num_classes, homes]) for `num_classes` classes.

    Context j has a texture and a muted two-colour palette (a light and a dark shade of its own hue), all
    fixed by j; class c's homes are contexts c, c + 1, ... (mod the number of contexts).
    """
    n_ctx = max(2, min(num_classes, _CTX_MAX))
    j = np.arange(n_ctx)
    hue = (j * 0.381966 + 0.05) % 1.0  # golden-ratio steps: neighbouring contexts get far-apart hues
    ones = np.ones(n_ctx)
    table = {
        "texture": j % len(_TEXTURES),
        "light": _hsv_to_rgb(hue, 0.3 * ones, 0.85 * ones),
        "dark": _hsv_to_rgb((hue + 0.08) % 1.0, 0.5 * ones, 0.3 * ones),
        "freq": 1.5 + 0.5 * (j // len(_TEXTURES) % 2),
    }
    homes = (np.arange(num_classes)[:, None] + np.arange(min(_HOMES, n_ctx))[None]) % n_ctx
    return table, homes


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all inputs in [0, 1] with the same shape; output has a trailing axis of 3."""
    i = np.floor(h * 6.0) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in
                      [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]], 0)
    return np.take_along_axis(table, i.astype(np.int64)[None, ..., None], 0)[0]


def draw_contexts(rng: np.random.Generator, labels: np.ndarray, homes: np.ndarray, n_ctx: int,
                  p_home: float) -> np.ndarray:
    """Context index per image: one of its class's homes with probability p_home, else uniform over all."""
    n = len(labels)
    home = homes[labels, rng.integers(0, homes.shape[1], n)]
    anywhere = rng.integers(0, n_ctx, n)
    return np.where(rng.random(n) < p_home, home, anywhere)


def _draw_params(rng: np.random.Generator, labels: np.ndarray, ctx: np.ndarray, shape_of: np.ndarray,
                 hue_of: np.ndarray, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-image random parameters: the context's texture and palette with a jitter, and the class object."""
    n = len(labels)
    half = rng.uniform(*_SCALE, n) / 2  # object half-size as a fraction of the side
    hue = (hue_of[labels] + rng.uniform(-_HUE_SPREAD, _HUE_SPREAD, n)) % 1.0
    tint = rng.normal(0, 0.03, (n, 1))  # small brightness jitter of the palette
    params = {
        # background: the context's two colours blended by its texture (random phase, orientation jitter)
        "c1": table["light"][ctx] + tint, "c2": table["dark"][ctx] + tint,
        "freq": table["freq"][ctx] * rng.uniform(0.85, 1.15, n), "theta": rng.normal(0, 0.12, n),
        "phase1": rng.uniform(0, 2 * np.pi, n), "phase2": rng.uniform(0, 2 * np.pi, n),
        "ox": rng.uniform(0.2, 0.8, n), "oy": rng.uniform(0.2, 0.8, n),
        # object: class shape and hue, random position / scale / rotation / colour jitter / shading
        "half": half, "cx": 0.5 + rng.uniform(-_CENTRE, _CENTRE, n), "cy": 0.5 + rng.uniform(-_CENTRE, _CENTRE, n),
        "rot": rng.uniform(-_MAX_ROT, _MAX_ROT, n),
        "colour": _hsv_to_rgb(hue, rng.uniform(*_OBJ_SV, n), rng.uniform(*_OBJ_SV, n)),
        "shade_u": rng.uniform(-0.25, 0.25, n), "shade_v": rng.uniform(-0.25, 0.25, n),
    }
    out = {k: v.astype(np.float32) for k, v in params.items()}
    out["shape"] = shape_of[labels]
    out["texture"] = table["texture"][ctx]
    return out


def _texture(p: dict[str, np.ndarray], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Blend weight t [n, size, size] in [0, 1] of each image's context texture."""

    def im(key: str) -> np.ndarray:
        return p[key][:, None, None]

    cos_t, sin_t = np.cos(im("theta")), np.sin(im("theta"))
    x = cos_t * (xs - 0.5) + sin_t * (ys - 0.5)  # slightly rotated frame
    y = cos_t * (ys - 0.5) - sin_t * (xs - 0.5)
    w = 2 * np.pi * im("freq")
    kinds = {
        "hstripes": lambda: np.sin(w * y + im("phase1")),
        "vstripes": lambda: np.sin(w * x + im("phase1")),
        "dstripes": lambda: np.sin(w * (x + y) * 0.7071 + im("phase1")),
        "checker": lambda: np.sin(w * x + im("phase1")) * np.sin(w * y + im("phase2")) * 2.0,
        "rings": lambda: np.sin(w * np.sqrt((xs - im("ox")) ** 2 + (ys - im("oy")) ** 2) * 1.5 + im("phase1")),
        "gradient": lambda: 2.0 * np.clip(x + 0.5, 0, 1) - 1.0 + 0 * y,
    }
    wave = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=np.float32)
    for kind in np.unique(p["texture"]):
        idx = np.flatnonzero(p["texture"] == kind)
        wave[idx] = kinds[_TEXTURES[kind]]()[idx]
    return np.clip(0.5 + 1.5 * wave, 0, 1)  # sharpened: mostly one colour or the other


def _paint(p: dict[str, np.ndarray], size: int, noise: np.ndarray) -> np.ndarray:
    """float32 [n, size, size, 3] images in [0, 1] from per-image parameters and uniform noise in [0, 1)."""
    coord = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in (0, 1)
    ys, xs = coord[None, :, None], coord[None, None, :]

    def im(key: str) -> np.ndarray:
        return p[key][:, None, None]

    def col(key: str) -> np.ndarray:
        return p[key][:, None, None, :]

    t = _texture(p, xs, ys)
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


def _render(rng: np.random.Generator, labels: np.ndarray, ctx: np.ndarray, size: int, shape_of: np.ndarray,
            hue_of: np.ndarray, table: dict[str, np.ndarray]) -> np.ndarray:
    """Images for `labels` in contexts `ctx` (uint8 [N, size, size, 3]); every random draw comes from `rng`."""
    params = _draw_params(rng, labels, ctx, shape_of, hue_of, table)
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
    head, labels sorted by class), each in one of its class's home contexts with probability _P_HOME;
    test has test_per_class images per class in contexts drawn independently of the class. Train and test
    come from independent streams derived from `seed`, so the test size never changes the train images.
    """
    shape_of, hue_of, names = class_layout(num_classes)
    table, homes = context_layout(num_classes)
    n_ctx = len(table["texture"])
    counts = exp_profile(max_per_class, num_classes, imbalance_ratio)
    train_rng, test_rng = np.random.default_rng(seed).spawn(2)
    train_y = np.repeat(np.arange(num_classes, dtype=np.int64), counts)
    test_y = np.repeat(np.arange(num_classes, dtype=np.int64), test_per_class)
    train_ctx = draw_contexts(train_rng, train_y, homes, n_ctx, _P_HOME)
    test_ctx = draw_contexts(test_rng, test_y, homes, n_ctx, 0.0)
    train_x = _render(train_rng, train_y, train_ctx, image_size, shape_of, hue_of, table)
    test_x = _render(test_rng, test_y, test_ctx, image_size, shape_of, hue_of, table)
    return train_x, train_y, test_x, test_y, names
