"""BatchNorm over chunks of the batch (train.bn_groups): per-chunk statistics, replica-0 running statistics,
run identity, packing and the process split."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from benchmark.backbones.group_bn import GroupBatchNorm2d, use_bn_groups
from benchmark.config.catalog import load_dataset
from benchmark.config.choices import choices_for
from benchmark.config.suite import load_suite, plan
from benchmark.engine.fused import FusedResNetCifar
from benchmark.engine.loop import Run, fit, train_pack
from benchmark.engine.parts import bn_groups_per_process, build_model
from benchmark.schema.settings import RunSettings

TINY = {"data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 48,
                 "test_per_class": 2, "image_size": 8},
        "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "device": "cpu", "steps_per_epoch": 2,
                  "checkpoint_every_s": 0}}


def tiny(seed: int = 0, **train: object) -> RunSettings:
    return RunSettings.model_validate({**TINY, "seed": seed, "train": {**TINY["train"], **train}})


def by_hand(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """Training-mode BatchNorm written out: biased variance over (N, H, W) per channel."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


def test_two_groups_normalise_each_half_by_itself() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64) * 3 + 1
    x[3:] += 5  # halves with very different statistics
    bn = GroupBatchNorm2d(3, groups=2).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    out = bn(x)
    expected = torch.cat([by_hand(x[:3], bn.weight, bn.bias, bn.eps), by_hand(x[3:], bn.weight, bn.bias, bn.eps)])
    assert torch.allclose(out, expected, atol=1e-12)
    assert not torch.allclose(out, by_hand(x, bn.weight, bn.bias, bn.eps), atol=1e-3)  # not one batch's statistics
    # running statistics: chunk 0 alone (DataParallel's replica 0), momentum 0.1, unbiased variance
    assert torch.allclose(bn.running_mean, 0.1 * x[:3].mean(dim=(0, 2, 3)), atol=1e-12)
    n0 = 3 * 4 * 4
    var0 = x[:3].var(dim=(0, 2, 3), unbiased=False) * n0 / (n0 - 1)
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * var0, atol=1e-12)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()  # evaluation: the running statistics, as BatchNorm2d
    plain = nn.BatchNorm2d(3).double()
    plain.load_state_dict(bn.state_dict())
    plain.eval()
    assert torch.equal(bn(x), plain(x))


def test_uneven_batch_is_split_as_torch_chunk_and_gradients_match_separate_layers() -> None:
    """A short last batch: 7 images over 4 groups are chunks of 2, 2, 2, 1, as DataParallel's scatter; the gradient
    of the shared affine parameters is the sum of four separate BatchNorms' gradients."""
    torch.manual_seed(1)
    x = torch.randn(7, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bn = GroupBatchNorm2d(2, groups=4).double()
    replicas = [copy.deepcopy(nn.BatchNorm2d(2).double()) for _ in range(4)]
    out = bn(x)
    ref = torch.cat([r(c) for r, c in zip(replicas, x.chunk(4), strict=True)])
    assert [len(c) for c in x.chunk(4)] == [2, 2, 2, 1]
    assert torch.allclose(out, ref, atol=1e-12)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    assert torch.allclose(bn.weight.grad, sum(r.weight.grad for r in replicas), atol=1e-12)
    assert torch.allclose(bn.running_mean, replicas[0].running_mean, atol=1e-12)
    assert torch.allclose(bn.running_var, replicas[0].running_var, atol=1e-12)


def test_use_bn_groups_keeps_parameters_and_state_dict() -> None:
    torch.manual_seed(0)
    model = build_model(tiny(), 4)
    reference = copy.deepcopy(model)
    params = {n: id(q) for n, q in model.named_parameters()}
    use_bn_groups(model, 4)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, GroupBatchNorm2d) and m.groups == 4 for m in bns)
    assert {n: id(q) for n, q in model.named_parameters()} == params  # the same Parameter objects
    assert model.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(8, 3, 8, 8)
    assert torch.equal(model.eval()(x), reference.eval()(x))
    assert not any(isinstance(m, GroupBatchNorm2d) for m in build_model(tiny(), 4).modules())  # default: plain BN
    assert all(m.groups == 2 for m in build_model(tiny(bn_groups=2), 4).modules() if isinstance(m, GroupBatchNorm2d))


