"""ImageNet-LT and iNaturalist 2018 from the official "<path> <label>" split lists and image folders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from benchmark.data.base import DataError, DatasetDef, datasets, default_data_root, first_per_class

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INAT_MEAN = (0.466, 0.471, 0.380)
INAT_STD = (0.195, 0.194, 0.192)

Transform = Callable[[Any], Any]


@dataclass(frozen=True)
class _Layout:
    """Where one file-based dataset lives and what the official lists look like."""

    name: str
    title: str
    folder: str  # under default_data_root()
    train_file: str
    test_file: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_jitter: bool
    reweight_epoch: int
    source: str  # where the official lists come from
    images: str  # what the image root must hold


LAYOUTS: dict[str, _Layout] = {
    "imagenet_lt": _Layout(
        name="imagenet_lt", title="ImageNet-LT", folder="ImageNet_LT", train_file="ImageNet_LT_train.txt",
        test_file="ImageNet_LT_test.txt", num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        color_jitter=True, reweight_epoch=80,
        source="the OLTR repo (zhmiao/OpenLongTailRecognition-OLTR) or naver-ai/cmo ImageNet_LT/",
        images="the ILSVRC-2012 train/ and val/ folders"),
    "inat2018": _Layout(
        name="inat2018", title="iNaturalist 2018", folder="iNat2018", train_file="iNaturalist18_train.txt",
        test_file="iNaturalist18_val.txt", num_classes=8142, mean=INAT_MEAN, std=INAT_STD,
        color_jitter=False, reweight_epoch=160,
        source="dvlab-research/MiSLAS datasets/data_txt/",
        images="the iNat-2018 train_val2018/ folder"),
}
_ALIASES = {"imagenet": "imagenet_lt", "imagenet-lt": "imagenet_lt", "inat": "inat2018", "inat18": "inat2018",
            "inaturalist": "inat2018", "inaturalist2018": "inat2018"}


def _layout(kind: str) -> _Layout:
    key = _ALIASES.get(kind.lower(), kind.lower())
    if key not in LAYOUTS:
        raise ValueError(f"unknown file-based dataset kind '{kind}'; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[key]


def read_split(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(relative paths, int64 labels) from a "<relative path> <integer label>" list; blank lines are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"split list not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"split list {path} cannot be read ({e})") from None
    paths: list[str] = []
    labels: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        label = -1
        if len(parts) == 2:
            try:
                label = int(parts[1])
            except ValueError:
                label = -1
        if label < 0:
            raise DataError(f"{path}:{lineno}: malformed line {line.strip()[:120]!r} "
                            f"(expected '<relative path> <non-negative integer label>')")
        paths.append(parts[0])
        labels.append(label)
    return paths, np.asarray(labels, dtype=np.int64)


class FileDataset(Dataset):
    """Images under `root` at `paths` with `labels`; returns (transform(RGB PIL image), label)."""

    def __init__(self, root: str | Path, paths: list[str], labels: np.ndarray, transform: Transform | None = None):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.root = Path(root)
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image, UnidentifiedImageError

        p = self.root / self.paths[i]
        try:
            with Image.open(p) as im:
                img = im.convert("RGB")
        except FileNotFoundError:
            raise DataError(f"image not found: {p} (listed as {self.paths[i]!r} under root {self.root})") from None
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"image {p} cannot be read ({e})") from None
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[i])


@dataclass
class FileLTData:
    """A long-tailed train split and a balanced test split given as image paths under `root`."""

    name: str
    num_classes: int
    root: Path
    train_paths: list[str]
    train_y: np.ndarray  # int64 [N]
    test_paths: list[str]
    test_y: np.ndarray
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: list[str] = field(default_factory=list)
    image_size: int = 224
    reweight_epoch: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    color_jitter: bool | None = None  # ColorJitter(0.4, 0.4, 0.4) in training; None: the official code's choice

    @property
    def class_counts(self) -> list[int]:
        return np.bincount(self.train_y, minlength=self.num_classes).tolist()

    def limit_test(self, per_class: int | None) -> FileLTData:
        """A copy whose test split keeps the first `per_class` images of each class (smoke runs)."""
        if per_class is None:
            return self
        keep = first_per_class(self.test_y, self.num_classes, per_class)
        return replace(self, test_paths=[self.test_paths[i] for i in keep], test_y=self.test_y[keep])

    @property
    def jitter(self) -> bool:
        """Whether training applies ColorJitter(0.4, 0.4, 0.4): the setting, else the official code's choice."""
        return LAYOUTS[self.name].color_jitter if self.color_jitter is None else self.color_jitter

    def transforms(self) -> tuple[Transform, Transform]:
        """The reference (train, test) transforms of this dataset at `image_size`."""
        return (train_transform(self.name, self.image_size, self.color_jitter),
                test_transform(self.name, self.image_size))

    def datasets(self, train_transform: Transform | None,
                 test_transform: Transform | None) -> tuple[FileDataset, FileDataset]:
        """(train, test) FileDatasets reading images under `root`."""
        return (FileDataset(self.root, self.train_paths, self.train_y, train_transform),
                FileDataset(self.root, self.test_paths, self.test_y, test_transform))


