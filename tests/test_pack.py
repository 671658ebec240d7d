"""One engine for a pack of 1..K runs: a heterogeneous pack member sees exactly what its run alone sees."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmark.config.catalog import load_dataset
from benchmark.engine import loop
from benchmark.engine.fused import PackNet
from benchmark.engine.loop import Run, fit, train_pack
from benchmark.engine.parts import build_model, build_parts
from benchmark.engine.step import PackBatch, TrainStep
from benchmark.methods.losses import step_loss
from benchmark.methods.mixers import mixers
from benchmark.schema.settings import RunSettings

TINY = {"data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 48,
                 "test_per_class": 2, "image_size": 8},
        "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "device": "cpu", "steps_per_epoch": 2,
                  "checkpoint_every_s": 0},
        "method": {"rule": "drw", "reweight_epoch": 1}, "mixer": {"start": -1, "end": 0, "prob": 0.5}}
LOSSES = ["ce", "ldam", "balanced_softmax", "ride", "las"]
PACKABLE_MIXERS = [e.name for e in mixers if e.packable]


def settings(seed: int, loss: str = "ce", mixer: str = "cmo", ratio: float = 4, **train: Any) -> RunSettings:
    return RunSettings.model_validate({
        **TINY, "seed": seed, "train": {**TINY["train"], **train},
        "data": {**TINY["data"], "imbalance_ratio": ratio}, "method": {**TINY["method"], "loss": loss,
                                                                        "mixer": mixer},
        "backbone": {"name": "ride_resnet32", "num_experts": 3} if loss == "ride" else {"name": "resnet32_cifar"}})


class Recording(TrainStep):
    """The engine's step, keeping every batch, the first forward's outputs, and the first step's loss and grads."""

    logs: list[dict[str, Any]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: dict[str, Any] = {"batches": [], "outs": None, "grads": None, "loss": None, "net": self.model}
        Recording.logs.append(self.log)
        self.model.register_forward_hook(self._first_outputs)

    def _first_outputs(self, module: Any, inputs: Any, outs: list[Any]) -> None:
        if self.log["outs"] is None:
            self.log["outs"] = [(o["logits"] if isinstance(o, dict) else o).detach().clone() for o in outs]

    def __call__(self, b: PackBatch) -> tuple[torch.Tensor, torch.Tensor]:
        self.log["batches"].append({n: getattr(b, n).clone() for n in PackBatch.FIELDS})
        loss, hits = super().__call__(b)
        if self.log["grads"] is None:
            self.log["grads"] = {n: q.grad.clone() for n, q in self.model.named_parameters() if q.grad is not None}
            self.log["loss"] = loss.clone()
        return loss, hits


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    Recording.logs = []
    monkeypatch.setattr(loop, "TrainStep", Recording)
    return Recording.logs


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    """Within tol absolute, scaled for values above 1 (fp32 rounding is relative)."""
    return float((a.float() - b.float()).abs().max()) <= tol * max(1.0, float(b.abs().max()))


def test_heterogeneous_pack_member_equals_its_run_alone(recording: list[dict[str, Any]]) -> None:
    """Every loss x every packable mixer, mixed seeds and two imbalance ratios, in one pack: each member gets the
    draws of its run alone (every step: images, labels, lam, coin, class weights, exactly), the same first forward
    outputs and loss (within 1e-5), and a result of the same shape and meaning."""
    runs = [settings(i, loss, mixer, ratio=4 if i % 2 else 2)
            for i, (loss, mixer) in enumerate((ls, mx) for ls in LOSSES for mx in PACKABLE_MIXERS)]
    datas = {r.data.imbalance_ratio: load_dataset(r.data) for r in runs}
    packed = train_pack([Run(s, datas[s.data.imbalance_ratio], f"r{i}") for i, s in enumerate(runs)])
    pack_log = recording[0]
    assert len(pack_log["net"].groups) == 1 + sum(s.method.loss == "ride" for s in runs)  # ResNet-32s fused
    for j, s in enumerate(runs):
        alone = fit(s, datas[s.data.imbalance_ratio])
        log = recording[j + 1]
        assert len(log["batches"]) == len(pack_log["batches"]) == 2
        for mine, ref in zip(pack_log["batches"], log["batches"], strict=True):
            for name in PackBatch.FIELDS:
                assert torch.equal(mine[name][j], ref[name][0]), (s.method.loss, s.method.mixer, name)
        assert close(pack_log["outs"][j], log["outs"][0]), (s.method.loss, s.method.mixer)
        assert close(pack_log["loss"][j], log["loss"][0])
        res = packed[j]
        assert not isinstance(res, Exception)
        assert [r["train/mixed_frac"] for r in res.curve] == [r["train/mixed_frac"] for r in alone.curve]
        assert res.class_counts == alone.class_counts and res.groups == alone.groups
        assert res.curve[0].keys() == alone.curve[0].keys() and len(res.per_class_last) == 4
        assert res.execution["pack_size"] == len(runs) and alone.execution["pack_size"] == 1
        assert type(res.model) is type(alone.model)
    mixed = [sum(b["mixed"][j].item() for b in pack_log["batches"]) for j in range(len(runs))]
    assert 0 < sum(mixed) < 2 * sum(s.method.mixer != "none" for s in runs)  # the coins fell both ways
    _gradients_match(runs, datas, pack_log["batches"][0])


def _gradients_match(runs: list[RunSettings], datas: dict[float, Any], b: dict[str, torch.Tensor]) -> None:
    """The pack's network and per-member losses give each member the gradient of its run alone (within 1e-5).

    Checked in float64 on the first step's batch and initial weights: in float32, grouped and plain convolutions sum
    in different orders, and a pre-activation within ~1e-7 of zero then takes the other side of a ReLU, which moves
    a few weight gradients by ~1e-3 in either network (neither is the more exact one)."""
    models, parts = [], []
    for s in runs:
        torch.manual_seed(s.seed)
        models.append(build_model(s, 4).double())
        data = datas[s.data.imbalance_ratio]
        parts.append(build_parts(s, data, torch.from_numpy(data.train_y), torch.device("cpu")))

    def grads(net: PackNet, rows: list[int]) -> list[dict[str, torch.Tensor]]:
        outs = net(b["x"][rows].double())
        loss = sum(step_loss(parts[j].criterion, outs[i], b["y_a"][j], b["y_b"][j], b["lam"][j].double(),
                             b["mixed"][j], b["w"][j].double(),
                             runs[j].mixer.remix_labels if parts[j].mixer.per_sample_lam else None)
                   for i, j in enumerate(rows))
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        named = {n: q.grad for n, q in net.named_parameters() if q.grad is not None}
        return [net.split(named, i) for i in range(len(rows))]

    packed = grads(PackNet([copy.deepcopy(m) for m in models]).double(), list(range(len(runs))))
    for j, s in enumerate(runs):
        (alone,) = grads(PackNet([copy.deepcopy(models[j])]).double(), [j])
        assert packed[j].keys() == alone.keys()
        for name in alone:
            assert close(packed[j][name], alone[name]), (s.method.loss, s.method.mixer, name)


def test_non_finite_loss_fails_only_its_member() -> None:
    good = settings(0)
    bad = settings(1, loss="ldam")
    bad = bad.model_copy(update={"method": bad.method.model_copy(update={"loss_args": {"s": 1e38}})})  # inf logits
    data = load_dataset(good.data)
    res = train_pack([Run(good, data, "good"), Run(bad, data, "bad")])
    assert not isinstance(res[0], Exception) and len(res[0].curve) == 1
    assert math.isfinite(res[0].curve[-1]["train/loss"])
    assert isinstance(res[1], FloatingPointError) and "non-finite" in str(res[1])


def test_pack_refuses_unpackable_runs_and_different_schedules() -> None:
    data = load_dataset(settings(0).data)
    with pytest.raises(ValueError, match="mixer minority_blur"):
        train_pack([Run(settings(0), data), Run(settings(1, mixer="minority_blur"), data)])
    with pytest.raises(ValueError, match="differ"):
        train_pack([Run(settings(0), data), Run(settings(1, lr=0.05), data)])
    alone = fit(settings(0, mixer="minority_blur"), data)  # an unpackable run trains alone
    assert math.isfinite(alone.curve[-1]["train/loss"])


def test_member_checkpoint_resumes_alone(tmp_path: Path) -> None:
    """A member's checkpoint has the layout of its run alone: an interrupted pack can finish one run by itself,
    exactly where the pack would have taken it."""
    a, b = settings(0, epochs=1), settings(1, loss="ldam", mixer="remix", epochs=1)
    data = load_dataset(a.data)
    ckpts = [tmp_path / "a.ckpt", tmp_path / "b.ckpt"]
    train_pack([Run(a, data, "a", ckpts[0]), Run(b, data, "b", ckpts[1])])  # epoch 1, checkpointed
    two = b.model_copy(update={"train": b.train.model_copy(update={"epochs": 2})})
    resumed = fit(two, data, checkpoint=ckpts[1], run_id="b")  # epoch 2 alone
    straight = train_pack([Run(a.model_copy(update={"train": two.train}), data), Run(two, data)])[1]
    assert not isinstance(straight, Exception)
    assert len(resumed.curve) == 2
    assert resumed.curve[1]["train/loss"] == pytest.approx(straight.curve[1]["train/loss"], rel=1e-4)
    assert resumed.curve[1]["train/mixed_frac"] == straight.curve[1]["train/mixed_frac"]


def test_checkpoint_cadence(tmp_path: Path) -> None:
    """Saved at an epoch end once checkpoint_every_s has passed: never within a short run at the default."""
    data = load_dataset(settings(0).data)
    saves: list[int] = []
    orig = loop.save_checkpoint

    def counting(*args: Any, **kwargs: Any) -> None:
        saves.append(args[2].epoch)
        orig(*args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "save_checkpoint", counting)
    try:
        fit(settings(0, epochs=3), data, checkpoint=tmp_path / "a.ckpt", run_id="a")
        assert saves == [1, 2, 3]
        saves.clear()
        fit(settings(0, epochs=3, checkpoint_every_s=300), data, checkpoint=tmp_path / "b.ckpt", run_id="b")
        assert saves == []
    finally:
        mp.undo()


def test_auto_pack_size_follows_free_gpu_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from benchmark.run.packing import AUTO_PACK_MAX, auto_pack_size

    def job(device: str, backbone: str = "resnet32_cifar") -> Any:
        s = settings(0, device=device)
        s = s.model_copy(update={"backbone": s.backbone.model_copy(update={"name": backbone})})
        return SimpleNamespace(run=SimpleNamespace(settings=s), path=tmp_path / "r.json", force=False)

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (40 * 2**30, 80 * 2**30))
    assert auto_pack_size([job("cuda")], None) == AUTO_PACK_MAX == 16
    assert auto_pack_size([job("cuda"), job("cuda", "resnet50")], None) == 2  # 0.8 x 40 GiB / 12 GiB
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (4 * 2**30, 80 * 2**30))
    assert auto_pack_size([job("cuda")], None) == 4  # 0.8 x 4 GiB / 0.75 GiB
    assert auto_pack_size([job("cpu")], None) == 1 and auto_pack_size([job("cuda")], 3) == 3


