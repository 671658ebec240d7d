"""`data prepare` / `data check` for ImageNet-LT and iNaturalist 2018: split lists from the official files, and a
verification of the lists, the images and the paper's Table 1 statistics (one line per problem)."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.base import DataError
from benchmark.data.profile import shot_groups
from benchmark.data.split_lists import LAYOUTS, read_split
from benchmark.data.synthetic_jpeg import MANIFEST, write_text

# Table 1 of the paper (classes, training images, imbalance ratio) with the max / min per class of the official
# train lists (spec 1.2 / 1.3) and the balanced test lists counted from the files (shared/data/splits). The
# many / medium / few sizes (n > 100 / 20..100 / n < 20) are the commonly quoted ones, not recounted here.
PAPER: dict[str, dict[str, int]] = {
    "imagenet_lt": {"images": 115_846, "classes": 1000, "max": 1280, "min": 5, "many": 385, "medium": 479,
                    "few": 136, "test_per_class": 50},
    "inat2018": {"images": 437_513, "classes": 8142, "max": 1000, "min": 2, "many": 842, "medium": 4076,
                 "few": 3224, "test_per_class": 3},
}
QUOTED = {"many", "medium", "few"}  # figures from the literature rather than from the files
MAX_LINES = 10  # problem lines shown per kind of problem (then one line with the count of the rest)


@dataclass
class CheckResult:
    """The problems found (one line each; empty = the copy passes) and what was measured."""

    problems: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    checked_files: int = 0


def _source(root: Path, source: str | Path | None) -> Path:
    return Path(source).expanduser() if source else root


def prepare(kind: str, root: str | Path, source: str | Path | None = None) -> list[Path]:
    """Write the split lists the loader reads into `root` from the official files found in `source` (default: root).

    ImageNet-LT: the published ImageNet_LT_{train,val,test}.txt (validated, copied when `source` is elsewhere; val is
    optional). iNaturalist 2018: iNaturalist18_{train,val}.txt from train2018.json / val2018.json ('<file_name>
    <category_id>' in the JSON's image order, the MiSLAS lists' format). Returns the files written or kept."""
    lay = LAYOUTS[kind]
    root = Path(root).expanduser()
    src = _source(root, source)
    if not src.is_dir():
        raise DataError(f"{src} is not a folder: give --root (and --from) the folder with the official files")
    out: list[Path] = []
    if kind == "imagenet_lt":
        for name, required in (("ImageNet_LT_train.txt", True), ("ImageNet_LT_test.txt", True),
                               ("ImageNet_LT_val.txt", False)):
            if not (src / name).is_file():
                if required:
                    raise DataError(f"{src / name} not found: put the published ImageNet-LT lists ({lay.source}) "
                                    f"there or pass --from DIR")
                continue
            _, y = read_split(src / name)  # a malformed list stops here with its line number
            if len(y) == 0 or y.max() >= lay.num_classes:
                raise DataError(f"{src / name}: labels must span 0..{lay.num_classes - 1}; wrong file?")
            if src.resolve() != root.resolve():
                root.mkdir(parents=True, exist_ok=True)
                tmp = root / f".{name}.tmp"
                shutil.copyfile(src / name, tmp)
                tmp.replace(root / name)
            out.append(root / name)
        return out
    for json_name, list_name in (("train2018.json", lay.train_file), ("val2018.json", lay.test_file)):
        write_text(root / list_name, "".join(f"{p} {k}\n" for p, k in coco_entries(src / json_name)))
        out.append(root / list_name)
    return out


def coco_entries(path: Path) -> list[tuple[str, int]]:
    """(file_name, category_id) of each image of an iNat-2018 COCO-style JSON, in the JSON's image order."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} not found: put the official iNat 2018 {path.name} there or pass --from DIR") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} cannot be read as JSON ({e})") from None
    try:
        label = {a["image_id"]: int(a["category_id"]) for a in doc["annotations"]}
        images = [(str(im["file_name"]), im["id"]) for im in doc["images"]]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: not an iNat COCO file (missing or bad field {e})") from None
    missing = [name for name, i in images if i not in label]
    if missing:
        raise DataError(f"{path}: {len(missing)} image(s) without an annotation, e.g. {missing[0]}")
    return [(name, label[i]) for name, i in images]


def list_stats(y: np.ndarray, num_classes: int, test_y: np.ndarray | None = None) -> dict[str, Any]:
    """Images, classes, max / min per class and the many / medium / few sizes of a train list (n > 100, n < 20)."""
    counts = np.bincount(y, minlength=num_classes).tolist()
    g = shot_groups(counts).sizes()
    out: dict[str, Any] = {"images": int(len(y)), "classes": int(sum(c > 0 for c in counts)), "max": max(counts),
                           "min": min(counts), **g}
    if test_y is not None:
        t = np.bincount(test_y, minlength=num_classes)
        out["test_images"] = int(len(test_y))
        out["test_per_class"] = int(t.min()) if t.min() == t.max() else f"{int(t.min())}..{int(t.max())}"
    return out


def expected_stats(kind: str, root: Path, expect: str) -> dict[str, Any] | None:
    """The statistics to compare with: the paper's (expect='paper'), the generator's manifest ('synthetic'), none."""
    if expect == "none":
        return None
    if expect == "paper":
        return PAPER[kind]
    if expect == "synthetic":
        try:
            return json.loads((root / MANIFEST).read_text())["stats"]
        except (OSError, ValueError, KeyError):
            raise DataError(f"--expect synthetic: {root / MANIFEST} (written by `lt-bench data synth`) not "
                            f"found or unreadable") from None
    raise DataError(f"--expect {expect!r}: choose paper, synthetic or none")


def _decode(path: Path) -> str | None:
    """None when the image opens and decodes as RGB; else why not."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.convert("RGB").load()
    except FileNotFoundError:
        return "missing"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return f"undecodable ({type(e).__name__}: {str(e)[:80]})"
    return None


def _report(problems: list[str], what: str, items: list[str]) -> None:
    problems += [f"{what}: {x}" for x in items[:MAX_LINES]]
    if len(items) > MAX_LINES:
        problems.append(f"{what}: {len(items) - MAX_LINES} more (first {MAX_LINES} shown)")


def check(kind: str, root: str | Path, sample: int | None = None, expect: str = "paper", threads: int = 8,
          seed: int = 0, progress: Callable[[int, int], None] | None = None) -> CheckResult:
    """Verify a prepared copy: both split lists parse, labels span the classes, the statistics match `expect`, and
    every listed image (or `sample` of them, drawn with `seed`) exists and decodes."""
    lay = LAYOUTS[kind]
    root = Path(root).expanduser()
    res = CheckResult()
    want = expected_stats(kind, root, expect)
    lists = {}
    for split, name in (("train", lay.train_file), ("test", lay.test_file)):
        if not (root / name).is_file():
            res.problems.append(f"{root / name}: split list not found (run `lt-bench data prepare {kind} --root "
                                f"{root}`)")
            continue
        try:
            lists[split] = read_split(root / name)
        except DataError as e:
            res.problems.append(str(e))
    if len(lists) < 2:
        return res
    (train_p, train_y), (test_p, test_y) = lists["train"], lists["test"]
    top = int(max(train_y.max(), test_y.max())) + 1
    expected_c = int(want["classes"]) if want else top
    res.stats = list_stats(train_y, max(top, expected_c), test_y)
    if want and (top != expected_c or res.stats["classes"] != expected_c):  # the other figures follow from it
        res.problems.append(f"classes: the train list has images of {res.stats['classes']} classes (labels "
                            f"0..{top - 1} over both lists), expected {expected_c} ({expect})")
    elif want:
        for key, value in want.items():
            got = res.stats.get(key)
            if got != value:
                note = " (commonly quoted figure, not recounted from the official file)" if key in QUOTED else ""
                where = lay.test_file if key == "test_per_class" else lay.train_file
                res.problems.append(f"{key}: {got} in {where}, expected {value} ({expect}){note}")
    paths = train_p + test_p
    if sample is not None and sample < len(paths):
        paths = random.Random(seed).sample(paths, sample)
    bad: dict[str, list[str]] = {}
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for i, (p, why) in enumerate(zip(paths, pool.map(lambda q: _decode(root / q), paths), strict=True)):
            if why is not None:
                bad.setdefault("missing" if why == "missing" else "undecodable", []).append(
                    f"{root / p}" + ("" if why == "missing" else f" {why.removeprefix('undecodable ')}"))
            if progress is not None and (i + 1) % 1000 == 0:
                progress(i + 1, len(paths))
    res.checked_files = len(paths)
    for what in ("missing", "undecodable"):
        _report(res.problems, f"{what} image", bad.get(what, []))
    return res