def test_bn_groups_is_identity_only_when_set() -> None:
    plain, grouped = tiny(), tiny(bn_groups=4)
    assert "bn_groups" not in plain.identity()["train"]  # runs from before the setting keep their ids
    assert grouped.identity()["train"]["bn_groups"] == 4 and grouped.run_hash() != plain.run_hash()


def test_bn_groups_split_over_processes() -> None:
    assert bn_groups_per_process(tiny(bn_groups=4), 1) == 4
    assert bn_groups_per_process(tiny(bn_groups=4), 4) == 1  # one GPU per reference replica: DDP's per-rank BN
    assert bn_groups_per_process(tiny(bn_groups=8), 2) == 4
    assert bn_groups_per_process(tiny(), 3) == 1  # the default: each process's batch is one BatchNorm batch
    with pytest.raises(ValueError, match="not a multiple of the 3 processes"):
        bn_groups_per_process(tiny(bn_groups=4), 3)


def test_packed_members_keep_their_group_statistics() -> None:
    """Two ResNet-32s fused in one pack with bn_groups 2 take the BN running statistics of their runs alone after
    one step (within 1e-5; later steps add fp32 noise of the grouped convolutions), unlike bn_groups 1."""
    runs = [tiny(0, bn_groups=2, steps_per_epoch=1), tiny(1, bn_groups=2, steps_per_epoch=1)]
    data = load_dataset(runs[0].data)
    packed = train_pack([Run(s, data, f"r{i}") for i, s in enumerate(runs)])
    for s, res in zip(runs, packed, strict=True):
        assert not isinstance(res, Exception) and res.model is not None
        alone = fit(s, data)
        plain = fit(s.model_copy(update={"train": s.train.model_copy(update={"bn_groups": 1})}), data)
        assert alone.model is not None and plain.model is not None
        key = "layer1.0.bn1.running_var"
        got, ref = res.model.state_dict()[key], alone.model.state_dict()[key]
        assert float((got - ref).abs().max()) < 1e-5
        assert float((plain.model.state_dict()[key] - ref).abs().max()) > 1e-4


def test_fused_trunk_layers_are_grouped() -> None:
    torch.manual_seed(0)
    fused = use_bn_groups(FusedResNetCifar([build_model(tiny(), 4), build_model(tiny(1), 4)]), 2)
    assert all(isinstance(m, GroupBatchNorm2d) for m in fused.modules() if isinstance(m, nn.BatchNorm2d))


def test_suites_use_the_reference_gpu_count_and_record_it() -> None:
    def first(suite: str, row: str) -> RunSettings:
        spec, _ = load_suite(suite)
        return next(r.settings for r in plan(spec, seeds=[0]) if r.row == row)

    imagenet, inat, inat400, cifar = (first("table16", "CE"), first("table7", "Cross Entropy (CE)"),
                                      first("table15", "BS + CMO"), first("table2", "Cross Entropy (CE)"))
    assert (imagenet.train.bn_groups, imagenet.train.batch_size) == (4, 256)  # 4 GPUs x 64
    assert (inat.train.bn_groups, inat.train.batch_size) == (8, 512)  # 8 GPUs x 64
    assert (inat400.train.bn_groups, inat400.train.batch_size) == (4, 128)
    assert cifar.train.bn_groups == 1 and "bn_groups" not in choices_for(cifar, None)
    assert choices_for(imagenet, None)["bn_groups"].startswith("4 group(s) of 64 images")
    assert "the paper's 4 GPUs" in choices_for(imagenet, None)["bn_groups"]
    assert "the paper: 8" in choices_for(inat400, None)["bn_groups"]
