"""CIFAR-LT construction: exact counts, the official legacy-seeded selection, files, shot groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.data.base import DataError, datasets
from benchmark.data.profile import exp_profile, shot_groups

# (dataset, ratio) -> total, max, min, many, medium, few  (spec section 1.1)
TABLE = {
    ("cifar100_lt", 100): (10847, 500, 5, 35, 35, 30),
    ("cifar100_lt", 50): (12608, 500, 10, 41, 41, 18),
    ("cifar100_lt", 10): (19573, 500, 50, 69, 31, 0),
    ("cifar10_lt", 100): (12406, 5000, 50, 8, 2, 0),
    ("cifar10_lt", 50): (13996, 5000, 100, 9, 1, 0),
    ("cifar10_lt", 10): (20431, 5000, 500, 10, 0, 0),
}


@pytest.mark.parametrize(("name", "ratio"), list(TABLE))
def test_lt_counts_match_spec(name: str, ratio: int) -> None:
    counts = datasets.get(name).counts(imbalance_ratio=ratio)
    g = shot_groups(counts, 100, 20).sizes()
    assert (sum(counts), max(counts), min(counts), g["many"], g["medium"], g["few"]) == TABLE[(name, ratio)]
    assert counts == sorted(counts, reverse=True)


def test_cifar10_lt_ratio100_per_class() -> None:
    assert exp_profile(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_exact_20_moves_between_medium_and_few() -> None:
    counts = exp_profile(500, 100, 100)
    assert counts.count(20) == 1
    test_py = shot_groups(counts, 100, 20).sizes()  # 20 <= n <= 100 is medium
    train_py = shot_groups(counts, 100, 21).sizes()  # n <= 20 is few (imagenet_train.py)
    assert (test_py["medium"] - train_py["medium"], train_py["few"] - test_py["few"]) == (1, 1)


def test_selection_is_the_legacy_seeded_per_class_shuffle(tiny_cifar10: Path) -> None:
    d = datasets.get("cifar10_lt").build(imbalance_ratio=10, root=str(tiny_cifar10), download=False)
    from benchmark.data.cifar import read_cifar

    train_x, train_y, *_ = read_cifar(tiny_cifar10, 10, download=False)
    # The reference code, literally: seed the global legacy RNG, shuffle each class's indices in label order.
    np.random.seed(0)
    expected = []
    for k, n_k in enumerate(exp_profile(50, 10, 10)):
        idx = np.where(train_y == k)[0]
        np.random.shuffle(idx)
        expected.extend(idx[:n_k].tolist())
    assert d.train_source_index.tolist() == expected
    assert np.array_equal(d.train_x, train_x[expected])
    assert d.class_counts == exp_profile(50, 10, 10)
    assert len(d.test_y) == 50 and np.bincount(d.test_y).tolist() == [5] * 10  # test split stays balanced


def test_split_seed_changes_the_subset(tiny_cifar10: Path) -> None:
    a = datasets.get("cifar10_lt").build(imbalance_ratio=10, root=str(tiny_cifar10), download=False)
    b = datasets.get("cifar10_lt").build(imbalance_ratio=10, root=str(tiny_cifar10), download=False, split_seed=1)
    assert a.class_counts == b.class_counts and a.train_source_index.tolist() != b.train_source_index.tolist()


def test_missing_files_say_where(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        datasets.get("cifar100_lt").build(root=str(tmp_path), download=False)
    msg = str(e.value)
    assert "cifar-100-python" in msg and str(tmp_path) in msg and "\n" not in msg


def test_real_cifar10_lt_counts(real_cifar10: Path) -> None:
    d = datasets.get("cifar10_lt").build(imbalance_ratio=100, root=str(real_cifar10), download=False)
    assert d.class_counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert d.train_x.shape == (12406, 32, 32, 3) and len(d.test_y) == 10000


def test_a_crafted_cifar_batch_does_not_run_code(tiny_cifar10: Path, tmp_path: Path) -> None:
    """CIFAR batches are read by an unpickler that builds only arrays, lists and strings: a batch that would run
    code on load is refused with one line, and the code never runs."""
    import pickle

    from benchmark.config.catalog import load_dataset
    from benchmark.data.base import DataError
    from benchmark.schema.settings import DataSettings

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple:
            return (open, (str(marker), "w"))

    batch = tiny_cifar10 / "cifar-10-batches-py" / "data_batch_1"
    entry = pickle.loads(batch.read_bytes())
    entry["labels"] = Payload()
    batch.write_bytes(pickle.dumps(entry))
    with pytest.raises(DataError, match=r"malformed \(\w+\.open is not allowed in a CIFAR batch\)"):
        load_dataset(DataSettings(name="cifar10_lt", root=str(tiny_cifar10), download=False, imbalance_ratio=10))
    assert not marker.exists()
