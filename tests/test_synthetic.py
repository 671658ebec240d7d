"""Tests of the embedded synthetic_lt generator: counts, shapes, determinism, and where the label lives."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data import synthetic
from benchmark.data.profile import exp_profile
from benchmark.data.synthetic import class_layout, context_layout, draw_contexts, render_synthetic


@pytest.fixture(scope="module")
def default_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    return render_synthetic()


@pytest.fixture(scope="module")
def balanced_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """10 classes x 300 train and 100 test images each, for the per-class statistics."""
    return render_synthetic(num_classes=10, imbalance_ratio=1.0, max_per_class=300, test_per_class=100, seed=3)


def _nearest_class_mean_acc(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray,
                            test_y: np.ndarray, num_classes: int) -> float:
    means = np.stack([train_f[train_y == k].mean(0) for k in range(num_classes)])
    dist = ((test_f[:, None, :] - means[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == test_y).mean())


def _halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Even and odd indices: two disjoint halves of a split with the same class balance."""
    return np.arange(0, n, 2), np.arange(1, n, 2)


def _border_colour(x: np.ndarray) -> np.ndarray:
    """Mean colour of the outermost one-pixel frame of each image, float [N, 3]."""
    x = x.astype(np.float32)
    frame = np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)
    return frame.mean(1)


def _palette(x: np.ndarray) -> np.ndarray:
    """Per-image (light, dark) colours of the outermost frame: the mean of its brighter and of its darker half,
    float [N, 6], a fingerprint of the background's palette whatever the texture's phase."""
    x = x.astype(np.float32)
    frame = np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)  # [N, P, 3]
    lum = frame.mean(2)
    hi = lum >= np.median(lum, 1, keepdims=True)
    light = (frame * hi[..., None]).sum(1) / hi.sum(1, keepdims=True)
    dark = (frame * ~hi[..., None]).sum(1) / (~hi).sum(1, keepdims=True)
    return np.concatenate([light, dark], 1)


def _knn_acc(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
             num_classes: int, k: int = 15) -> float:
    dist = ((test_f[:, None, :] - train_f[None]) ** 2).sum(-1)
    nearest = train_y[np.argsort(dist, 1)[:, :k]]
    votes = np.stack([(nearest == c).sum(1) for c in range(num_classes)], 1)
    return float((votes.argmax(1) == test_y).mean())


def test_default_counts_dtypes_and_shapes(default_data) -> None:
    train_x, train_y, test_x, test_y, names = default_data
    assert np.bincount(train_y, minlength=10).tolist() == exp_profile(300, 10, 10.0)
    assert np.bincount(test_y, minlength=10).tolist() == [50] * 10
    assert train_x.dtype == np.uint8 and test_x.dtype == np.uint8
    assert train_y.dtype == np.int64 and test_y.dtype == np.int64
    assert train_x.shape == (len(train_y), 32, 32, 3) and test_x.shape == (500, 32, 32, 3)
    assert np.all(np.diff(train_y) >= 0) and train_y[0] == 0  # sorted, head class first
    assert len(names) == 10 and len(set(names)) == 10
    assert train_x.std() > 20  # not blank


def test_cifar100_like_counts() -> None:
    train_x, train_y, test_x, test_y, names = render_synthetic(
        num_classes=100, imbalance_ratio=100.0, max_per_class=500, test_per_class=2, image_size=8)
    counts = np.bincount(train_y, minlength=100).tolist()
    assert counts == exp_profile(500, 100, 100.0)
    assert sum(counts) == 10_847 and counts[0] == 500 and counts[-1] == 5
    assert np.bincount(test_y, minlength=100).tolist() == [2] * 100
    assert train_x.shape == (10_847, 8, 8, 3)
    assert len(set(names)) == 100


@pytest.mark.parametrize("num_classes", [2, 3, 7, 10, 12, 13, 37, 100, 150])
def test_class_layout_pairs_are_distinct(num_classes: int) -> None:
    shape, hue, names = class_layout(num_classes)
    pairs = set(zip(shape.tolist(), np.round(hue, 6).tolist(), strict=True))
    assert len(pairs) == num_classes and len(set(names)) == num_classes
    if num_classes > len(synthetic._SHAPES):  # colours and shapes are both shared: only the pair identifies the class
        assert len(set(shape.tolist())) < num_classes and len(set(hue.tolist())) < num_classes
    else:  # one shape and one hue per class, hues evenly spread: no colour channel alone separates the classes
        assert len(set(shape.tolist())) == num_classes
        np.testing.assert_allclose(np.sort(hue), np.arange(num_classes) / num_classes)


def test_image_size_option() -> None:
    train_x, _, test_x, _, _ = render_synthetic(image_size=16, max_per_class=20, test_per_class=3)
    assert train_x.shape[1:] == (16, 16, 3) and test_x.shape[1:] == (16, 16, 3)


def test_deterministic_given_seed() -> None:
    a = render_synthetic(max_per_class=40, test_per_class=5, seed=7)
    b = render_synthetic(max_per_class=40, test_per_class=5, seed=7)
    c = render_synthetic(max_per_class=40, test_per_class=5, seed=8)
    for u, v in zip(a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(u, v)
    assert a[4] == b[4] == c[4]
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[2], c[2])