def test_members_on_one_split_share_one_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pack builds its members' crops with one gather; each member still draws from its own generator, so the
    images equal those of building each batch alone."""
    from benchmark.data.pipeline import BatchAugment
    from benchmark.data.sources import TensorSource, build_batches

    data = load_dataset(settings(0).data)
    source = TensorSource(data, "standard", torch.device("cpu"))
    order = torch.randperm(len(source.labels), generator=torch.Generator().manual_seed(0))

    def streams() -> list[Any]:
        return [next(source.batches(order[j:], 8, 1, torch.Generator().manual_seed(j))) for j in range(3)]

    alone = [b() for b in streams()]
    calls = []
    apply = BatchAugment.apply
    monkeypatch.setattr(BatchAugment, "apply", lambda self, *a: calls.append(1) or apply(self, *a))
    together = build_batches(streams())
    assert len(calls) == 1
    for (x, y), (x1, y1) in zip(together, alone, strict=True):
        assert torch.equal(x, x1) and torch.equal(y, y1)


@pytest.mark.parametrize("window", ["always", "window"])
def test_cmo_back_background_window(window: str, recording: list[dict[str, Any]]) -> None:
    """CMO_back's minority-weighted background: in every epoch (always), or only inside the mixer's window with the
    instance stream (every image once) outside it (window)."""
    s = settings(0, "ce", "cmo_back", steps_per_epoch=None, epochs=1)
    s = s.model_copy(update={"mixer": s.mixer.model_copy(update={"start": 0, "background_window": window})})
    data = load_dataset(s.data)
    fit(s, data)  # epoch 0 is outside the window (start 0 < epoch)
    labels = torch.cat([b["y_a"][0] for b in recording[0]["batches"]])
    instance = torch.bincount(labels, minlength=4).tolist() == data.class_counts
    assert instance == (window == "window")
