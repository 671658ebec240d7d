"""PackNet: fused ResNet-32s (any heads) and side-by-side members equal separate models; BatchAugment = torchvision."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms as T

from benchmark.backbones import build_backbone
from benchmark.backbones.resnet_cifar import ResNetCifar
from benchmark.data.base import CIFAR_MEAN, CIFAR_STD
from benchmark.data.pipeline import BatchAugment
from benchmark.engine.fused import FusedResNetCifar, PackNet

K, B, HW, C = 3, 4, 16, 10
TOL = 1e-5


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Within TOL absolute, scaled up for values above 1 (fp32 rounding is relative)."""
    return max_diff(a, b) <= TOL * max(1.0, float(b.abs().max()))


HEADS = (False, True, False)  # linear, cosine (LDAM), linear: one fused trunk, each member its own head


def separate_models(seed: int = 0) -> list[ResNetCifar]:
    """K ResNet-32s with random BN affine parameters and data-calibrated running statistics (eval not trivial)."""
    torch.manual_seed(seed)
    models = [ResNetCifar(32, C, cosine_head=cosine) for cosine in HEADS]
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


def ride_model(seed: int = 2) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone("ride_resnet32", C, num_experts=3)


def test_split_join_round_trip_is_exact() -> None:
    models = [*separate_models(), ride_model()]
    net = PackNet(models)
    assert [type(g).__name__ for g in net.groups] == ["FusedResNetCifar", "RIDEResNetCifar"]
    state = net.state_dict()
    for i, m in enumerate(models):
        back, ref = net.split(state, i), m.state_dict()
        assert back.keys() == ref.keys()
        assert all(torch.equal(back[key], ref[key]) for key in ref)
    joined = net.join([m.state_dict() for m in models])
    assert joined.keys() == state.keys() and all(torch.equal(joined[key], state[key]) for key in state)


def test_forward_and_bn_statistics_match_separate_models() -> None:
    models = [*separate_models(), ride_model()]
    net = PackNet([copy.deepcopy(m) for m in models])
    x = torch.randn(len(models), B, 3, HW, HW)
    for mode in ("train", "eval"):  # train: batch statistics per model (and running-stat updates); eval: running
        for m in [*models, net]:
            m.train(mode == "train")
        with torch.no_grad():
            out = net(x)
            ref = [m(x[i]) for i, m in enumerate(models)]
        for o, r in zip(out[:K], ref[:K], strict=True):
            assert o.shape == (B, C) and close(o, r), (mode, max_diff(o, r))
        assert close(out[K]["experts"], ref[K]["experts"]) and close(out[K]["logits"], ref[K]["logits"])
    state = net.state_dict()
    for i, m in enumerate(models):  # the one train-mode forward updated the same running statistics
        back = net.split(state, i)
        for key, t in m.state_dict().items():
            assert close(back[key], t), key


def test_gradients_match_separate_models() -> None:
    models = separate_models(seed=1)
    net = PackNet([copy.deepcopy(m) for m in models])
    x = torch.randn(K, B, 3, HW, HW)
    ya, yb = torch.randint(0, C, (K, B)), torch.randint(0, C, (K, B))
    lam = torch.rand(K)
    out = net(x)
    # Sum over models of each model's CMO loss: each model's gradient is its stand-alone gradient.
    sum(lam[i] * F.cross_entropy(out[i], ya[i]) + (1 - lam[i]) * F.cross_entropy(out[i], yb[i])
        for i in range(K)).backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    for i, m in enumerate(models):
        o = m(x[i])
        (lam[i] * F.cross_entropy(o, ya[i]) + (1 - lam[i]) * F.cross_entropy(o, yb[i])).backward()
        g = net.split(grads, i)
        named = dict(m.named_parameters())
        assert g.keys() == named.keys()
        for name, p in named.items():
            assert close(g[name], p.grad), (name, max_diff(g[name], p.grad))


def test_channels_last_and_autocast_run() -> None:
    models = separate_models()
    net = PackNet([copy.deepcopy(m) for m in models], channels_last=True)
    fused = net.groups[0]
    assert isinstance(fused, FusedResNetCifar)
    x = torch.randn(K, B, 3, HW, HW)
    with torch.no_grad():
        ref = [m(x[i]) for i, m in enumerate(models)]
        out = net(x)
        assert all(close(o, r) for o, r in zip(out, ref, strict=True))
        assert fused.pack_input(x).is_contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    for o, r in zip(low, ref, strict=True):
        assert o.shape == (B, C) and torch.isfinite(o).all() and max_diff(o, r) < 0.1 * float(r.abs().max())


def test_only_same_shape_resnets_fuse() -> None:
    deep = ResNetCifar(20, C)
    net = PackNet([*separate_models(), deep])
    assert [len(idx) for idx in net.index] == [3, 1] and net.groups[1] is deep
    with pytest.raises(ValueError):
        FusedResNetCifar([ResNetCifar(32, C), deep])


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
    models = [m.cuda() for m in separate_models()]
    net = PackNet([copy.deepcopy(m) for m in models], channels_last=True).cuda()
    x = torch.randn(K, B, 3, HW, HW, device="cuda")
    out = net(x)
    for i, m in enumerate(models):
        ref = m(x[i])
        assert close(out[i], ref), max_diff(out[i], ref)


def test_rotation_matches_torchvision_and_draws_angles_per_image() -> None:
    """RIDE's RandomRotation(15): each image turned by its own angle, as torchvision's rotate (nearest, zero fill)."""
    from torchvision.transforms import InterpolationMode

    from benchmark.data.pipeline import RotateAugment, rotate_batch

    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    angles = torch.tensor([12.5, -15.0, 3.0, 0.0])
    out = rotate_batch(x, angles, torch.zeros(1, 3, 1, 1))
    for i, a in enumerate(angles.tolist()):
        assert torch.equal(out[i], TF.rotate(x[i], a, interpolation=InterpolationMode.NEAREST, fill=0))
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8))
    aug = RotateAugment(images, CIFAR_MEAN, CIFAR_STD)
    idx = torch.arange(64)
    a, b = aug(idx, torch.Generator().manual_seed(1)), aug(idx, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (64, 3, 32, 32)
    black = aug.normalize(torch.zeros(1, 1, 1, 3))
    corners = a[:, :, 0, 0]  # a turned image has fill in (at least one of) its corners, an unturned one rarely
    assert (torch.isclose(corners, black[:, :, 0, 0]).all(1)).float().mean() > 0.3
