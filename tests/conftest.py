"""Shared fixtures: temp results dirs, W&B offline under tmp, CIFAR files in the official layout."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
CIFAR10_JPEG = SHARED / "data" / "cifar10_jpeg_q75"


def write_cifar(root: Path, num_classes: int, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                test_y: np.ndarray, names: list[str]) -> Path:
    """Write NHWC uint8 arrays as the official python-version CIFAR pickles under root."""
    def entry(x: np.ndarray, y: np.ndarray, key: str) -> dict:
        return {"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), key: [int(v) for v in y]}

    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for i, part in enumerate(np.array_split(np.arange(len(train_y)), 5), start=1):
            (folder / f"data_batch_{i}").write_bytes(pickle.dumps(entry(train_x[part], train_y[part], "labels")))
        (folder / "test_batch").write_bytes(pickle.dumps(entry(test_x, test_y, "labels")))
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train").write_bytes(pickle.dumps(entry(train_x, train_y, "fine_labels")))
        (folder / "test").write_bytes(pickle.dumps(entry(test_x, test_y, "fine_labels")))
        (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": names}))
    return folder


@pytest.fixture
def tiny_cifar10(tmp_path: Path) -> Path:
    """CIFAR-10 layout with 50 random images per class, interleaved labels as in the official files."""
    rng = np.random.default_rng(1)
    train_y = np.tile(np.arange(10), 50)
    rng.shuffle(train_y)
    train_x = rng.integers(0, 256, (500, 32, 32, 3), dtype=np.uint8)
    test_y = np.repeat(np.arange(10), 5)
    test_x = rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    write_cifar(tmp_path / "data", 10, train_x, train_y, test_x, test_y, [f"c{i}" for i in range(10)])
    return tmp_path / "data"


def decode_cifar10_jpeg(src: Path, root: Path) -> Path:
    """Decode the JPEG copy of CIFAR-10 (train.npz / test.npz in `src`) into the official python-version layout
    under root (also used by reports/perf/gpu_checks.sh on the GPU machine)."""
    from PIL import Image

    def decode(split: str) -> tuple[np.ndarray, np.ndarray]:
        d = np.load(src / f"{split}.npz")
        buf, off = d["jpeg"], d["offsets"]
        x = np.stack([np.asarray(Image.open(io.BytesIO(buf[a:b].tobytes())).convert("RGB"))
                      for a, b in zip(off[:-1], off[1:], strict=True)])
        return x, d["labels"].astype(np.int64)

    train_x, train_y = decode("train")
    test_x, test_y = decode("test")
    names = [str(n) for n in np.load(src / "train.npz")["class_names"]]
    write_cifar(root, 10, train_x, train_y, test_x, test_y, names)
    return root


@pytest.fixture(scope="session")
def real_cifar10(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared real CIFAR-10 (JPEG q75 copy) decoded into the official layout; skipped when absent."""
    if not (CIFAR10_JPEG / "train.npz").is_file():
        pytest.skip("real CIFAR-10 copy not present in ../shared/data")
    return decode_cifar10_jpeg(CIFAR10_JPEG, tmp_path_factory.mktemp("cifar10_real"))


@pytest.fixture(autouse=True)
def _wandb_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes W&B files into the repository, nor bench profiles into the user's cache: W&B disabled, with
    its folders under tmp, unless a test asks for offline mode (wandb_offline); the cache under tmp."""
    monkeypatch.setenv("LTBENCH_CACHE_DIR", str(tmp_path / "ltbench_cache"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_default"))
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B in offline mode with every directory under tmp; returns the W&B dir."""
    wdir = tmp_path / "wandb_home"
    for var, sub in (("WANDB_DIR", "dir"), ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config")):
        (wdir / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(wdir / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return wdir / "dir"


TINY_SUITE = """
suite: tiny
version: 1
title: "Tiny suite for tests"
defaults:
  data: {name: synthetic_lt, imbalance_ratio: 4, num_classes: 4, max_per_class: 24, test_per_class: 6,
         image_size: 8}
  train: {epochs: 2, batch_size: 16, warmup_epochs: 1, device: cpu}
  mixer: {start: -1, end: 0}
seeds: [0]
shots: {many_above: 10, few_below: 8}
rows:
  - name: CE
    method: {loss: ce}
    paper: {acc/all: 50.0}
  - name: CE + CMO
    method: {loss: ce, mixer: cmo}
    paper: {acc/all: 60.0, acc/few: 10.0}
  - name: Cited
    cited: true
    paper: {acc/all: 70.0}
"""


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    p = tmp_path / "suites" / "tiny.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(TINY_SUITE)
    return p
