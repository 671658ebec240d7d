"""ImageNet-LT / iNaturalist 2018 split lists: real list counts, a tiny on-disk fixture, errors and limit_test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data import split_lists as sl
from benchmark.data.base import DataError, datasets

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "splits"

# (registered name, train list, test list, classes the fixture uses: first, second and the last label)
LAYOUTS = {
    "imagenet_lt": ("ImageNet_LT_train.txt", "ImageNet_LT_test.txt", (0, 1, 999)),
    "inat2018": ("iNaturalist18_train.txt", "iNaturalist18_val.txt", (0, 5, 8141)),
}
TRAIN_PER_CLASS = (6, 3, 2)
TEST_PER_CLASS = 3


def _real(name: str) -> Path:
    p = SPLITS / name
    if not p.is_file():
        pytest.skip(f"{p} not present")
    return p


# (a) the real lists -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "lines", "classes", "per_class", "prefix"), [
    ("ImageNet_LT_val.txt", 20_000, 1000, 20, "train/"),
    ("ImageNet_LT_test.txt", 50_000, 1000, 50, "val/"),
    ("iNaturalist18_val.txt", 24_426, 8142, 3, "train_val2018/"),
])
def test_real_lists(name: str, lines: int, classes: int, per_class: int, prefix: str) -> None:
    path = _real(name)
    paths, y = sl.read_split(path)
    assert len(paths) == len(y) == lines == sum(1 for ln in path.read_text().splitlines() if ln.strip())
    assert y.dtype == np.int64
    assert np.bincount(y).tolist() == [per_class] * classes
    assert all(p.startswith(prefix) for p in paths)
    assert len(set(paths)) == lines


def test_real_imagenet_folders_match_labels() -> None:
    """Every ImageNet-LT class is one WordNet folder (n########), the same in the val and test lists."""
    folders = {}
    for name in ("ImageNet_LT_val.txt", "ImageNet_LT_test.txt"):
        paths, y = sl.read_split(_real(name))
        pairs = {(p.split("/")[1], int(k)) for p, k in zip(paths, y, strict=True)}
        assert len(pairs) == 1000 and len({w for w, _ in pairs}) == 1000
        assert all(w.startswith("n") and len(w) == 9 for w, _ in pairs)
        folders[name] = pairs
    assert folders["ImageNet_LT_val.txt"] == folders["ImageNet_LT_test.txt"]


def test_real_inat_class_folder_is_label() -> None:
    paths, y = sl.read_split(_real("iNaturalist18_val.txt"))
    parts = [p.split("/") for p in paths]
    assert all(len(q) == 4 and q[0] == "train_val2018" and q[3].endswith(".jpg") for q in parts)
    assert [int(q[2]) for q in parts] == y.tolist()
    assert len({q[1] for q in parts}) > 1  # several supercategories


def test_real_lists_through_the_registry(tmp_path: Path) -> None:
    """counts() / build() read any list of the official format: the iNat val list stands in for a train list."""
    val = _real("iNaturalist18_val.txt")
    counts = datasets.get("inat2018").counts(imbalance_ratio=100.0, root=str(tmp_path), train_list=str(val))
    assert counts == [3] * 8142
    data = datasets.get("inat2018").build(root=str(tmp_path), train_list=str(val), test_list=str(val))
    assert data.num_classes == 8142 and len(data.train_paths) == 24_426
    assert data.class_names[7291] == "Plantae/7291"
    assert len(data.limit_test(1).test_y) == 8142


# (b) a tiny fixture in the real layout ------------------------------------------------------------------------


def _jpeg(path: Path, rgb: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), rgb).save(path, quality=95)


def _image_path(name: str, split: str, k: int, i: int) -> str:
    if name == "imagenet_lt":
        wnid = f"n{k:08d}"
        return f"train/{wnid}/{wnid}_{i}.JPEG" if split == "train" else f"val/{wnid}/ILSVRC2012_val_{k:04d}{i:04d}.JPEG"
    return f"train_val2018/{'Plantae' if k % 2 else 'Aves'}/{k}/{split}{i:03d}.jpg"


