"""PackedResNetCifar equals K separate ResNet-32s; BatchAugment equals the torchvision transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms as T

from benchmark.backbones.resnet_cifar import ResNetCifar
from benchmark.data.base import CIFAR_MEAN, CIFAR_STD
from benchmark.data.pipeline import BatchAugment
from benchmark.packed import PackedResNetCifar, pack_state, unpack_state

K, B, HW, C = 3, 4, 16, 10
TOL = 1e-5


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Within TOL absolute, scaled up for values above 1 (fp32 rounding is relative)."""
    return max_diff(a, b) <= TOL * max(1.0, float(b.abs().max()))


def separate_models(cosine: bool, seed: int = 0) -> list[ResNetCifar]:
    """K ResNet-32s with random BN affine parameters and data-calibrated running statistics (eval not trivial)."""
    torch.manual_seed(seed)
    models = [ResNetCifar(32, C, cosine_head=cosine) for _ in range(K)]
    with torch.no_grad():
        for m in models:
            bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
            for bn in bns:
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)
                bn.momentum = None  # cumulative average over the calibration batches
            m.train()
            for _ in range(2):
                m(torch.randn(B, 3, HW, HW))
            for bn in bns:
                bn.momentum = 0.1
                bn.num_batches_tracked.zero_()
    return models


@pytest.mark.parametrize("cosine", [False, True])
def test_pack_unpack_round_trip_is_exact(cosine: bool) -> None:
    models = separate_models(cosine)
    packed = PackedResNetCifar(K, 32, C, cosine_head=cosine)
    packed.load_state_dict(pack_state(models))  # strict: names and shapes match
    for i, m in enumerate(models):
        back = unpack_state(packed, i)
        ref = m.state_dict()
        assert back.keys() == ref.keys()
        assert all(torch.equal(back[key], ref[key]) for key in ref)
    assert all(torch.equal(a, b) for a, b in zip(pack_state(packed.to_models()).values(),
                                                  packed.state_dict().values(), strict=True))


@pytest.mark.parametrize("cosine", [False, True])
def test_forward_and_bn_statistics_match_separate_models(cosine: bool) -> None:
    models = separate_models(cosine)
    packed = PackedResNetCifar.from_models(models)
    x = torch.randn(K, B, 3, HW, HW)
    for mode in ("train", "eval"):  # train: batch statistics per model (and running-stat updates); eval: running
        for m in [*models, packed]:
            m.train(mode == "train")
        with torch.no_grad():
            out = packed(x)
            ref = torch.stack([m(x[i]) for i, m in enumerate(models)])
        assert out.shape == (K, B, C)
        assert close(out, ref), (mode, max_diff(out, ref))
    for i, m in enumerate(models):  # the one train-mode forward updated the same running statistics
        back = unpack_state(packed, i)
        for key, t in m.state_dict().items():
            assert close(back[key], t), key


@pytest.mark.parametrize("cosine", [False, True])
def test_gradients_match_separate_models(cosine: bool) -> None:
    models = separate_models(cosine, seed=1)
    packed = PackedResNetCifar.from_models(models)
    x = torch.randn(K, B, 3, HW, HW)
    ya, yb = torch.randint(0, C, (K, B)), torch.randint(0, C, (K, B))
    lam = torch.rand(K)
    out = packed(x)
    # Sum over models of each model's CMO loss: each model's gradient is its stand-alone gradient.
    sum(lam[i] * F.cross_entropy(out[i], ya[i]) + (1 - lam[i]) * F.cross_entropy(out[i], yb[i])
        for i in range(K)).backward()
    grads = {name: p.grad for name, p in packed.named_parameters()}
    for i, m in enumerate(models):
        o = m(x[i])
        (lam[i] * F.cross_entropy(o, ya[i]) + (1 - lam[i]) * F.cross_entropy(o, yb[i])).backward()
        g = unpack_state(grads, i)
        named = dict(m.named_parameters())
        assert g.keys() == named.keys()
        for name, p in named.items():
            assert close(g[name], p.grad), (name, max_diff(g[name], p.grad))


def test_channels_last_and_autocast_run() -> None:
    models = separate_models(False)
    packed = PackedResNetCifar.from_models(models).to(memory_format=torch.channels_last)
    x = torch.randn(K, B, 3, HW, HW)
    with torch.no_grad():
        ref = torch.stack([m(x[i]) for i, m in enumerate(models)])
        out = packed(x)
        assert close(out, ref)
        flat = packed.pack_input(x)
        assert flat.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(packed.forward_flat(flat), out)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = packed(x)
    assert low.shape == (K, B, C) and torch.isfinite(low).all()
    assert max_diff(low, ref) < 0.1 * float(ref.abs().max())


def test_packed_model_rejects_wrong_pack_size() -> None:
    with pytest.raises(ValueError):
        PackedResNetCifar(2, 32, C)(torch.randn(3, 1, 3, 8, 8))


def test_batch_augment_matches_torchvision() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    aug = BatchAugment(torch.from_numpy(images), CIFAR_MEAN, CIFAR_STD, pad=4)
    idx = torch.tensor([0, 1, 2, 3, 4, 5])
    top = torch.tensor([0, 8, 3, 4, 8, 1])
    left = torch.tensor([0, 8, 5, 0, 2, 7])
    flip = torch.tensor([False, True, True, False, True, False])
    got = aug.apply(idx, top, left, flip)
    to_tensor_norm = T.Compose([T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])
    for i in range(len(idx)):
        img = torch.from_numpy(images[i]).permute(2, 0, 1)  # uint8 CHW
        crop = TF.crop(TF.pad(img, 4), int(top[i]), int(left[i]), 32, 32)
        if flip[i]:
            crop = TF.hflip(crop)
        assert torch.equal(aug.normalize(crop.permute(1, 2, 0)[None])[0], got[i])  # pixels exact
        # the reference's PIL path: pad / crop / flip the image, then ToTensor + Normalize
        pil = TF.crop(TF.pad(Image.fromarray(images[i]), 4), int(top[i]), int(left[i]), 32, 32)
        if flip[i]:
            pil = TF.hflip(pil)
        assert torch.equal(TF.pil_to_tensor(pil), crop)
        assert max_diff(got[i], to_tensor_norm(pil)) < 1e-5  # x/255 then normalise vs (x - 255m) / 255s: rounding


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_packed_matches_separate_models_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    models = [m.cuda() for m in separate_models(False)]
    packed = PackedResNetCifar.from_models(models).to(memory_format=torch.channels_last)
    x = torch.randn(K, B, 3, HW, HW, device="cuda")
    out = packed(x)
    ref = torch.stack([m(x[i]) for i, m in enumerate(models)])
    assert close(out, ref), max_diff(out, ref)
