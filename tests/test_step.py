"""The optimisation step: execution rules, the graph's mixed form, bf16/NHWC on the CPU, and CUDA graphs on a GPU."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from benchmark.config.catalog import load_dataset
from benchmark.engine.loop import Run, fit, train_pack
from benchmark.engine.step import Execution, PackBatch, TrainStep, host_sync_sites, resolve_execution
from benchmark.methods.losses import CrossEntropy, LDAMLoss, mixed_loss, step_loss
from benchmark.schema.settings import RunSettings

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
    unsafe = resolve_execution("auto", None, True, CUDA, not_graph_safe="loss x")
    assert not unsafe.cuda_graph and "loss x is not graph-safe" in unsafe.note
    assert "needs CUDA" in resolve_execution("auto", None, True, CPU).note


def test_execution_settings_do_not_change_the_run_id() -> None:
    a = RunSettings.model_validate(TINY)
    b = RunSettings.model_validate({**TINY, "train": {**TINY["train"], "channels_last": True, "cuda_graph": False,
                                                       "compile": True}})
    assert a.run_hash() == b.run_hash() and a.config_hash() == b.config_hash()
    fp32 = RunSettings.model_validate({**TINY, "train": {**TINY["train"], "precision": "fp32"}})
    assert fp32.run_hash() != a.run_hash()  # a precision control is a run of its own


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
    lam_row, one, zero = torch.full((16,), lam), torch.tensor(1.0), torch.tensor(0.0)
    assert torch.allclose(step_loss(crit, out, ya, yb, lam_row, one, w, None), by_hand, atol=1e-6)
    plain = step_loss(crit, out, ya, ya, torch.ones(16), zero, ones, None)
    assert torch.allclose(plain, crit(out, ya, None), atol=1e-6)


@pytest.mark.parametrize("form", ["batch", "per_sample"])
def test_remix_loss_under_drw_by_hand(form: str) -> None:
    """Remix with DRW weights, normalised by the sum of the weights in both label forms; the plain loss on steps that
    do not mix, with no branch on the host."""
    crit, g = CrossEntropy(), torch.Generator().manual_seed(1)
    out, ya, yb = torch.randn(8, 3, generator=g), torch.randint(0, 3, (8,), generator=g), torch.randint(0, 3, (8,))
    lam, w = torch.rand(8, generator=g), torch.tensor([0.2, 1.0, 3.0])
    la = torch.nn.functional.cross_entropy(out, ya, reduction="none")
    lb = torch.nn.functional.cross_entropy(out, yb, reduction="none")
    if form == "batch":  # BagofTricks-LT: mean(lam) weights the two weighted means
        m = lam.mean()
        by_hand = m * (w[ya] * la).sum() / w[ya].sum() + (1 - m) * (w[yb] * lb).sum() / w[yb].sum()
    else:  # the Remix paper: per-sample mixtures over the sum of the mixed weights
        by_hand = ((lam * w[ya] * la + (1 - lam) * w[yb] * lb).sum()
                   / (lam * w[ya] + (1 - lam) * w[yb]).sum())
    mixed = step_loss(crit, out, ya, yb, lam, torch.tensor(1.0), w, form)
    assert torch.allclose(mixed, by_hand, atol=1e-6)
    plain = step_loss(crit, out, ya, ya, torch.ones(8), torch.tensor(0.0), w, form)
    assert torch.allclose(plain, (w[ya] * la).sum() / w[ya].sum(), atol=1e-6)
    unweighted = step_loss(crit, out, ya, yb, lam, torch.tensor(1.0), torch.ones(3), form)
    m = lam.mean()
    expected = (m * la.mean() + (1 - m) * lb.mean()) if form == "batch" else (lam * la + (1 - lam) * lb).mean()
    assert torch.allclose(unweighted, expected, atol=1e-6)  # no weights: the batch size


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


SYNC_MIXERS = ["none", "cmo", "cutmix", "remix", "cmo_back", "cmo_minor", "cmo_mixup"]  # cmo_mixup is Mixup


@pytest.mark.gpu
@cuda_only
@pytest.mark.parametrize(("mixer", "pack"), [(m, 1) for m in SYNC_MIXERS] + [("cmo", 2)])
def test_training_steps_make_no_host_sync(mixer: str, pack: int) -> None:
    """Host syncs grow with epochs (loss read-out, evaluation, per-epoch samplers), not with steps: a 4-epoch run
    makes fewer than 12 more per extra epoch than a 2-epoch run, where one sync per (mixed) step would add 34."""
    data = load_dataset(RunSettings.model_validate(GPU_RUN).data)

    def settings(epochs: int) -> RunSettings:
        return RunSettings.model_validate({
            **GPU_RUN, "train": {**GPU_RUN["train"], "epochs": epochs, "batch_size": 32},
            "method": {**GPU_RUN["method"], "mixer": mixer}, "mixer": {"start": -1, "end": 0, "prob": 1.0}})

    def sites(epochs: int) -> Counter:
        s = settings(epochs)
        out: list = []
        found = host_sync_sites(lambda: out.extend(
            train_pack([Run(s.model_copy(update={"seed": j}), data) for j in range(pack)])))
        assert found is not None and all(not isinstance(r, Exception) for r in out), out
        assert len(out[0].curve) == epochs
        return Counter(found)

    sites(2)  # cuDNN autotuning and lazy initialisation outside the count
    short, long = sites(2), sites(4)
    per_epoch = (sum(long.values()) - sum(short.values())) / 2
    assert per_epoch < 12, (per_epoch, (long - short).most_common(6))


class _Tiny(torch.nn.Module):
    """A one-member pack network: [1, B, C, H, W] -> [logits]."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.net(x[0])]


