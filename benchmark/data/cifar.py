"""CIFAR-10-LT / CIFAR-100-LT from the official python-version files, built exactly as LDAM-DRW / CMO."""

from __future__ import annotations

import hashlib
import io
import pickle
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.base import CIFAR_MEAN, CIFAR_STD, DataError, DatasetDef, LTData, datasets, default_data_root
from benchmark.data.profile import exp_profile

_LAYOUT = {
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
         "labels", "label_names"),
    100: ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


# What the official CIFAR python batches contain: dicts of str / bytes / int lists and NumPy arrays (pickled as
# `ndarray` + `dtype` + the array reconstructor, under NumPy 1 or 2 module names); nothing else may be built.
_CIFAR_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only the types of the official CIFAR batches: a crafted file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    with path.open("rb") as f:
        return _CifarUnpickler(f, encoding="latin1").load()


def cifar_folder(root: Path, num_classes: int) -> Path:
    return root / _LAYOUT[num_classes][0]


def cifar_missing(root: Path, num_classes: int) -> list[Path]:
    """The official files of CIFAR-{10,100} that are not under root (empty: the data is present)."""
    folder, train_files, test_files, meta_file = _LAYOUT[num_classes][:4]
    return [root / folder / f for f in (*train_files, *test_files, meta_file) if not (root / folder / f).is_file()]


def read_cifar(root: Path, num_classes: int, download: bool) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y, class_names) from the official pickled batches under root."""
    folder, train_files, test_files, meta_file, label_key, names_key = _LAYOUT[num_classes]
    needed = [*train_files, *test_files, meta_file]
    if any(not (root / folder / f).is_file() for f in needed) and download:
        _download(root, num_classes)
    missing = [f for f in needed if not (root / folder / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-{num_classes} files not found: expected {root / folder}/{{{','.join(needed)}}} "
            f"(official python version). Put them there, set data.root / $LTBENCH_DATA, or allow download."
        )

    def load(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f in files:
            entry = _unpickle(root / folder / f)
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry[label_key], dtype=np.int64))
        return np.concatenate(xs).transpose(0, 2, 3, 1).copy(), np.concatenate(ys)

    try:
        train_x, train_y = load(train_files)
        test_x, test_y = load(test_files)
        names = list(_unpickle(root / folder / meta_file)[names_key])
    except (KeyError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"CIFAR-{num_classes} files under {root / folder} are malformed ({e}); "
                        f"delete them and download again") from None
    return train_x, train_y, test_x, test_y, names


def _download(root: Path, num_classes: int) -> None:
    """Download and verify the official archive through torchvision (checks its md5)."""
    from torchvision import datasets as tvd

    cls = tvd.CIFAR10 if num_classes == 10 else tvd.CIFAR100
    try:
        cls(str(root), train=True, download=True)
    except Exception as e:  # network errors come in many types; the caller reports missing files
        print(f"lt-bench: CIFAR-{num_classes} download failed ({type(e).__name__}: {e})")


def select_lt_indices(train_y: np.ndarray, counts: list[int], split_seed: int) -> np.ndarray:
    """The official subset: legacy-seeded RNG, per class in label order shuffle and keep the first n_k.

    Identical to `np.random.seed(split_seed)` followed by `np.random.shuffle` per class, as in
    imbalance_cifar.py, without touching NumPy's global state.
    """
    rng = np.random.RandomState(split_seed)
    chosen = []
    for k, n_k in enumerate(counts):
        idx = np.where(train_y == k)[0]
        rng.shuffle(idx)
        chosen.append(idx[:n_k])
    return np.concatenate(chosen)


def read_jpeg_npz(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A JPEG copy of CIFAR stored as train.npz / test.npz (`jpeg` bytes, `offsets`, `labels`, `class_names`; plain
    arrays, no pickle), decoded once and kept in the data cache ($LTBENCH_DATA or the user cache). The images are
    lossy and in (label, index in class) order, not the official global order, so the long-tailed subset drawn from
    them differs from the official one."""
    from PIL import Image

    files = [folder / "train.npz", folder / "test.npz"]
    if not all(f.is_file() for f in files):
        raise DataError(f"data.format jpeg_npz: expected {folder}/train.npz and test.npz (JPEG bytes, offsets, "
                        f"labels); point data.root at such a folder")

    key = hashlib.sha256(b"".join(f.read_bytes()[:1 << 16] + str(f.stat().st_size).encode() for f in files))
    cache = default_data_root() / f"cifar_jpeg_decoded_{key.hexdigest()[:12]}.npz"
    if cache.is_file():
        d = np.load(cache)
        return d["train_x"], d["train_y"], d["test_x"], d["test_y"], [str(n) for n in d["names"]]

    def decode(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
        d = np.load(path)
        buf, off = d["jpeg"], d["offsets"]
        x = np.stack([np.asarray(Image.open(io.BytesIO(buf[a:b].tobytes())).convert("RGB"))
                      for a, b in zip(off[:-1], off[1:], strict=True)])
        return x, d["labels"].astype(np.int64), [str(n) for n in d["class_names"]]

    train_x, train_y, names = decode(files[0])
    test_x, test_y, _ = decode(files[1])
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.tmp.npz")
        np.savez(tmp, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, names=np.array(names))
        tmp.replace(cache)
    except OSError:
        pass  # no writable cache: decode again next time
    return train_x, train_y, test_x, test_y, names


def build_cifar_lt(num_classes: int, imbalance_ratio: float = 100.0, root: str | None = None,
                   download: bool = True, split_seed: int = 0, format: str | None = None) -> LTData:
    """CIFAR-{10,100}-LT as in spec section 1.1: counts by the exponential profile, official selection. `format`
    'jpeg_npz' reads a JPEG copy under root instead of the official batches (`read_jpeg_npz`)."""
    base = Path(root).expanduser() if root else default_data_root()
    if format == "jpeg_npz":
        train_x, train_y, test_x, test_y, names = read_jpeg_npz(base)
    elif format is None:
        train_x, train_y, test_x, test_y, names = read_cifar(base, num_classes, download)
    else:
        raise DataError(f"data.format '{format}': use jpeg_npz (a JPEG copy) or leave it unset (official files)")
    img_max = len(train_y) // num_classes
    counts = exp_profile(img_max, num_classes, imbalance_ratio)
    sel = select_lt_indices(train_y, counts, split_seed)
    return LTData(
        name=f"cifar{num_classes}_lt", num_classes=num_classes,
        train_x=train_x[sel], train_y=train_y[sel], test_x=test_x, test_y=test_y,
        mean=CIFAR_MEAN, std=CIFAR_STD, class_names=names, train_source_index=sel, reweight_epoch=160,
        info={"root": str(base), "imbalance_ratio": imbalance_ratio, "split_seed": split_seed,
              "format": format or "official"},
    )


for _c in (10, 100):
    datasets.register(
        f"cifar{_c}_lt",
        f"CIFAR-{_c}-LT: exponential profile over the official train split; the test split stays balanced",
    )(DatasetDef(
        build=partial(build_cifar_lt, _c),
        counts=lambda imbalance_ratio=100.0, _c=_c, **_: exp_profile(50000 // _c, _c, imbalance_ratio),
    ))
