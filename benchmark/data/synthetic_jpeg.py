"""Synthetic JPEG datasets in the ImageNet-LT and iNaturalist 2018 layouts: a file tree of real JPEGs, long-tailed."""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchmark.data.profile import shot_groups

MANIFEST = "synthetic.json"  # what the generator wrote: `lt-bench data check --expect synthetic` compares to it
SUPERCATEGORIES = ("Plantae", "Insecta", "Aves", "Reptilia", "Mammalia", "Fungi", "Amphibia", "Mollusca",
                   "Animalia", "Arachnida", "Actinopterygii", "Chromista", "Protozoa", "Bacteria")
KINDS = ("imagenet_lt", "inat2018")


@dataclass(frozen=True)
class SynthSpec:
    """The set to write: classes, the head and tail class sizes, balanced test (and LT val) sizes, image side."""

    kind: str
    classes: int = 10
    max_per_class: int = 20
    min_per_class: int = 2
    test_per_class: int = 2
    val_per_class: int = 1  # ImageNet-LT's held-out val list (from the train folder); iNat has none
    size: int = 64  # nominal longer side; each image gets its own aspect ratio in [3/4, 1]
    quality: int = 90
    seed: int = 0


@dataclass
class SynthSet:
    """What was written: the root, the per-class train counts (in label order) and the files of the official layout."""

    spec: SynthSpec
    root: Path
    counts: list[int]
    files: list[str] = field(default_factory=list)  # official list / JSON files written under root

    def stats(self) -> dict[str, object]:
        g = shot_groups(self.counts).sizes()
        return {"images": sum(self.counts), "classes": len(self.counts), "max": max(self.counts),
                "min": min(self.counts), "many": g["many"], "medium": g["medium"], "few": g["few"],
                "test_per_class": self.spec.test_per_class}


def pareto_counts(classes: int, max_per_class: int, min_per_class: int, seed: int = 0) -> list[int]:
    """Power-law (Pareto / Zipf-like) class sizes: the k-th largest class holds round(max * (k+1)^-a) with `a` set so
    the smallest holds `min`; the sizes are then dealt to the labels in a random order (the head is not label 0)."""
    if classes < 1 or not 1 <= min_per_class <= max_per_class:
        raise ValueError(f"need classes >= 1 and 1 <= min ({min_per_class}) <= max ({max_per_class}) per class")
    a = math.log(max_per_class / min_per_class) / math.log(classes) if classes > 1 else 0.0
    sizes = [max(min_per_class, round(max_per_class * (k + 1) ** -a)) for k in range(classes)]
    sizes[-1] = min_per_class
    perm = np.random.default_rng(seed).permutation(classes)
    return [int(sizes[perm[k]]) for k in range(classes)]


def _image(rng: np.random.Generator, label: int, classes: int, size: int) -> np.ndarray:
    """An HWC uint8 picture: a class hue gradient, a bright disc and noise, at a random aspect ratio."""
    short = max(8, round(size * rng.uniform(0.75, 1.0)))
    h, w = (short, size) if rng.random() < 0.5 else (size, short)
    hue = label / max(1, classes)
    base = np.array([math.sin(2 * math.pi * (hue + t / 3)) * 0.5 + 0.5 for t in range(3)]) * 200 + 20
    ys, xs = np.mgrid[0:h, 0:w]
    img = base[None, None, :] * (0.6 + 0.4 * (xs / w))[..., None]
    cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0.15, 0.35) * min(h, w)
    img[(ys - cy) ** 2 + (xs - cx) ** 2 < r * r] = 255 - base
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, format="JPEG", quality=quality)


