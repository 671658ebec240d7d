"""The real-data anchor: CIFAR-10-LT read from a JPEG copy through a dataset option, and the suite's smoke."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.config.catalog import load_dataset
from benchmark.run.records import read_record
from benchmark.schema.settings import DataSettings
from tests.conftest import CIFAR10_JPEG


def _write_jpeg_copy(folder: Path, per_class: int) -> None:
    """train.npz / test.npz in the shared copy's layout: concatenated JPEG bytes, offsets, labels, class names."""
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for split, n in (("train", per_class), ("test", 2)):
        labels = np.repeat(np.arange(10), n)
        blobs = []
        for _ in labels:
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=75)
            blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
        np.savez(folder / f"{split}.npz", jpeg=np.concatenate(blobs), offsets=offsets, labels=labels,
                 index_in_class=np.tile(np.arange(n), 10), class_names=np.array([f"c{i}" for i in range(10)]))


def test_jpeg_copy_is_a_dataset_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path / "cache"))
    _write_jpeg_copy(tmp_path / "copy", per_class=20)
    d = load_dataset(DataSettings(name="cifar10_lt", imbalance_ratio=10, root=str(tmp_path / "copy"),
                                  format="jpeg_npz", download=False))
    # int(20 x 0.1^(k / 9)): 20, 15.9, 11.99, 9.3, 7.2, 5.6, 4.3, 3.3, 2.6, 2.0
    assert d.class_counts == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2] and d.test_x.shape == (20, 32, 32, 3)
    assert d.info["format"] == "jpeg_npz" and list((tmp_path / "cache").glob("cifar_jpeg_decoded_*.npz"))
    plain = DataSettings(name="cifar10_lt")
    assert DataSettings(name="cifar10_lt", format="jpeg_npz").model_dump(exclude_none=True) != \
        plain.model_dump(exclude_none=True)  # a JPEG copy is other data: another run id
    with pytest.raises(Exception, match="train.npz"):
        load_dataset(DataSettings(name="cifar10_lt", root=str(tmp_path), format="jpeg_npz", download=False))


def test_anchor_smoke_on_the_shared_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (CIFAR10_JPEG / "train.npz").is_file():
        pytest.skip("real CIFAR-10 copy not present in ../shared/data")
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path / "cache"))
    args = ["run", "suite", "cifar10_anchor", "--smoke", "--rows", "CE,LDAM-DRW + CMO,Remix", "--tracker", "none",
            "--set", "data.format=jpeg_npz", "--set", f"data.root={CIFAR10_JPEG}", "--set", "data.download=false",
            "--results-dir", str(tmp_path / "res")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    recs = [read_record(p) for p in sorted((tmp_path / "res").glob("cifar10_anchor/*/*.json"))]
    assert len(recs) == 3 and all(r.status == "done" for r in recs)
    assert all(r.class_counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50] for r in recs)
    remix = next(r for r in recs if r.row == "Remix")
    assert "every batch of every epoch" in remix.choices["remix_schedule"]