def _tiny_step(ex: Execution, seed: int = 0) -> tuple[torch.nn.Module, TrainStep]:
    torch.manual_seed(seed)
    model = _Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    crit = CrossEntropy()

    def loss_fn(outs: list[torch.Tensor], b: PackBatch) -> torch.Tensor:
        return torch.stack([step_loss(crit, outs[0], b.y_a[0], b.y_b[0], b.lam[0], b.mixed[0], b.w[0], None)])

    return model, TrainStep(model, loss_fn, opt, ex, CPU)


def _batch(x: torch.Tensor, y: torch.Tensor, yb: torch.Tensor | None = None, lam: float = 1.0) -> PackBatch:
    yb = y if yb is None else yb
    return PackBatch(x[None], y[None], yb[None], torch.full((1, len(y)), lam), torch.tensor([float(lam != 1.0)]),
                     torch.ones(1, 3))


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (8, 8, 5, 8)]


def test_compiled_step_trains_like_the_plain_model() -> None:
    """torch.compile serves full-size batches only (the short batch uses the plain model: no recompilation)
    and follows the plain step's losses and weights."""
    plain_ex = resolve_execution("fp32", False, False, CPU)
    comp_ex = resolve_execution("fp32", False, False, CPU, compile=True)
    m_plain, plain = _tiny_step(plain_ex)
    m_comp, comp = _tiny_step(comp_ex)
    for x, y in _batches():
        a, _ = plain(_batch(x, y, y.flip(0), 0.7))
        b, _ = comp(_batch(x, y, y.flip(0), 0.7))
        assert torch.allclose(a, b, atol=1e-5), (a, b)
    for p, q in zip(m_plain.parameters(), m_comp.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)
    assert comp.info()["compile"] and "compile_fallback" not in comp.info()
    assert comp.fast_model is not comp.model


def test_failed_compilation_falls_back_to_the_plain_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model, **kw):  # noqa: ANN001, ANN003, ANN202
        def fn(x):  # noqa: ANN001, ANN202
            raise RuntimeError("no compiler here")
        return fn

    monkeypatch.setattr(torch, "compile", broken)
    m_plain, plain = _tiny_step(resolve_execution("fp32", False, False, CPU))
    m_comp, comp = _tiny_step(resolve_execution("fp32", False, False, CPU, compile=True))
    for x, y in _batches():
        assert torch.equal(plain(_batch(x, y))[0], comp(_batch(x, y))[0])
    assert "no compiler here" in comp.info()["compile_fallback"] and comp.fast_model is comp.model
    assert all(torch.equal(p, q) for p, q in zip(m_plain.parameters(), m_comp.parameters(), strict=True))


@pytest.mark.gpu
@cuda_only
def test_heterogeneous_pack_is_captured_in_one_graph() -> None:
    """CE, LDAM-DRW, BS and RIDE, plain / + CMO / + Remix, one pack on CUDA: the whole step replays from one CUDA
    graph (RIDE's temperature switches inside it at its reweight epoch) and trains like the eager pack."""
    data = load_dataset(RunSettings.model_validate(GPU_RUN).data)
    methods = [(loss, rule, mixer) for loss, rule in (("ce", "none"), ("ldam", "drw"), ("balanced_softmax", "none"),
                                                       ("ride", "drw")) for mixer in ("none", "cmo", "remix")]

    def runs(graph: bool) -> list[Run]:
        out = []
        for seed, (loss, rule, mixer) in enumerate(methods):
            s = RunSettings.model_validate({
                **GPU_RUN, "seed": seed, "method": {"loss": loss, "rule": rule, "mixer": mixer, "reweight_epoch": 2},
                "backbone": {"name": "ride_resnet32", "num_experts": 3} if loss == "ride" else {},
                "train": {**GPU_RUN["train"], "cuda_graph": graph}})
            out.append(Run(s, data))
        return out

    graphed, eager = train_pack(runs(True)), train_pack(runs(False))
    assert all(not isinstance(r, Exception) for r in graphed + eager), graphed + eager
    ex = graphed[0].execution
    assert ex["cuda_graph"] and not ex.get("graph_fallback") and ex["graph_replays"] > 0 and ex["pack_size"] == 12
    for a, b in zip(graphed, eager, strict=True):
        for x, y in zip(a.curve, b.curve, strict=True):  # same draws; bf16 kernels may differ a little
            assert abs(x["train/loss"] - y["train/loss"]) < 0.05 * max(1.0, y["train/loss"])
