"""The throughput benchmark: a tiny CPU run, and its device-side CMO data ops against the reference ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import benchmark.bench as bench
from benchmark.bench import (
    BenchConfig,
    DeviceCMOData,
    bench_fast,
    bench_reference,
    cmo_loss,
    cutmix_boxes,
    gather_crop_flip,
    make_workload,
    run_bench,
)
from benchmark.data.base import LTData
from benchmark.methods.mixers import rand_bbox


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    out = run_bench(device="cpu", ks=(1, 2), steps=2, warmup=1, threads=1, json_out=path)
    out["_json_path"] = path
    return out


def test_tiny_cpu_run_reports_every_variant(result: dict[str, Any]) -> None:
    rows = {r["name"]: r for r in result["variants"]}
    assert list(rows) == ["reference", "fast", "packed K=1", "packed K=2", "loop", "loop packed K=2"]
    for name, r in rows.items():
        assert "error" not in r, (name, r.get("error"))
        for key in ("images_per_s", "ratio", "min_per_run", "min_per_run_wall", "suite_hours", "ms_per_step"):
            assert r[key] > 0, (name, key)
    assert rows["reference"]["ratio"] == pytest.approx(1.0)
    assert rows["packed K=2"]["images"] == 2 * 2 * result["settings"]["batch_size"]
    assert rows["packed K=2"]["min_per_run_wall"] == pytest.approx(2 * rows["packed K=2"]["min_per_run"])
    assert result["workload"]["n_train"] == 10847
    assert result["summary"]["best_packed"]["name"].startswith("packed")
    saved = json.loads(Path(result["_json_path"]).read_text())
    assert saved["device_name"].startswith("cpu") and saved["torch"] == torch.__version__
    assert len(saved["variants"]) == 6
    assert rows["loop packed K=2"]["loop"] == "fit_packed" and rows["loop"]["loop"] == "train.fit"
    assert rows["loop packed K=2"]["images"] == 2 * rows["loop"]["images"]
    assert result["summary"]["loop_single"]["name"] == "loop"
    assert result["summary"]["loop_packed"]["name"] == "loop packed K=2"
    assert result["summary"]["best_single"]["name"] == "fast"


def test_bench_main_parses_pack_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(bench, "run_bench", lambda *a, **kw: seen.update(args=a, kw=kw) or {})
    bench.bench_main("cpu", None, "1, 4,8", steps=2)
    assert seen["args"][:3] == ("cpu", (1, 4, 8), 2)


def test_packed_gather_matches_batch_augment() -> None:
    data = make_workload(test_size=10)
    gen = torch.Generator().manual_seed(0)
    stream = DeviceCMOData(data, torch.device("cpu"), k=3, batch_size=8, gen=gen)
    idx = torch.randint(0, len(data.train_y), (3, 8), generator=gen)
    top, left, flip = stream.aug.draw(24, gen)
    u8 = gather_crop_flip(stream.aug, idx, top.view(3, 8), left.view(3, 8), flip.view(3, 8))
    assert u8.shape == (3, 8, 32, 32, 3) and u8.dtype == torch.uint8
    for j in range(3):
        ref = stream.aug.apply(idx[j], top.view(3, 8)[j], left.view(3, 8)[j], flip.view(3, 8)[j])
        assert torch.equal(stream.aug.normalize(u8[j]), ref)
    x = stream.to_input(u8)  # model j reads channels 3j..3j+2, bit-exact with BatchAugment's normalisation
    assert x.shape == (8, 9, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    for j in range(3):
        assert torch.equal(x[:, 3 * j:3 * j + 3], stream.aug.normalize(u8[j]))


class FixedCentres:
    """Stands in for the NumPy generator of `rand_bbox`: returns the given centres in order."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)

    def integers(self, high: int) -> int:
        return self.values.pop(0)