def write_text(path: Path, text: str) -> None:
    """Write a file whole or not at all (temp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _entries(spec: SynthSpec, counts: list[int]) -> dict[str, list[tuple[str, int]]]:
    """(relative path, label) of every image of each official list, in the official naming."""
    out: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    if spec.kind == "imagenet_lt":
        serial = 0
        for k, n in enumerate(counts):
            wnid = f"n{10_000_000 + k:08d}"
            out["train"] += [(f"train/{wnid}/{wnid}_{i}.JPEG", k) for i in range(n)]
            out["val"] += [(f"train/{wnid}/{wnid}_{n + i}.JPEG", k) for i in range(spec.val_per_class)]
            for _ in range(spec.test_per_class):
                serial += 1
                out["test"].append((f"val/{wnid}/ILSVRC2012_val_{serial:08d}.JPEG", k))
        return out
    rng = np.random.default_rng(spec.seed + 1)
    for k, n in enumerate(counts):
        folder = f"train_val2018/{SUPERCATEGORIES[k % len(SUPERCATEGORIES)]}/{k}"
        out["train"] += [(f"{folder}/{rng.bytes(16).hex()}.jpg", k) for _ in range(n)]
        out["test"] += [(f"{folder}/{rng.bytes(16).hex()}.jpg", k) for _ in range(spec.test_per_class)]
    return out


def _coco(entries: list[tuple[str, int]], sizes: dict[str, tuple[int, int]], classes: int, first_id: int) -> str:
    """An iNat-2018-style COCO JSON (images, annotations, categories) for these entries."""
    images = [{"id": first_id + i, "file_name": p, "width": sizes[p][1], "height": sizes[p][0], "license": 0,
               "rights_holder": "lt-bench synthetic"} for i, (p, _) in enumerate(entries)]
    annotations = [{"id": first_id + i, "image_id": first_id + i, "category_id": k}
                   for i, (_, k) in enumerate(entries)]
    categories = [{"id": k, "name": f"species_{k}", "supercategory": SUPERCATEGORIES[k % len(SUPERCATEGORIES)],
                   "kingdom": "synthetic"} for k in range(classes)]
    return json.dumps({"info": {"description": "lt-bench synthetic iNaturalist 2018 layout"}, "images": images,
                       "annotations": annotations, "categories": categories, "licenses": []})


def write_synthetic(spec: SynthSpec, root: str | Path, threads: int = 8) -> SynthSet:
    """Write the images and the official files of `spec.kind` under `root`: ImageNet-LT's ImageNet_LT_{train,val,
    test}.txt lists, or iNat 2018's train2018.json / val2018.json (run `lt-bench data prepare` to get the loader's
    lists from them); plus synthetic.json with the expected statistics."""
    if spec.kind not in KINDS:
        raise ValueError(f"unknown kind '{spec.kind}': choose from {', '.join(KINDS)}")
    if spec.size < 8 or spec.test_per_class < 1 or spec.val_per_class < 0:
        raise ValueError("need size >= 8, test_per_class >= 1 and val_per_class >= 0")
    root = Path(root).expanduser()
    counts = pareto_counts(spec.classes, spec.max_per_class, spec.min_per_class, spec.seed)
    entries = _entries(spec, counts)
    jobs = [e for split in ("train", "val", "test") for e in entries[split]]
    seeds = np.random.default_rng(spec.seed).integers(0, 2**63, len(jobs))
    sizes: dict[str, tuple[int, int]] = {}

    def one(i: int) -> None:
        path, label = jobs[i]
        img = _image(np.random.default_rng(int(seeds[i])), label, spec.classes, spec.size)
        sizes[path] = img.shape[:2]
        _write_jpeg(root / path, img, spec.quality)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(one, range(len(jobs))))
    out = SynthSet(spec, root, counts)
    if spec.kind == "imagenet_lt":
        for split in ("train", "val", "test"):
            name = f"ImageNet_LT_{split}.txt"
            write_text(root / name, "".join(f"{p} {k}\n" for p, k in entries[split]))
            out.files.append(name)
    else:
        write_text(root / "train2018.json", _coco(entries["train"], sizes, spec.classes, 0))
        write_text(root / "val2018.json", _coco(entries["test"], sizes, spec.classes, len(entries["train"])))
        out.files += ["train2018.json", "val2018.json"]
    write_text(root / MANIFEST, json.dumps({"spec": asdict(spec), "counts": counts, "stats": out.stats()}, indent=1))
    return out
