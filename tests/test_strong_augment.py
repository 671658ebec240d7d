"""Strong 400-epoch augmentations: batched device ops against torchvision / timm / PIL references, and the PIL ones."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from timm.data import auto_augment as timm_aa
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision import transforms as T
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from benchmark.config.catalog import load_dataset
from benchmark.data import device_augment as D
from benchmark.data import device_ops as O
from benchmark.data.augment import augmentations
from benchmark.data.strong_augment import RANDAUG_FILL, cifar_strong, cifar_strong_pil, imagenet_strong_pil
from benchmark.engine.loop import fit
from benchmark.schema.settings import RunSettings

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CPU = torch.device("cpu")
BATCHED, PIL_NAMES = ("cifar_strong", "imagenet_strong"), ("cifar_strong_pil", "imagenet_strong_pil")


def _images(n: int = 16, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


def _smooth(n: int, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 NCHW images with structure (upsampled noise), so histograms and resampling are not degenerate."""
    z = torch.rand((n, 3, h // 4, w // 4), generator=torch.Generator().manual_seed(seed)) * 255
    return torch.nn.functional.interpolate(z, size=(h, w), mode="bilinear").round().to(torch.uint8)


def _const(n: int, value: int, size: int = 32) -> torch.Tensor:
    return torch.full((n, size, size, 3), value, dtype=torch.uint8)


def _formula(value: int) -> torch.Tensor:
    return (value / 255 - torch.tensor(MEAN)) / torch.tensor(STD)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _binomial_ok(hits: float, n: int, p: float, z: float = 5.0) -> bool:
    return abs(hits / n - p) <= z * math.sqrt(p * (1 - p) / n) + 1e-9


# ---------------------------------------------------------------------------------------------------------------
# Registry, interface, capability flags


@pytest.mark.parametrize("name", BATCHED + PIL_NAMES)
@pytest.mark.parametrize(("h", "w"), [(32, 32), (40, 48)])
def test_output_shape_dtype_device(name: str, h: int, w: int) -> None:
    images = _images(12, h, w)
    aug = augmentations.get(name)(images, MEAN, STD, 4)
    x = aug(torch.arange(12), _gen())
    assert x.shape == (12, 3, h, w) and x.dtype == torch.float32 and x.device == images.device
    assert torch.isfinite(x).all()
    assert aug.normalize(images[:3]).shape == (3, 3, h, w)


def test_capability_flags_are_declared_at_registration() -> None:
    expect = {"standard": (True, True), "cifar_strong": (True, True), "imagenet_strong": (True, True),
              "cifar_strong_pil": (True, False), "imagenet_strong_pil": (True, False)}
    for name, (packable, graph_safe) in expect.items():
        entry = augmentations.entry(name)
        assert (entry.packable, entry.graph_safe) == (packable, graph_safe), name


@pytest.mark.parametrize("factory", [cifar_strong, cifar_strong_pil])
def test_normalisation_of_a_constant_image(factory: object) -> None:
    images = _const(4, 200)
    expected = _formula(200)
    aug = factory(images, MEAN, STD, 0, p_regular=1.0, autoaugment=False, flip=False, cutout=0)
    for x in (aug.normalize(images), aug(torch.arange(4), _gen())):
        assert torch.allclose(x.mean(dim=(0, 2, 3)), expected, atol=1e-5)
        assert x.std(dim=(0, 2, 3)).max() < 1e-5


class _SyncScan(TorchDispatchMode):
    """Records dispatched ops that make the host wait for the device, index with data-dependent shapes, or make a
    tensor from Python data (on CUDA a host-to-device copy in every call, which a CUDA graph cannot replay)."""

    SYNC = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "masked_scatter", "repeat_interleave",
            "lift_fresh")

    def __init__(self) -> None:
        super().__init__()
        self.bad: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if any(s in str(func) for s in self.SYNC):
            self.bad.add(str(func))
        if "index" in str(func):
            for a in args:
                if isinstance(a, (list, tuple)) and any(
                        isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in a):
                    self.bad.add(f"{func} with a boolean index")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", BATCHED)
def test_batched_call_has_no_host_sync_op(name: str) -> None:
    aug = augmentations.get(name)(_images(16, 24, 24), MEAN, STD, 4)
    with _SyncScan() as scan:
        aug(torch.arange(16), _gen())
    assert not scan.bad


# ---------------------------------------------------------------------------------------------------------------
# Branches, Cutout, determinism


@pytest.mark.parametrize("name", PIL_NAMES)
def test_pil_both_branches_about_half(name: str) -> None:
    images = _images(8)
    aug = augmentations.get(name)(images, MEAN, STD, 4)
    g = _gen(1)
    took = []
    for _ in range(40):
        aug(torch.arange(8), g)
        assert aug.last_first is not None
        took.append(aug.last_first)
    frac = torch.cat(took).float().mean().item()
    assert 0.4 < frac < 0.6, frac


def test_batched_branch_split_is_half_and_selects_the_branch() -> None:
    """With crop/flip/AutoAugment/Cutout off the regular branch returns the image itself; the SimCLR one never."""
    n = 3000
    images = _images(n, 12, 12)
    aug = cifar_strong(images, MEAN, STD, 0, autoaugment=False, flip=False, cutout=0)
    x = aug(torch.arange(n), _gen(1))
    first = aug.last_first
    assert first is not None and _binomial_ok(first.sum().item(), n, 0.5)
    same = (x - aug.normalize(images)).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert torch.equal(same, first)


def test_batched_imagenet_branch_split_is_half() -> None:
    n = 600
    aug = augmentations.get("imagenet_strong")(_images(n, 12, 12), MEAN, STD, 0)
    aug(torch.arange(n), _gen(2))
    assert aug.last_first is not None and _binomial_ok(aug.last_first.sum().item(), n, 0.5)
    assert (aug.last["ra_op"][aug.last_first] >= 0).any()


@pytest.mark.parametrize("factory", [cifar_strong, cifar_strong_pil])
def test_cutout_zeroes_one_clipped_16px_square(factory: object) -> None:
    images = _const(8, 200)
    aug = factory(images, MEAN, STD, 0, p_regular=1.0, autoaugment=False, flip=False, cutout=16)
    g = _gen()
    zero, fill = _formula(0).view(3, 1, 1), _formula(200).view(3, 1, 1)
    sides = set()
    for _ in range(25):
        for x in aug(torch.arange(8), g):
            hole = torch.isclose(x, zero.expand_as(x), atol=1e-4)
            assert torch.equal(hole[0], hole[1]) and torch.equal(hole[0], hole[2])  # same box in every channel
            assert torch.allclose(x[~hole].view(-1), fill.expand_as(x)[~hole].view(-1), atol=1e-4)
            rows = hole[0].any(1).nonzero().flatten()
            cols = hole[0].any(0).nonzero().flatten()
            nr, nc = len(rows), len(cols)
            assert rows[-1] - rows[0] + 1 == nr and cols[-1] - cols[0] + 1 == nc  # one rectangle
            assert int(hole[0].sum()) == nr * nc
            assert 8 <= nr <= 16 and 8 <= nc <= 16  # centre in the image: at least half a side survives
            sides.add((nr, nc))
    assert (16, 16) in sides and any(s != (16, 16) for s in sides)  # full boxes and clipped boxes both occur


@pytest.mark.parametrize("name", BATCHED + PIL_NAMES)
def test_reproducible_from_the_generator_and_global_rngs_untouched(name: str) -> None:
    images = _images(16)
    aug = augmentations.get(name)(images, MEAN, STD, 4)
    py, tc = random.getstate(), torch.get_rng_state()
    a = aug(torch.arange(16), _gen(3))
    b = aug(torch.arange(16), _gen(3))
    c = aug(torch.arange(16), _gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert random.getstate() == py and torch.equal(torch.get_rng_state(), tc)


@pytest.mark.parametrize("name", BATCHED)
def test_batched_draws_a_fixed_amount_whatever_the_images(name: str) -> None:
    """Packing relies on it: a call advances the generator by an amount that depends only on the batch size."""
    aug = augmentations.get(name)(_images(32), MEAN, STD, 4)
    g1, g2 = _gen(5), _gen(5)
    aug(torch.arange(8), g1)
    aug(torch.arange(24, 32), g2)
    assert torch.equal(g1.get_state(), g2.get_state())


# ---------------------------------------------------------------------------------------------------------------
# AutoAugment (CIFAR10 policy)

EXACT_AA = {"AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "Rotate", "ShearY", "TranslateX",
            "TranslateY", "Brightness", "Contrast"}


def _tv_reference() -> v2.AutoAugment:
    return v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10, fill=128)


def _tv_apply(ref: v2.AutoAugment, img: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    # torchvision's own per-op step of AutoAugment.forward (the op the PIL reference applies, on a tensor)
    return ref._apply_image_or_video_transform(img, name, magnitude, interpolation=ref.interpolation, fill=ref._fill)


def test_autoaugment_policy_is_torchvision_cifar10() -> None:
    aa = D.AutoAugment(32, 32, CPU)
    assert len(aa.policies) == 25 and aa.policies == _tv_reference()._policies
    assert set(aa.table.names) == {"AutoContrast", "Brightness", "Color", "Contrast", "Equalize", "Invert",
                                   "Posterize", "Rotate", "Sharpness", "ShearY", "Solarize", "TranslateX",
                                   "TranslateY"}
    assert aa.mag[1, 1].item() == pytest.approx(9 / 9 * 150 / 331 * 32, rel=1e-6)  # TranslateX bin 9 of 10


def test_each_autoaugment_op_matches_torchvision() -> None:
    """Every (op, magnitude bin) of the policy, both signs, per-sample magnitudes: exact or within one level."""
    aa, ref, x = D.AutoAugment(32, 32, CPU), _tv_reference(), _smooth(6)
    space = ref._AUGMENTATION_SPACE
    for name, _, bin_ in sorted({op for sub in aa.policies for op in sub}, key=str):
        values, signed = space[name][0](10, 32, 32), space[name][1]
        m = float(values[bin_]) if values is not None else 0.0
        mags = torch.tensor([m, -m, m, -m, m, -m] if signed and values is not None else [m] * 6, dtype=torch.float64)
        out = aa.apply_op(x, name, mags)
        exp = torch.stack([_tv_apply(ref, x[i], name, float(mags[i])) for i in range(6)])
        diff = (out.int() - exp.int()).abs().max().item()
        assert diff <= (0 if name in EXACT_AA else 1), (name, bin_, diff)


def test_autoaugment_batch_equals_torchvision_on_the_recorded_draws() -> None:
    aa, ref, x = D.AutoAugment(32, 32, CPU), _tv_reference(), _smooth(48, seed=1)
    out = aa(x, _gen(7))
    op, mag = aa.last["op"], aa.last["magnitude"]
    assert ((op >= 0).sum(1) == 2).any() and ((op >= 0).sum(1) == 0).any()
    for i in range(len(x)):
        y = x[i]
        for s in range(2):
            if op[i, s] >= 0:
                y = _tv_apply(ref, y, aa.table.names[op[i, s]], float(mag[i, s]))
        assert (out[i].int() - y.int()).abs().max() <= 2, i  # at most two blends, each within one level


def test_autoaugment_op_frequencies_match_the_policy() -> None:
    aa, n = D.AutoAugment(32, 32, CPU), 100_000
    op, mag, _ = aa.draw(n, _gen(11))
    for s in range(2):
        for k, name in enumerate(aa.table.names):
            p = sum(prob for sub in aa.policies for j, (nm, prob, _) in enumerate(sub) if j == s and nm == name) / 25
            assert _binomial_ok((op[:, s] == k).sum().item(), n, p), (s, name)
    rot = op[:, 0] == aa.table.names.index("Rotate")  # signed op: both signs, half each
    assert _binomial_ok((mag[rot, 0] < 0).sum().item(), int(rot.sum()), 0.5)
    assert mag[rot, 0].abs().unique().tolist() == [pytest.approx(30 * 2 / 9, rel=1e-6)]


# ---------------------------------------------------------------------------------------------------------------
# SimCLR branch ops


def test_simclr_branch_gray_blur_and_jitter_frequencies() -> None:
    n = 3000
    aug = cifar_strong(_images(n, 16, 16), MEAN, STD, 4, p_regular=0.0)
    x = aug(torch.arange(n), _gen(13))
    gray_out = (x[:, 0] * STD[0] + MEAN[0] - x[:, 1] * STD[1] - MEAN[1]).abs().amax(dim=(1, 2)) < 1e-5
    assert _binomial_ok(gray_out.sum().item(), n, 0.2) and torch.equal(gray_out, aug.last["gray"])
    blur, sigma = aug.last["blur"], aug.last["sigma"]
    assert _binomial_ok(blur.sum().item(), n, 0.5) and _binomial_ok(aug.last["jitter"].sum().item(), n, 0.8)
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0
    tv = (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))  # strongly blurred images are smoother
    assert tv[blur & (sigma > 1.2)].mean() < 0.6 * tv[~blur].mean()


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_gaussian_blur_is_close_to_pil_radius_blur(sigma: float) -> None:
    g = _gen(3)
    x = (_smooth(4).int() + torch.randint(-40, 40, (4, 3, 32, 32), generator=g)).clamp(0, 255).to(torch.uint8)
    out = O.gaussian_blur(x, torch.full((4,), sigma, dtype=torch.float64), 6)
    exp = torch.stack([torch.from_numpy(np.array(Image.fromarray(xi.permute(1, 2, 0).numpy()).filter(
        ImageFilter.GaussianBlur(radius=sigma)))).permute(2, 0, 1) for xi in x])
    diff = (out.int() - exp.int()).abs().float()
    assert diff.mean() < 1.0 and diff.max() <= 16  # PIL approximates the Gaussian with three box blurs


def test_color_jitter_matches_torchvision_in_the_drawn_order() -> None:
    x, cj = _smooth(8), O.ColorJitter(0.4, 0.4, 0.4, 0.1, CPU)
    order, f = cj.draw(8, _gen(2))
    out = cj.apply(x, order, f)
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(8):
        y = x[i]
        for k in order[i].tolist():
            y = fns[k](y, float(f[i, k]))
        assert (out[i].int() - y.int()).abs().max() <= 2
    assert sorted(order[0].tolist()) == [0, 1, 2, 3] and f[:, :3].min() >= 0.6 and f[:, :3].max() <= 1.4
    assert f[:, 3].abs().max() <= 0.1


def test_random_resized_crop_params_and_resampling() -> None:
    h, w, n = 40, 48, 4000
    top, left, ch, cw = O.rrc_params(n, h, w, (0.2, 1.0), (3 / 4, 4 / 3), _gen(4))
    assert (top >= 0).all() and (left >= 0).all() and (top + ch <= h).all() and (left + cw <= w).all()
    with torch.random.fork_rng(devices=[]):  # torchvision's own sampler (global torch RNG) for the distribution
        torch.manual_seed(0)
        ref = torch.tensor([T.RandomResizedCrop.get_params(torch.empty(3, h, w), [0.2, 1.0], [3 / 4, 4 / 3])
                            for _ in range(n)], dtype=torch.float64)
    area, ref_area = (ch * cw).double() / (h * w), ref[:, 2] * ref[:, 3] / (h * w)
    aspect, ref_aspect = cw.double() / ch, ref[:, 3] / ref[:, 2]
    assert area.min() > 0.17 and area.max() <= 1.0 and aspect.min() > 0.7 and aspect.max() < 1.43
    assert area.mean().item() == pytest.approx(ref_area.mean().item(), abs=0.02)
    assert aspect.mean().item() == pytest.approx(ref_aspect.mean().item(), abs=0.02)
    rel_top = (top.double() + 0.5) / (h - ch + 1)  # offsets uniform over the free range
    assert rel_top.mean().item() == pytest.approx(0.5, abs=0.03)
    images = _smooth(6, h, w).permute(0, 2, 3, 1).contiguous()
    out = O.resized_crop(images, torch.arange(6), top[:6], left[:6], ch[:6], cw[:6], h, w)
    for i in range(6):  # torchvision's tensor resized_crop (bilinear, no antialias) in float, rounded
        exp = TF.resized_crop(images[i].permute(2, 0, 1).float(), int(top[i]), int(left[i]), int(ch[i]),
                              int(cw[i]), [h, w], antialias=False).round()
        assert (out[i].float() - exp).abs().max() <= 1


# ---------------------------------------------------------------------------------------------------------------
# RandAugment (timm rand-n2-m10-mstd0.5)

TIMM_NAME = {"TranslateX": "TranslateXRel", "TranslateY": "TranslateYRel"}


def test_randaugment_ops_and_levels_are_timms() -> None:
    ops = timm_aa.rand_augment_transform("rand-n2-m10-mstd0.5", {"img_mean": RANDAUG_FILL}).ops
    assert tuple(TIMM_NAME.get(n, n) for n in D.RAND_OPS) == tuple(op.name for op in ops)
    ra = D.RandAugment(32, 40, CPU, RANDAUG_FILL)
    for name in D.RAND_OPS:
        level_fn = timm_aa.LEVEL_TO_ARG[TIMM_NAME.get(name, name)]
        for m in (0.0, 3.3, 7.5, 9.2, 10.0):
            mine = ra.level_arg(name, torch.tensor([m], dtype=torch.float64), torch.tensor([False])).item()
            if level_fn is None:
                continue
            (theirs,) = level_fn(m, {})
            if name in O.GEOMETRIC:  # timm negates at random; our sign coin is separate
                theirs = abs(theirs) * ((-40 if name == "TranslateX" else -32) if name in TIMM_NAME else 1)
            assert mine == pytest.approx(theirs, abs=1e-9), (name, m)


@pytest.mark.parametrize("name", D.RAND_OPS)
def test_each_randaugment_op_is_close_to_timms_pil_op(name: str) -> None:
    """Same geometry conventions (signs, centres, fill) as timm's PIL ops; colour / LUT ops within one level."""
    ra, x, m = D.RandAugment(32, 32, CPU, RANDAUG_FILL), _smooth(4, seed=2), 9.0
    level_fn = timm_aa.LEVEL_TO_ARG[TIMM_NAME.get(name, name)]
    for negate in (False, True) if name in O.GEOMETRIC else (False,):
        for bicubic in (False, True) if name in O.GEOMETRIC else (False,):
            arg = ra.level_arg(name, torch.full((4,), m, dtype=torch.float64), torch.full((4,), negate))
            out = ra.apply_op(x, name, arg, torch.full((4,), bicubic))
            targs = level_fn(m, {}) if level_fn else ()
            if name in O.GEOMETRIC:
                targs = tuple(-abs(a) if negate else abs(a) for a in targs)
            resample = Image.BICUBIC if bicubic else Image.BILINEAR
            exp = torch.stack([torch.from_numpy(np.array(timm_aa.NAME_TO_OP[TIMM_NAME.get(name, name)](
                Image.fromarray(xi.permute(1, 2, 0).numpy()), *targs, fillcolor=RANDAUG_FILL, resample=resample)))
                .permute(2, 0, 1) for xi in x])
            diff = (out.int() - exp.int()).abs().float()
            if name in O.GEOMETRIC:  # interpolation kernels and border fill differ; a wrong convention gives ~45
                assert diff.mean() < 3.0, (negate, bicubic, diff.mean())
            else:
                assert diff.max() <= 1


def test_randaugment_draws_two_ops_per_image() -> None:
    ra, n = D.RandAugment(16, 16, CPU, RANDAUG_FILL), 20_000
    d = ra.draw(n, _gen(9))
    assert d["op"].shape == (n, 2)
    applied = (d["op"] >= 0).sum(1)
    for k, p in enumerate((0.25, 0.5, 0.25)):  # each of the two ops applied with p 0.5
        assert _binomial_ok((applied == k).sum().item(), n, p)
    chosen = d["op"][d["op"] >= 0]
    for k in range(len(D.RAND_OPS)):  # uniform over the 15 ops
        assert _binomial_ok((chosen == k).sum().item(), len(chosen), 1 / 15)
    m = d["magnitude"]
    assert m.max() <= 10 and m.min() >= 0 and m.mean().item() == pytest.approx(10 - 0.5 / math.sqrt(2 * math.pi),
                                                                                 abs=0.01)
    assert _binomial_ok(d["negate"].sum().item(), 2 * n, 0.5) and _binomial_ok(d["bicubic"].sum().item(), 2 * n, 0.5)


def test_randaugment_batch_equals_per_image_application_of_its_draws() -> None:
    ra, x = D.RandAugment(24, 24, CPU, RANDAUG_FILL), _smooth(40, 24, 24, seed=3)
    out = ra(x, _gen(10))
    d = ra.last
    for i in range(len(x)):
        y = x[i:i + 1]
        for s in range(2):
            k = int(d["op"][i, s])
            if k >= 0:
                name = D.RAND_OPS[k]
                arg = ra.level_arg(name, d["magnitude"][i:i + 1, s], d["negate"][i:i + 1, s])
                y = ra.apply_op(y, name, arg, d["bicubic"][i:i + 1, s])
        assert torch.equal(out[i], y[0]), i


def test_imagenet_pil_randaugment_is_timm_rand_n2_m10_mstd05() -> None:
    aug = imagenet_strong_pil(_images(2, 64, 64), MEAN, STD)
    ra = aug.first.transforms[3]
    assert ra.num_layers == 2 and len(ra.ops) == 15
    assert {op.prob for op in ra.ops} == {0.5} and {op.magnitude for op in ra.ops} == {10}
    assert {op.magnitude_std for op in ra.ops} == {0.5}
    assert {op.kwargs["fillcolor"] for op in ra.ops} == {(124, 116, 104)}


# ---------------------------------------------------------------------------------------------------------------


def test_fit_smoke_cifar_strong() -> None:
    s = RunSettings.model_validate({
        "data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 24,
                 "test_per_class": 4, "image_size": 32},
        "train": {"epochs": 1, "batch_size": 16, "warmup_epochs": 1, "device": "cpu", "augment": "cifar_strong",
                  "steps_per_epoch": 2}})
    res = fit(s, load_dataset(s.data))
    assert len(res.curve) == 1 and res.curve[0]["train/loss"] > 0