def test_cutmix_boxes_match_reference_rand_bbox() -> None:
    rng = np.random.default_rng(0)
    lam = torch.from_numpy(rng.random(200))
    lam[:3] = torch.tensor([0.0, 1.0, 0.5])
    cx, cy = torch.from_numpy(rng.integers(0, 32, 200)), torch.from_numpy(rng.integers(0, 24, 200))
    use = torch.ones(200, dtype=torch.bool)
    use[-1] = False
    mask, lam_adj = cutmix_boxes(lam, cx, cy, use, 32, 24)
    for i in range(199):
        box = rand_bbox(32, 24, float(lam[i]), FixedCentres(int(cx[i]), int(cy[i])))  # type: ignore[arg-type]
        ref = torch.zeros(32, 24, dtype=torch.bool)
        ref[box.x1:box.x2, box.y1:box.y2] = True
        assert torch.equal(mask[i], ref), i
        assert float(lam_adj[i]) == pytest.approx(1 - box.area() / (32 * 24))
    assert not mask[-1].any() and float(lam_adj[-1]) == 1.0  # coin says no mixing: plain batch


def test_device_cmo_stream_and_loss() -> None:
    data = make_workload(test_size=10)
    gen = torch.Generator().manual_seed(1)
    stream = DeviceCMOData(data, torch.device("cpu"), k=2, batch_size=16, gen=gen)
    x, ya, yb, lam = stream.next()
    assert x.shape == (16, 6, 32, 32) and ya.shape == yb.shape == (2, 16) and lam.shape == (2,)
    assert (stream.labels[stream.bg[:, :16]] == ya).all() and (stream.labels[stream.fg[:, :16]] == yb).all()
    assert not torch.equal(stream.bg[0], stream.bg[1])  # each model its own order
    assert torch.equal(stream.bg.sort(dim=1).values, torch.arange(len(data.train_y)).expand(2, -1))  # permutations
    head = (stream.labels[stream.fg] < 10).float().mean()  # Q = 1/n_k per image: every class equally likely
    assert abs(float(head) - 0.1) < 0.02
    logits = torch.randn(2, 16, 100)
    ref = sum(lam[i] * F.cross_entropy(logits[i], ya[i]) + (1 - lam[i]) * F.cross_entropy(logits[i], yb[i])
              for i in range(2))
    assert float(cmo_loss(logits, ya, yb, lam)) == pytest.approx(float(ref), rel=1e-6)


def test_variants_cross_epoch_boundaries() -> None:
    full = make_workload(test_size=10)
    keep = np.arange(0, len(full.train_y), 540)  # 21 images: 2 full batches of 8 per epoch (+5 in the reference)
    data = LTData(**{**full.__dict__, "train_x": full.train_x[keep], "train_y": full.train_y[keep]})
    cfg = BenchConfig(torch.device("cpu"), batch_size=8, steps=4, warmup=1, workers=0, amp=False,
                      channels_last=False)
    ref = bench_reference(cfg, data)
    assert ref["images"] == 8 + 5 + 8 + 8  # steps 2-5 of the epochs [8, 8, 5], [8, 8, 5]
    for k in (None, 2):
        out = bench_fast(cfg, data, k, graph=False)
        assert out["images"] == 4 * 8 * (k or 1) and np.isfinite(out["final_loss"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_variants_run_without_host_syncs() -> None:
    out = run_bench(device="cuda", ks=(2,), steps=5, warmup=2, quiet=True, compile=False)
    rows = {r["name"]: r for r in out["variants"]}
    assert set(rows) == {"reference", "fast", "packed K=2", "loop", "loop packed K=2", "fast+graph",
                         "packed K=2+graph"}
    for name, r in rows.items():
        assert "error" not in r, (name, r.get("error"))
        assert np.isfinite(r.get("final_loss", 0.0)), name
        if name != "reference":
            assert r["amp"] and r["channels_last"] and r["optimizer"].startswith("fused"), name
        if name.startswith("loop"):  # the product loop: graphed steps, no capture fallback
            assert r["cuda_graph"] and r["precision"] == "bf16" and not r["note"], name
        elif name != "reference":
            assert r["host_syncs_per_step"] == 0, name