def make_fixture(root: Path, name: str, images: bool = True) -> dict[str, tuple[int, int, int]]:
    """Train / test lists of three classes (including the last label) and solid-colour JPEGs under root."""
    train_file, test_file, classes = LAYOUTS[name]
    rng = np.random.default_rng(0)
    colours: dict[str, tuple[int, int, int]] = {}
    for split, file, per_class in (("train", train_file, TRAIN_PER_CLASS), ("test", test_file, [TEST_PER_CLASS] * 3)):
        lines = []
        for k, n in zip(classes, per_class, strict=True):
            for i in range(n):
                rel = _image_path(name, split, k, i)
                lines.append(f"{rel} {k}")
                colours[rel] = tuple(int(c) for c in rng.integers(30, 226, 3))
                if images:
                    _jpeg(root / rel, colours[rel])
        root.mkdir(parents=True, exist_ok=True)
        (root / file).write_text("\n".join(lines))  # no final newline, like the CMO copy of the test list
    return colours


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_fixture_build_and_load(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    root = tmp_path / "root"
    colours = make_fixture(root, name)
    classes = LAYOUTS[name][2]
    data = datasets.get(name).build(root=str(root), imbalance_ratio=100.0, split_seed=3)
    assert isinstance(data, sl.FileLTData)
    assert data.num_classes == {"imagenet_lt": 1000, "inat2018": 8142}[name]
    assert data.root == root and data.image_size == 224
    assert data.reweight_epoch == {"imagenet_lt": 80, "inat2018": 160}[name]
    counts = data.class_counts
    assert len(counts) == data.num_classes and sum(counts) == sum(TRAIN_PER_CLASS)
    assert [counts[k] for k in classes] == list(TRAIN_PER_CLASS)
    assert np.bincount(data.test_y, minlength=data.num_classes)[list(classes)].tolist() == [TEST_PER_CLASS] * 3
    assert counts == datasets.get(name).counts(imbalance_ratio=100.0, root=str(root))
    assert data.class_names[classes[0]] == ("n00000000" if name == "imagenet_lt" else "Aves/0")

    mean = torch.tensor(data.mean).view(3, 1, 1)
    std = torch.tensor(data.std).view(3, 1, 1)
    lo, hi = (0 - mean) / std, (1 - mean) / std
    train_tf, test_tf = data.transforms()
    train_ds, test_ds = data.datasets(train_tf, test_tf)
    assert len(train_ds) == sum(TRAIN_PER_CLASS) and len(test_ds) == 3 * TEST_PER_CLASS
    for ds, paths in ((train_ds, data.train_paths), (test_ds, data.test_paths)):
        for i in (0, len(ds) - 1):
            x, label = ds[i]
            assert isinstance(label, int) and label == int(ds.labels[i])
            assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and torch.isfinite(x).all()
            assert (x >= lo - 1e-4).all() and (x <= hi + 1e-4).all()
            expected = (torch.tensor(colours[paths[i]], dtype=torch.float32).view(3, 1, 1) / 255 - mean) / std
            if ds is test_ds or name == "inat2018":  # no colour jitter: the solid colour survives (JPEG error aside)
                assert torch.allclose(x.mean(dim=(1, 2), keepdim=True), expected, atol=0.05 / 0.19)
                assert x.std(dim=(1, 2)).max() < 0.1
    xb, yb = next(iter(torch.utils.data.DataLoader(test_ds, batch_size=4)))
    assert xb.shape == (4, 3, 224, 224) and yb.tolist() == data.test_y[:4].tolist()


def test_transforms_reference_pipelines() -> None:
    from torchvision import transforms as T

    def kinds(tf: object) -> list[str]:
        return [type(t).__name__ for t in tf.transforms]  # type: ignore[attr-defined]

    im = sl.train_transform("imagenet_lt")
    assert kinds(im) == ["RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter", "ToTensor", "Normalize"]
    rrc = im.transforms[0]
    assert rrc.size == (224, 224) and rrc.scale == (0.08, 1.0) and rrc.interpolation == T.InterpolationMode.BILINEAR
    assert rrc.ratio == pytest.approx((3 / 4, 4 / 3))
    assert im.transforms[2].hue is None and im.transforms[2].brightness == (0.6, 1.4)
    assert tuple(im.transforms[-1].mean) == sl.IMAGENET_MEAN
    inat = sl.train_transform("inat2018")
    assert kinds(inat) == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert tuple(inat.transforms[-1].mean) == (0.466, 0.471, 0.380)
    assert tuple(inat.transforms[-1].std) == (0.195, 0.194, 0.192)
    te = sl.test_transform("inat2018")
    assert kinds(te) == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert te.transforms[0].size == 256 and te.transforms[1].size == (224, 224)
    assert sl.test_transform("imagenet_lt", 112).transforms[0].size == 128
    with pytest.raises(ValueError, match="unknown"):
        sl.train_transform("cifar")


def test_small_image_size(tmp_path: Path) -> None:
    make_fixture(tmp_path, "imagenet_lt")
    data = datasets.get("imagenet_lt").build(root=str(tmp_path), image_size=64)
    train_ds, test_ds = data.datasets(*data.transforms())
    assert train_ds[0][0].shape == test_ds[0][0].shape == (3, 64, 64)


# (c) errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_missing_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    train_file, test_file, _ = LAYOUTS[name]
    monkeypatch.setenv("LTBENCH_DATA", str(tmp_path / "data"))
    folder = {"imagenet_lt": "ImageNet_LT", "inat2018": "iNat2018"}[name]
    source = {"imagenet_lt": "OLTR", "inat2018": "MiSLAS"}[name]
    for call in (datasets.get(name).build, lambda: datasets.get(name).counts(imbalance_ratio=100.0)):
        with pytest.raises(DataError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg
        assert str(tmp_path / "data" / folder / train_file) in msg
        assert "LTBENCH_DATA" in msg and "data.root" in msg and source in msg and "download" in msg
    # only the test list missing: named, and the train list is not
    (tmp_path / "data" / folder).mkdir(parents=True)
    (tmp_path / "data" / folder / train_file).write_text("a/b.jpg 0\n")
    with pytest.raises(DataError, match=test_file) as e:
        datasets.get(name).build()
    assert f"found: {tmp_path / 'data' / folder / test_file}." in str(e.value)


def test_read_split_format(tmp_path: Path) -> None:
    p = tmp_path / "list.txt"
    p.write_text("\n a/x.jpg   3\r\n\nb/y.jpg\t0\n\n   \nc/z.jpg 12")  # blanks, tabs, CRLF, no final newline
    paths, y = sl.read_split(p)
    assert paths == ["a/x.jpg", "b/y.jpg", "c/z.jpg"] and y.tolist() == [3, 0, 12] and y.dtype == np.int64
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert sl.read_split(empty)[0] == [] and sl.read_split(empty)[1].dtype == np.int64


@pytest.mark.parametrize("bad", ["c/z.jpg", "c/z.jpg x", "c/z.jpg 1 2", "c/z.jpg -1", "c/z.jpg 1.5"])
def test_read_split_malformed(tmp_path: Path, bad: str) -> None:
    p = tmp_path / "list.txt"
    p.write_text(f"a/x.jpg 0\n\n{bad}\nd/w.jpg 1\n")
    with pytest.raises(DataError, match=r"list\.txt:3: malformed") as e:
        sl.read_split(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="not found"):
        sl.read_split(tmp_path / "nope.txt")


def test_wrong_class_count_and_missing_image(tmp_path: Path) -> None:
    make_fixture(tmp_path, "imagenet_lt")
    with pytest.raises(DataError, match="expected 0..8141"):  # ImageNet-LT lists given to inat2018
        datasets.get("inat2018").build(root=str(tmp_path), train_list=str(tmp_path / "ImageNet_LT_train.txt"),
                                       test_list=str(tmp_path / "ImageNet_LT_test.txt"))
    (tmp_path / "short.txt").write_text("train/a/a.JPEG 0\ntrain/b/b.JPEG 998\n")
    with pytest.raises(DataError, match="expected 0..999"):
        datasets.get("imagenet_lt").build(root=str(tmp_path), train_list=str(tmp_path / "short.txt"))
    (tmp_path / "big.txt").write_text("val/a/a.JPEG 1000\n")
    with pytest.raises(DataError, match="big.txt"):
        datasets.get("imagenet_lt").build(root=str(tmp_path), test_list=str(tmp_path / "big.txt"))
    data = datasets.get("imagenet_lt").build(root=str(tmp_path))
    (tmp_path / data.train_paths[0]).unlink()
    train_ds, _ = data.datasets(None, None)
    with pytest.raises(DataError, match="image not found") as e:
        train_ds[0]
    assert str(tmp_path / data.train_paths[0]) in str(e.value)
    img, label = train_ds[1]
    assert img.mode == "RGB" and img.size == (40, 30) and label == 0


# (d) limit_test --------------------------------------------------------------------------------------------------


def test_limit_test(tmp_path: Path) -> None:
    make_fixture(tmp_path, "inat2018", images=False)
    data = datasets.get("inat2018").build(root=str(tmp_path))
    assert data.limit_test(None) is data
    small = data.limit_test(2)
    assert isinstance(small, sl.FileLTData)
    assert np.bincount(small.test_y, minlength=8142)[[0, 5, 8141]].tolist() == [2, 2, 2]
    keep = [i for i, k in enumerate(data.test_y.tolist()) if data.test_y[:i].tolist().count(k) < 2]
    assert small.test_paths == [data.test_paths[i] for i in keep]  # the first two of each class, in list order
    assert small.test_y.tolist() == data.test_y[keep].tolist()
    assert small.train_paths == data.train_paths and small.class_counts == data.class_counts
    assert len(data.test_paths) == 3 * TEST_PER_CLASS  # the original is untouched
    assert data.limit_test(100).test_paths == data.test_paths