def test_test_size_never_changes_train_images() -> None:
    small = render_synthetic(max_per_class=40, test_per_class=5, seed=1)
    large = render_synthetic(max_per_class=40, test_per_class=60, seed=1)
    np.testing.assert_array_equal(small[0], large[0])
    np.testing.assert_array_equal(small[1], large[1])
    assert not np.array_equal(small[0][:5], small[2][:5])  # train and test streams differ


def test_context_draws() -> None:
    table, homes = context_layout(10)
    n_ctx = len(table["texture"])
    assert homes.shape == (10, synthetic._HOMES) and n_ctx == 10
    assert len({tuple(h) for h in homes.tolist()}) == 10  # every class has its own set of homes
    assert np.bincount(homes.ravel(), minlength=n_ctx).tolist() == [synthetic._HOMES] * n_ctx  # all contexts used
    labels = np.repeat(np.arange(10), 2000)
    rng = np.random.default_rng(0)
    at_home = (draw_contexts(rng, labels, homes, n_ctx, 1.0)[:, None] == homes[labels]).any(1)
    assert at_home.all()
    # p_home = 0 (the test split): the context is uniform over all contexts whatever the class
    ctx = draw_contexts(rng, labels, homes, n_ctx, 0.0)
    joint = np.zeros((10, n_ctx))
    np.add.at(joint, (labels, ctx), 1)
    np.testing.assert_allclose(joint / 2000, 1 / n_ctx, atol=0.03)
    ctx = draw_contexts(rng, labels, homes, n_ctx, synthetic._P_HOME)
    at_home = (ctx[:, None] == homes[labels]).any(1).mean()
    expected = synthetic._P_HOME + (1 - synthetic._P_HOME) * synthetic._HOMES / n_ctx
    assert abs(at_home - expected) < 0.01


def test_test_backgrounds_carry_no_label_information(balanced_data) -> None:
    _, _, test_x, test_y, _ = balanced_data
    border = _border_colour(test_x)
    class_means = np.stack([border[test_y == k].mean(0) for k in range(10)])
    # a test background that depended on the class (e.g. a home context) would move these means by far more
    assert np.abs(class_means - border.mean(0)).max() < 15.0
    a, b = _halves(len(test_y))
    assert _nearest_class_mean_acc(border[a], test_y[a], border[b], test_y[b], 10) < 0.2  # chance is 0.1


def test_test_backgrounds_carry_no_palette_information(balanced_data) -> None:
    _, _, test_x, test_y, _ = balanced_data
    palette = _palette(test_x)
    a, b = _halves(len(test_y))
    assert _knn_acc(palette[a], test_y[a], palette[b], test_y[b], 10) < 0.2  # chance is 0.1


def test_train_backgrounds_follow_the_class(balanced_data) -> None:
    """The context bias the quickstart demo relies on: in TRAIN the background's palette predicts the class
    (each context is home to two classes, so about half the time), in TEST it does not."""
    train_x, train_y, test_x, test_y, _ = balanced_data
    palette, test_palette = _palette(train_x), _palette(test_x)
    a, b = _halves(len(train_y))
    assert _knn_acc(palette[a], train_y[a], palette[b], train_y[b], 10) > 0.3  # chance is 0.1
    # ... and what the train backgrounds teach does not carry over to the test split
    assert _knn_acc(palette, train_y, test_palette, test_y, 10) < 0.2


def test_tail_classes_see_few_contexts() -> None:
    """The head classes are drawn in (nearly) every context; a tail class only in a few (mostly its homes)."""
    table, homes = context_layout(10)
    n_ctx = len(table["texture"])
    counts = exp_profile(300, 10, 50.0)
    labels = np.repeat(np.arange(10), counts)
    ctx = draw_contexts(np.random.default_rng(0), labels, homes, n_ctx, synthetic._P_HOME)
    seen = [len(np.unique(ctx[labels == k])) for k in range(10)]
    assert seen[0] >= n_ctx - 2 and len(np.unique(ctx[labels < 3])) == n_ctx
    assert max(seen[-3:]) <= 4


def test_foreground_identifies_the_class(balanced_data) -> None:
    _, _, test_x, test_y, _ = balanced_data
    flat = test_x.reshape(len(test_x), -1).astype(np.float32)
    a, b = _halves(len(test_y))
    # backgrounds are class-independent in the test split, so this is the object's doing
    assert _nearest_class_mean_acc(flat[a], test_y[a], flat[b], test_y[b], 10) > 0.3  # chance is 0.1
    # the per-class mean images differ in the centre, where the object is
    centre = np.stack([test_x[test_y == k, 12:20, 12:20].mean((0, 1, 2)) for k in range(10)])
    dists = np.sqrt(((centre[:, None] - centre[None]) ** 2).sum(-1))[~np.eye(10, dtype=bool)]
    assert dists.min() > 10.0 and dists.max() > 60.0


def test_rejects_a_single_class() -> None:
    with pytest.raises(ValueError):
        render_synthetic(num_classes=1)
