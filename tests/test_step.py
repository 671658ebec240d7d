"""The optimisation step: execution rules, the graph's mixed form, bf16/NHWC on the CPU, and CUDA graphs on a GPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from benchmark.methods.losses import CrossEntropy, LDAMLoss, mixed_loss
from benchmark.runner import load_dataset
from benchmark.settings import RunSettings
from benchmark.step import resolve_execution
from benchmark.train import fit

TINY = {"data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 64,
                 "test_per_class": 4, "image_size": 8},
        "train": {"epochs": 3, "batch_size": 8, "warmup_epochs": 1, "device": "cpu"},
        "method": {"mixer": "cmo", "rule": "drw", "reweight_epoch": 2}, "mixer": {"start": 0, "end": 0}}
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_execution_is_fast_on_cuda_and_plain_on_cpu() -> None:
    cpu = resolve_execution("auto", None, None, CPU)
    assert (cpu.precision, cpu.channels_last, cpu.cuda_graph, cpu.optimizer) == ("fp32", False, False, "default")
    gpu = resolve_execution("auto", None, None, CUDA)
    assert (gpu.precision, gpu.channels_last, gpu.cuda_graph, gpu.optimizer) == ("bf16", True, True, "fused")
    assert resolve_execution("fp32", False, False, CUDA).cuda_graph is False
    ddp = resolve_execution("auto", None, None, CUDA, world=2)
    assert not ddp.cuda_graph and "DDP" in ddp.note
    ride = resolve_execution("auto", None, True, CUDA, graph_safe=False)
    assert not ride.cuda_graph and "per epoch" in ride.note
    assert "needs CUDA" in resolve_execution("auto", None, True, CPU).note


def test_execution_settings_do_not_change_the_run_id() -> None:
    a = RunSettings.model_validate(TINY)
    b = RunSettings.model_validate({**TINY, "train": {**TINY["train"], "precision": "bf16", "channels_last": True,
                                                       "cuda_graph": False}})
    assert a.run_hash() == b.run_hash() and a.config_hash() == b.config_hash()


@pytest.mark.parametrize("crit", [CrossEntropy(), LDAMLoss([40, 20, 10, 5])])
def test_graph_mixed_form_equals_the_plain_and_scalar_forms(crit: torch.nn.Module) -> None:
    """What a graph computes (0-dim lam, ones as 'no weights') equals the eager forms it replaces."""
    g = torch.Generator().manual_seed(0)
    out = torch.randn(16, 4, generator=g)
    ya, yb = torch.randint(0, 4, (16,), generator=g), torch.randint(0, 4, (16,), generator=g)
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    ones, lam = torch.ones(4), 0.3
    assert torch.equal(mixed_loss(crit, out, ya, ya, torch.tensor(1.0), ones), crit(out, ya, ones))
    assert torch.allclose(crit(out, ya, ones), crit(out, ya, None), atol=1e-6)
    by_hand = lam * crit(out, ya, w) + (1 - lam) * crit(out, yb, w)  # CMO: two weighted means
    assert torch.allclose(mixed_loss(crit, out, ya, yb, torch.tensor(lam), w), by_hand, atol=1e-6)
    assert torch.allclose(mixed_loss(crit, out, ya, yb, lam, w), by_hand, atol=1e-6)


def test_bf16_channels_last_run_on_cpu_is_recorded() -> None:
    s = RunSettings.model_validate({**TINY, "train": {**TINY["train"], "precision": "bf16", "channels_last": True}})
    res = fit(s, load_dataset(s.data))
    ex = res.execution
    assert (ex["precision"], ex["channels_last"], ex["cuda_graph"], ex["graph_replays"]) == ("bf16", True, False, 0)
    assert all(torch.isfinite(torch.tensor(r["train/loss"])) for r in res.curve)
    assert res.model is not None
    assert next(res.model.parameters()).dtype == torch.float32  # weights stay fp32 under autocast
    assert fit(RunSettings.model_validate(TINY), load_dataset(s.data)).execution["precision"] == "fp32"


cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU_RUN = {"data": {"name": "synthetic_lt", "imbalance_ratio": 10, "num_classes": 10, "max_per_class": 256,
                    "test_per_class": 20, "image_size": 32},
           "train": {"epochs": 4, "batch_size": 64, "warmup_epochs": 1, "device": "cuda"},
           "method": {"mixer": "cmo", "rule": "drw", "reweight_epoch": 2}, "mixer": {"start": 0, "end": 0}}


@pytest.mark.gpu
@cuda_only
def test_cuda_graph_replays_and_trains_like_eager() -> None:
    s = RunSettings.model_validate(GPU_RUN)
    data = load_dataset(s.data)
    graphed = fit(s, data)
    eager = fit(s.model_copy(update={"train": s.train.model_copy(update={"cuda_graph": False})}), data)
    assert graphed.execution["cuda_graph"] and not graphed.execution.get("graph_fallback")
    steps = sum(1 for _ in range(4) for _ in range(-(-len(data.train_y) // 64)))
    assert graphed.execution["graph_replays"] > steps // 2  # full batches replay; warm-up and short ones do not
    assert eager.execution["graph_replays"] == 0
    for a, b in zip(graphed.curve, eager.curve, strict=True):  # same draws; bf16 kernels may differ a little
        assert abs(a["train/loss"] - b["train/loss"]) < 0.05 * max(1.0, b["train/loss"])


@pytest.mark.gpu
@cuda_only
def test_graphed_epoch_makes_no_per_step_host_sync() -> None:
    """Synchronising CUDA calls over a whole run stay a few per epoch (the loss read-out and the evaluation)."""
    s = RunSettings.model_validate(GPU_RUN)
    data = load_dataset(s.data)
    fit(s, data)  # cuDNN autotuning and lazy initialisation outside the count
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = fit(s, data)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
    steps = len(res.curve) * -(-len(data.train_y) // 64)
    assert syncs < steps / 4, (syncs, steps)