def train_transform(kind: str, size: int = 224, color_jitter: bool | None = None) -> Transform:
    """Reference train pipeline on PIL images: RandomResizedCrop, flip, [ColorJitter], normalise. The jitter follows
    naver-ai/cmo's loaders (ImageNet-LT yes, iNaturalist no) unless `color_jitter` says otherwise (the paper gives
    iNaturalist ImageNet-LT's augmentation)."""
    from torchvision import transforms as T

    lay = _layout(kind)
    steps: list[Transform] = [
        T.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                            interpolation=T.InterpolationMode.BILINEAR),
        T.RandomHorizontalFlip(),
    ]
    if lay.color_jitter if color_jitter is None else color_jitter:
        steps.append(T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0))
    steps += [T.ToTensor(), T.Normalize(lay.mean, lay.std)]
    return T.Compose(steps)


def test_transform(kind: str, size: int = 224) -> Transform:
    """Reference test pipeline on PIL images: Resize(size * 256 / 224), CenterCrop(size), normalise."""
    from torchvision import transforms as T

    lay = _layout(kind)
    return T.Compose([T.Resize(int(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(),
                      T.Normalize(lay.mean, lay.std)])



def _paths(lay: _Layout, root: str | None, train_list: str | None,
           test_list: str | None) -> tuple[Path, Path, Path]:
    base = Path(root).expanduser() if root else default_data_root() / lay.folder
    train = Path(train_list).expanduser() if train_list else base / lay.train_file
    test = Path(test_list).expanduser() if test_list else base / lay.test_file
    return base, train, test


def split_paths(kind: str, root: str | None = None, train_list: str | None = None,
                test_list: str | None = None) -> tuple[Path, Path, Path]:
    """(image root, train list, test list) where a file-based dataset with these options looks for its files."""
    return _paths(_layout(kind), root, train_list, test_list)


def _missing_error(lay: _Layout, base: Path, missing: list[Path]) -> DataError:
    return DataError(
        f"{lay.title} split list(s) not found: {', '.join(str(p) for p in missing)}. "
        f"Put the official lists ({lay.train_file}, {lay.test_file}; from {lay.source}) and {lay.images} "
        f"in {base}, or point data.root at the folder that holds them (default: {lay.folder}/ under "
        f"$LTBENCH_DATA or the user cache dir), or pass train_list / test_list. "
        f"Nothing is downloaded: the images cannot be fetched automatically."
    )


def _check_labels(lay: _Layout, path: Path, y: np.ndarray, exact: bool, num_classes: int | None = None) -> None:
    if len(y) == 0:
        raise DataError(f"{lay.title} split list {path} has no entries")
    top, want = int(y.max()) + 1, num_classes or lay.num_classes
    if (exact and top != want) or top > want:
        raise DataError(f"{lay.title} split list {path}: labels span 0..{top - 1}, expected "
                        f"0..{want - 1} ({want} classes); wrong list for this dataset"
                        f"{'' if num_classes else ' (a synthetic set: set data.num_classes)'}?")


def _class_names(paths: list[str], y: np.ndarray, num_classes: int) -> list[str]:
    """Each class's image folder (minus the top folder, e.g. 'n01440764' or 'Plantae/7291'), else its index."""
    names = [str(k) for k in range(num_classes)]
    seen = np.zeros(num_classes, dtype=bool)
    for p, k in zip(paths, y.tolist(), strict=True):
        if not seen[k]:
            seen[k] = True
            parts = Path(p).parent.parts
            if len(parts) > 1:
                names[k] = "/".join(parts[1:])
    return names


def read_train_counts(kind: str, root: str | None = None, train_list: str | None = None,
                      num_classes: int | None = None) -> list[int]:
    """Train class counts from the train list alone (no images)."""
    lay = _layout(kind)
    base, train, _ = _paths(lay, root, train_list, None)
    if not train.is_file():
        raise _missing_error(lay, base, [train])
    _, y = read_split(train)
    _check_labels(lay, train, y, exact=True, num_classes=num_classes)
    return np.bincount(y, minlength=num_classes or lay.num_classes).tolist()


def build_file_lt(kind: str, root: str | None = None, split_seed: int = 0, imbalance_ratio: float | None = None,
                  train_list: str | None = None, test_list: str | None = None,
                  image_size: int = 224, color_jitter: bool | None = None,
                  num_classes: int | None = None) -> FileLTData:
    """The fixed official split of `kind` (split_seed / imbalance_ratio are accepted and ignored); `num_classes`
    only for a smaller (synthetic) set in the same layout."""
    del split_seed, imbalance_ratio  # fixed lists: nothing to draw
    lay = _layout(kind)
    base, train, test = _paths(lay, root, train_list, test_list)
    missing = [p for p in (train, test) if not p.is_file()]
    if missing:
        raise _missing_error(lay, base, missing)
    train_paths, train_y = read_split(train)
    test_paths, test_y = read_split(test)
    _check_labels(lay, train, train_y, exact=True, num_classes=num_classes)
    _check_labels(lay, test, test_y, exact=False, num_classes=num_classes)
    classes = num_classes or lay.num_classes
    return FileLTData(
        name=lay.name, num_classes=classes, root=base, train_paths=train_paths, train_y=train_y,
        test_paths=test_paths, test_y=test_y, mean=lay.mean, std=lay.std,
        class_names=_class_names(train_paths, train_y, classes), image_size=image_size,
        reweight_epoch=lay.reweight_epoch,
        info={"root": str(base), "train_list": str(train), "test_list": str(test), "fixed_split": True},
        color_jitter=color_jitter,
    )


def build_imagenet_lt(root: str | None = None, split_seed: int = 0, imbalance_ratio: float | None = None,
                      train_list: str | None = None, test_list: str | None = None,
                      image_size: int = 224, color_jitter: bool | None = None,
                      num_classes: int | None = None) -> FileLTData:
    """ImageNet-LT (spec 1.2): official train list, evaluated on the 50,000-image test list."""
    return build_file_lt("imagenet_lt", root, split_seed, imbalance_ratio, train_list, test_list, image_size,
                         color_jitter, num_classes)


def build_inat2018(root: str | None = None, split_seed: int = 0, imbalance_ratio: float | None = None,
                   train_list: str | None = None, test_list: str | None = None,
                   image_size: int = 224, color_jitter: bool | None = None,
                   num_classes: int | None = None) -> FileLTData:
    """iNaturalist 2018 (spec 1.3): official train list, evaluated on the official val list."""
    return build_file_lt("inat2018", root, split_seed, imbalance_ratio, train_list, test_list, image_size,
                         color_jitter, num_classes)


def _counts(kind: str) -> Callable[..., list[int]]:
    def counts(root: str | None = None, train_list: str | None = None, num_classes: int | None = None,
               **_: object) -> list[int]:
        return read_train_counts(kind, root, train_list, num_classes)

    return counts


# Images are decoded from files by DataLoader workers, per run: file datasets train alone.
datasets.register("imagenet_lt", "ImageNet-LT: official OLTR split lists over ILSVRC-2012 images (no download)",
                  packable=False)(
    DatasetDef(build=build_imagenet_lt, counts=_counts("imagenet_lt")))
datasets.register("inat2018", "iNaturalist 2018: official train / val split lists over the images (no download)",
                  packable=False)(
    DatasetDef(build=build_inat2018, counts=_counts("inat2018")))
