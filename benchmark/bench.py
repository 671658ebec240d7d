"""Training throughput: reference-style loop vs. fast single runs vs. packed runs (CIFAR-100-LT, ResNet-32)."""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones.resnet_cifar import ResNetCifar
from benchmark.data.base import CIFAR_MEAN, CIFAR_STD, LTData
from benchmark.data.pipeline import BatchAugment
from benchmark.data.profile import exp_profile
from benchmark.data.samplers import SamplerContext, samplers
from benchmark.methods.mixers import cutmix_pair
from benchmark.packed import PackedResNetCifar
from benchmark.step import bf16_autocast, host_sync_sites
from benchmark.train import device_name

# The workload: CIFAR-100-LT, exponential profile, imbalance ratio 100 (10,847 train images), 200 epochs.
NUM_CLASSES, IMG_MAX, RATIO, IMAGE_SIZE, PAD, EPOCHS = 100, 500, 100.0, 32, 4, 200
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 2e-4
MIX_PROB, MIX_ALPHA = 0.5, 1.0
SUITE_RUNS = 240  # e.g. 80 table rows x 3 seeds
# ResNet-32 (16/32/64, 100 classes) on one 32x32 image: 137.7 MFLOP forward (FlopCounterMode), training ~3x.
TRAIN_FLOPS_PER_IMAGE = 3 * 137_736_704

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x, y_a [K, B], y_b [K, B], lam [K]


# ----------------------------------------------------------------------------------------------- workload
def make_workload(seed: int = 0, test_size: int = 100) -> LTData:
    """CIFAR-100-LT-shaped data (exp profile, ratio 100) with random uint8 pixels."""
    counts = exp_profile(IMG_MAX, NUM_CLASSES, RATIO)
    rng = np.random.default_rng(seed)
    train_y = np.repeat(np.arange(NUM_CLASSES), counts).astype(np.int64)
    train_x = rng.integers(0, 256, (len(train_y), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    test_y = np.arange(test_size, dtype=np.int64) % NUM_CLASSES
    test_x = rng.integers(0, 256, (test_size, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    return LTData(name="bench_cifar100_lt_r100", num_classes=NUM_CLASSES, train_x=train_x, train_y=train_y,
                  test_x=test_x, test_y=test_y, mean=CIFAR_MEAN, std=CIFAR_STD, crop_pad=PAD)


# ------------------------------------------------------------------------------------- device-side data ops
def gather_crop_flip(aug: BatchAugment, idx: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
                     flip: torch.Tensor) -> torch.Tensor:
    """`BatchAugment.apply`'s crop/flip for any index shape [...], without normalising: uint8 [..., H, W, C]."""
    rows = top[..., None] + aug.ar_h
    cols = torch.where(flip[..., None], left[..., None] + (aug.w - 1 - aug.ar_w), left[..., None] + aug.ar_w)
    return aug.padded[idx[..., None, None], rows[..., :, None], cols[..., None, :]]


def cutmix_boxes(lam: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, use: torch.Tensor, d2: int,
                 d3: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference `rand_bbox` for K draws at once, on the device (no host sync).

    Args:
        lam: [K] float64 Beta draws.
        cx: [K] box centres along tensor dim 2 (rows), in [0, d2).
        cy: [K] box centres along tensor dim 3 (columns), in [0, d3).
        use: [K] bool, the per-step "apply CMO" coin; False gives an empty box (plain batch, lam 1).
        d2: image height.
        d3: image width.

    Returns:
        mask [K, d2, d3] (True: foreground pixel) and the area-corrected lam [K] (float32).
    """
    cut = torch.sqrt(1.0 - lam)
    cut_w, cut_h = torch.floor(d2 * cut).long(), torch.floor(d3 * cut).long()
    x1, x2 = (cx - cut_w // 2).clamp(0, d2), (cx + cut_w // 2).clamp(0, d2)
    y1, y2 = (cy - cut_h // 2).clamp(0, d3), (cy + cut_h // 2).clamp(0, d3)
    x2 = torch.where(use, x2, x1)
    rows = torch.arange(d2, device=lam.device)
    cols = torch.arange(d3, device=lam.device)
    in_r = (rows >= x1[:, None]) & (rows < x2[:, None])
    in_c = (cols >= y1[:, None]) & (cols < y2[:, None])
    lam_adj = 1.0 - ((x2 - x1) * (y2 - y1)).float() / (d2 * d3)
    return in_r[:, :, None] & in_c[:, None, :], lam_adj


class DeviceCMOData:
    """K independent CE+CMO batch streams over one device-resident uint8 train split.

    Per model and step: background indices from its own epoch permutation (P), foreground indices from its own
    epoch of Q = (1/n_k) draws (torch.multinomial), crop/flip draws per image, one CutMix box, coin and lam.
    Everything is drawn with a device generator, so a step never waits for the device. Epochs drop the last
    partial batch (static shapes for CUDA graphs).
    """

    def __init__(self, data: LTData, device: torch.device, k: int, batch_size: int, gen: torch.Generator,
                 prob: float = MIX_PROB, alpha: float = MIX_ALPHA) -> None:
        images = torch.from_numpy(np.ascontiguousarray(data.train_x)).to(device)
        self.aug = BatchAugment(images, data.mean, data.std, pad=data.crop_pad)
        self.labels = torch.from_numpy(data.train_y).to(device)
        q = samplers.get("q")(SamplerContext(self.labels, data.class_counts))
        assert q.weights is not None
        self.q_weights = q.weights.float().expand(k, -1).contiguous()
        self.n, self.k, self.b, self.gen, self.prob, self.alpha = len(self.labels), k, batch_size, gen, prob, alpha
        self.steps_per_epoch = self.n // batch_size
        self.step_in_epoch = self.steps_per_epoch
        self.mean = (torch.tensor(data.mean, device=device) * 255).repeat(k)  # [K*C], NHWC order
        self.std = (torch.tensor(data.std, device=device) * 255).repeat(k)
        self.bg = self.fg = torch.empty(0, dtype=torch.long, device=device)

    def _new_epoch(self) -> None:
        dev = self.labels.device
        self.bg = torch.rand(self.k, self.n, generator=self.gen, device=dev).argsort(dim=1)
        self.fg = torch.multinomial(self.q_weights, self.n, replacement=True, generator=self.gen)
        self.step_in_epoch = 0

    def draw_lam(self) -> torch.Tensor:
        """[K] float64 Beta(alpha, alpha) draws (alpha 1: uniform, from the generator)."""
        if self.alpha == 1.0:
            return torch.rand(self.k, generator=self.gen, device=self.labels.device, dtype=torch.float64)
        a = torch.full((self.k,), self.alpha, device=self.labels.device, dtype=torch.float64)
        return torch.distributions.Beta(a, a).sample()

    def next_u8(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of every model: mixed uint8 images [K, B, H, W, C], y_a [K, B], y_b [K, B], lam [K]."""
        if self.step_in_epoch >= self.steps_per_epoch:
            self._new_epoch()
        s, b, k = self.step_in_epoch, self.b, self.k
        self.step_in_epoch += 1
        idx = torch.stack([self.bg[:, s * b:(s + 1) * b], self.fg[:, s * b:(s + 1) * b]])  # [2, K, B]
        top, left, flip = self.aug.draw(2 * k * b, self.gen)
        u8 = gather_crop_flip(self.aug, idx, top.view(2, k, b), left.view(2, k, b), flip.view(2, k, b))
        dev = self.labels.device
        lam = self.draw_lam()
        cx = torch.randint(0, self.aug.h, (k,), generator=self.gen, device=dev)
        cy = torch.randint(0, self.aug.w, (k,), generator=self.gen, device=dev)
        use = torch.rand(k, generator=self.gen, device=dev) < self.prob
        mask, lam_adj = cutmix_boxes(lam, cx, cy, use, self.aug.h, self.aug.w)
        x = torch.where(mask[:, None, :, :, None], u8[1], u8[0])
        return x, self.labels[idx[0]], self.labels[idx[1]], lam_adj

    def to_input(self, u8: torch.Tensor, dtype: torch.dtype = torch.float32,
                 channels_last: bool = True) -> torch.Tensor:
        """[K, B, H, W, C] uint8 -> normalised [B, K*C, H, W] (model j: channels j*C..(j+1)*C)."""
        k, b, h, w, c = u8.shape
        x = u8.permute(1, 2, 3, 0, 4).reshape(b, h, w, k * c)
        x = ((x.float() - self.mean) / self.std).to(dtype).permute(0, 3, 1, 2)  # channels_last strides
        return x if channels_last else x.contiguous()

    def next(self, dtype: torch.dtype = torch.float32, channels_last: bool = True) -> Batch:
        """One training step's inputs: (x [B, K*C, H, W], y_a [K, B], y_b [K, B], lam [K])."""
        u8, ya, yb, lam = self.next_u8()
        return self.to_input(u8, dtype, channels_last), ya, yb, lam


def cmo_loss(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Sum over models of lam * CE(y_a) + (1 - lam) * CE(y_b) (batch means): each model gets its own gradient.

    Args:
        logits: [K, B, C].
        y_a: [K, B] background labels.
        y_b: [K, B] foreground labels.
        lam: [K] area-corrected mixing weights (1 when no box was pasted).

    Returns:
        Scalar loss.
    """
    k, b, c = logits.shape
    flat = logits.float().reshape(k * b, c)
    ce_a = F.cross_entropy(flat, y_a.reshape(-1), reduction="none").view(k, b).mean(1)
    ce_b = F.cross_entropy(flat, y_b.reshape(-1), reduction="none").view(k, b).mean(1)
    return (lam * ce_a + (1.0 - lam) * ce_b).sum()


# ----------------------------------------------------------------------------------------------- helpers
def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def make_sgd(params: Iterable[nn.Parameter], dev: torch.device, prefer_fused: bool = True,
             tensor_lr: bool = False) -> tuple[torch.optim.Optimizer, str]:
    """SGD(momentum 0.9, wd 2e-4): fused (optionally with a Tensor LR, for CUDA graphs) when available."""
    params = list(params)
    kw: dict[str, Any] = {"momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
    if prefer_fused:
        lrs: list[Any] = [torch.tensor(LR, device=dev), LR] if tensor_lr else [LR]
        for lr in lrs:
            try:
                return torch.optim.SGD(params, lr=lr, fused=True, **kw), "fused" + (
                    "+tensor-lr" if isinstance(lr, torch.Tensor) else "")
            except (RuntimeError, TypeError, ValueError):
                continue
    if dev.type == "cuda":
        return torch.optim.SGD(params, lr=LR, foreach=True, **kw), "foreach"
    return torch.optim.SGD(params, lr=LR, **kw), "default"


StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _train_body(fwd: Callable[[torch.Tensor], torch.Tensor], opt: torch.optim.Optimizer,
                amp: Callable[[], AbstractContextManager[Any]], correct: torch.Tensor) -> StepFn:
    def body(x: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        with amp():
            out = fwd(x)
        loss = cmo_loss(out, ya, yb, lam)
        loss.backward()
        opt.step()
        correct.add_((out.detach().argmax(-1) == ya).sum())  # train accuracy kept on the device
        return loss.detach()
    return body


def _eager_step(body: StepFn, opt: torch.optim.Optimizer) -> StepFn:
    def step(x: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        return body(x, ya, yb, lam)
    return step


def _graph_step(body: StepFn, opt: torch.optim.Optimizer, first: Batch, warm_iters: int = 3) -> StepFn:
    """Forward + backward + optimizer step captured in one CUDA graph (PyTorch's whole-network recipe).

    The data pipeline stays eager and copies each batch into the graph's static inputs before a replay.
    """
    static = tuple(t.clone() for t in first)
    eager = _eager_step(body, opt)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warm_iters):  # creates the momentum buffers, runs cuDNN autotuning
            eager(*static)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = body(*static)

    def step(x: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        for s, v in zip(static, (x, ya, yb, lam), strict=True):
            s.copy_(v)
        graph.replay()
        return static_loss
    return step


def _count_host_syncs(fn: Callable[[], Any]) -> int | None:
    """How many synchronising CUDA calls `fn` makes (torch's sync debug mode); None off CUDA."""
    sites = host_sync_sites(fn)
    return None if sites is None else len(sites)


# ------------------------------------------------------------------------------------------------ variants
@dataclass
class BenchConfig:
    """Settings shared by every measured variant."""

    device: torch.device
    batch_size: int
    steps: int
    warmup: int
    workers: int
    amp: bool
    channels_last: bool
    seed: int = 0


class _PILDataset(torch.utils.data.Dataset):
    """uint8 HWC images served as PIL images through torchvision transforms (module level: picklable)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Callable[[Any], torch.Tensor]) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def bench_reference(cfg: BenchConfig, data: LTData) -> dict[str, Any]:
    """Reference-style loop: DataLoader + PIL/torchvision transforms, weighted second loader, numpy CutMix, fp32.

    Two DataLoaders as in the CMO code (`shuffle=True` and `WeightedRandomSampler` with 1/n_k weights, new
    iterators every epoch, last partial batch kept), `cutmix_pair` with the NumPy box, CE, top-1/top-5 and
    `loss.item()` every step, plain SGD, NCHW fp32.
    """
    from torch.utils.data import DataLoader, WeightedRandomSampler

    from benchmark.data.sources import reference_cifar_transforms

    dev = cfg.device
    train_tf, _ = reference_cifar_transforms(data)

    counts = np.asarray(data.class_counts, dtype=np.float64)
    cls_w = 1.0 / np.maximum(counts, 1)  # (empty classes are never drawn)
    cls_w = cls_w / cls_w.sum() * len(counts)
    wsampler = WeightedRandomSampler(torch.from_numpy(cls_w[data.train_y]), len(data.train_y), replacement=True,
                                     generator=torch.Generator().manual_seed(cfg.seed + 1))
    pin = dev.type == "cuda"
    ds = _PILDataset(data.train_x, data.train_y, train_tf)
    train_loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.workers, pin_memory=pin,
                              generator=torch.Generator().manual_seed(cfg.seed))
    weighted_loader = DataLoader(ds, batch_size=cfg.batch_size, sampler=wsampler, num_workers=cfg.workers,
                                 pin_memory=pin)
    torch.manual_seed(cfg.seed)
    model = ResNetCifar(32, NUM_CLASSES).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    crit = nn.CrossEntropyLoss()
    rng = np.random.default_rng(cfg.seed)

    def stream() -> Iterator[tuple[torch.Tensor, ...]]:
        while True:  # epochs: fresh iterators (worker start-up) every epoch, as the reference
            inv = iter(weighted_loader)
            for x, y in train_loader:
                try:
                    x2, y2 = next(inv)
                except StopIteration:
                    inv = iter(weighted_loader)
                    x2, y2 = next(inv)
                yield x, y, x2, y2

    def step(x: torch.Tensor, y: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor) -> int:
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        x2, y2 = x2[:len(y)].to(dev, non_blocking=True), y2[:len(y)].to(dev, non_blocking=True)
        if rng.random() < MIX_PROB:
            m, _ = cutmix_pair(x, y, x2, y2, MIX_ALPHA, rng)
            out = model(m.x)
            loss = crit(out, m.y_a) * m.lam + crit(out, m.y_b) * (1.0 - m.lam)
        else:
            out = model(x)
            loss = crit(out, y)
        top5 = out.topk(5, 1).indices
        _ = (top5 == y[:, None]).float().sum(0).cumsum(0)  # top-1 / top-5 bookkeeping
        _ = loss.item()  # per-step host sync, as the reference's AverageMeter update
        opt.zero_grad()
        loss.backward()
        opt.step()
        return len(y)

    tail = len(data.train_y) % cfg.batch_size
    if tail and dev.type == "cuda":  # cuDNN autotuning of the epoch's last (short) batch: once per run, not timed
        model(torch.randn(tail, 3, IMAGE_SIZE, IMAGE_SIZE, device=dev)).sum().backward()
        opt.zero_grad()
    it = stream()
    try:
        model.train()
        for _ in range(cfg.warmup):
            step(*next(it))
        _sync(dev)
        images, t0 = 0, time.perf_counter()
        for _ in range(cfg.steps):
            images += step(*next(it))
        _sync(dev)
        elapsed = time.perf_counter() - t0
    finally:
        it.close()  # shuts the loader workers down
    return {"images": images, "steps": cfg.steps, "elapsed_s": elapsed, "optimizer": "default",
            "amp": False, "channels_last": False, "workers": cfg.workers}


def bench_fast(cfg: BenchConfig, data: LTData, k: int | None, graph: bool) -> dict[str, Any]:
    """The fast path: device-resident data and CMO, bf16 + channels_last on CUDA, fused SGD, optional CUDA graph.

    Args:
        cfg: shared settings.
        data: the workload.
        k: None for one plain `ResNetCifar`, else K models packed in a `PackedResNetCifar`.
        graph: capture forward + backward + step in a CUDA graph.

    Returns:
        Raw measurements of the variant.
    """
    dev = cfg.device
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    n_models = 1 if k is None else k
    stream = DeviceCMOData(data, dev, n_models, cfg.batch_size, gen)
    model: nn.Module
    if k is None:
        model = ResNetCifar(32, NUM_CLASSES).to(dev)
        plain = model

        def fwd(x: torch.Tensor) -> torch.Tensor:
            return plain(x).unsqueeze(0)
    else:
        model = PackedResNetCifar(k, 32, NUM_CLASSES).to(dev)
        fwd = model.forward_flat
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt, opt_kind = make_sgd(model.parameters(), dev, tensor_lr=graph)
    correct = torch.zeros((), dtype=torch.long, device=dev)
    body = _train_body(fwd, opt, bf16_autocast(dev, cfg.amp), correct)
    in_dtype = torch.bfloat16 if cfg.amp else torch.float32

    def batch() -> Batch:
        return stream.next(in_dtype, cfg.channels_last)

    t0 = time.perf_counter()
    retry_error = None
    if not graph:
        step = _eager_step(body, opt)
    else:
        try:
            step = _graph_step(body, opt, batch())
        except RuntimeError as e:  # retry once with a float LR (the Tensor-LR fused SGD is the newer path)
            if not opt_kind.endswith("tensor-lr"):
                raise
            retry_error = f"{type(e).__name__}: {e}"[:300]
            torch.cuda.synchronize()
            opt, opt_kind = make_sgd(model.parameters(), dev, tensor_lr=False)
            body = _train_body(fwd, opt, bf16_autocast(dev, cfg.amp), correct)
            step = _graph_step(body, opt, batch())
    setup_s = time.perf_counter() - t0
    for _ in range(cfg.warmup):
        step(*batch())
    _sync(dev)
    syncs = _count_host_syncs(lambda: step(*batch())) if dev.type == "cuda" else None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    _sync(dev)
    t0 = time.perf_counter()
    loss = torch.zeros(())
    for _ in range(cfg.steps):
        loss = step(*batch())
    _sync(dev)
    elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {
        "images": cfg.steps * cfg.batch_size * n_models, "steps": cfg.steps, "elapsed_s": elapsed,
        "optimizer": opt_kind, "amp": cfg.amp, "channels_last": cfg.channels_last,
        "final_loss": float(loss), "host_syncs_per_step": syncs,
    }
    if graph:
        out["graph_setup_s"] = setup_s
        if retry_error:
            out["tensor_lr_capture_error"] = retry_error
    if dev.type == "cuda":
        out["max_mem_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def bench_loop(cfg: BenchConfig, data: LTData, k: int | None, compile: bool = False,
               epochs: int = 3) -> dict[str, Any]:
    """The product's own training loop (`train.fit`, or `packed_train.fit_packed` for K runs) on the workload.

    CE + CMO from the first epoch, `cfg.steps` steps per epoch; the time is the loop's measured train time per
    batch (data, mixing, step; evaluation excluded) over the epochs after the first (compilation, capture and
    autotuning happen there: `first_epoch_extra_s` is how much longer it took).
    """
    from benchmark.packed_train import fit_packed
    from benchmark.settings import RunSettings
    from benchmark.train import fit

    s = RunSettings.model_validate({
        "seed": cfg.seed, "method": {"mixer": "cmo"}, "mixer": {"start": -1, "end": 0, "prob": MIX_PROB},
        "train": {"epochs": epochs, "batch_size": cfg.batch_size, "steps_per_epoch": cfg.steps, "warmup_epochs": 0,
                  "device": str(cfg.device), "precision": "bf16" if cfg.amp else "fp32",
                  "channels_last": cfg.channels_last, "compile": compile}})
    if k is None:
        res = [fit(s, data)]
    else:
        out = fit_packed([s.model_copy(update={"seed": cfg.seed + j}) for j in range(k)], data)
        res = [r for r in out if not isinstance(r, Exception)]
        if len(res) != k:
            raise RuntimeError(f"packed loop failed: {[r for r in out if isinstance(r, Exception)][0]}")
    curve = res[0].curve[1:] or res[0].curve
    per_batch = sum(r["train/time_per_batch_s"] for r in curve) / len(curve)
    runs = 1 if k is None else k
    extra = res[0].curve[0]["train/time_per_batch_s"] * cfg.steps - per_batch * cfg.steps
    return {"images": cfg.batch_size * runs * cfg.steps * len(curve), "steps": cfg.steps * len(curve),
            "elapsed_s": per_batch * cfg.steps * len(curve), "first_epoch_extra_s": extra, **res[0].execution,
            "amp": cfg.amp, "channels_last": cfg.channels_last, "loop": "train.fit" if k is None else "fit_packed"}


# ------------------------------------------------------------------------------------------------- runner
def _derive(row: dict[str, Any], ref_ips: float | None, suite_runs: int, n_train: int) -> None:
    ips = row.get("images_per_s")
    if not ips:
        return
    runs = row["runs"]
    row["ratio"] = ips / ref_ips if ref_ips else None
    row["min_per_run"] = EPOCHS * n_train / ips / 60  # effective: the aggregate throughput spread over the runs
    row["min_per_run_wall"] = EPOCHS * n_train * runs / ips / 60  # until a run (its whole pack) finishes
    row["suite_hours"] = math.ceil(suite_runs / runs) * row["min_per_run_wall"] / 60
    row["tflops"] = ips * TRAIN_FLOPS_PER_IMAGE / 1e12


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result["settings"]
    table = Table(title=f"lt-bench bench: {result['device_name']} | torch {result['torch']} | batch "
                        f"{s['batch_size']}, {s['steps']} steps (+{s['warmup']} warm-up)")
    for col in ("variant", "runs", "img/s", "ms/step", "x ref", "min/run", "min/run wall",
                f"suite h ({s['suite_runs']} runs)", "notes"):
        table.add_column(col, justify="left" if col in ("variant", "notes") else "right")
    for r in result["variants"]:
        if not r.get("images_per_s"):
            table.add_row(r["name"], str(r["runs"]), "-", "-", "-", "-", "-", "-", str(r.get("error", ""))[:80])
            continue
        notes = [r.get("optimizer", "")]
        if r.get("amp"):
            notes.append("bf16")
        if r.get("channels_last"):
            notes.append("NHWC")
        if r.get("host_syncs_per_step") is not None:
            notes.append(f"syncs/step {r['host_syncs_per_step']}")
        if r.get("cuda_graph") is True:
            notes.append("graph")
        if r.get("first_epoch_extra_s") is not None:
            notes.append(f"1st epoch +{r['first_epoch_extra_s']:.0f}s")
        notes += [r[k][:40] for k in ("graph_fallback", "compile_fallback") if r.get(k)]
        ratio = r.get("ratio")
        table.add_row(r["name"], str(r["runs"]), f"{r['images_per_s']:,.0f}", f"{r['ms_per_step']:.2f}",
                      f"{ratio:.2f}" if ratio else "-", f"{r['min_per_run']:.2f}", f"{r['min_per_run_wall']:.2f}",
                      f"{r['suite_hours']:.2f}", ", ".join(n for n in notes if n))
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # logs and captured output: do not wrap the table to 80 columns
    console.print(table)
    console.print(f"workload: {result['workload']['n_train']} images x {EPOCHS} epochs per run, train only "
                  "(no per-epoch eval); min/run = 200-epoch time per run at the aggregate throughput.")


def run_bench(device: str = "cpu", ks: Sequence[int] = (1, 4, 8, 16), steps: int | None = None,
              warmup: int | None = None, batch_size: int | None = None, json_out: bool | str | Path = False,
              workers: int | None = None, graph: bool | None = None, amp: bool | None = None,
              channels_last: bool | None = None, suite_runs: int = SUITE_RUNS, seed: int = 0,
              threads: int | None = None, quiet: bool = False, compile: bool | None = None) -> dict[str, Any]:
    """Measure training images/s of the reference-style loop, the fast single-run path and packed runs.

    All variants run in this process, one after another, on one device: (a) `reference`, (b) `fast` (eager)
    and on CUDA `fast+graph`, (c) `packed K=k` (eager) for each k and on CUDA `packed K=k +graph`, (d) the
    product's own loop: `loop` (train.fit with the run's execution settings) and `loop packed K=max(ks)`
    (fit_packed), and on CUDA the same with torch.compile. Graph variants run last, so a failed capture cannot
    disturb the eager ones; a failing variant reports its error.

    Args:
        device: 'cpu', 'cuda', 'cuda:N' or 'auto'.
        ks: pack sizes for the packed variants.
        steps: measured steps per variant (default 200 on CUDA, 3 on CPU).
        warmup: un-timed steps before each measurement (default 20 on CUDA, 1 on CPU).
        batch_size: per-model batch (default 128 on CUDA, 16 on CPU so a CPU run takes seconds).
        json_out: True prints the result as JSON; a path writes it there.
        workers: DataLoader workers of the reference loop (default 4 on CUDA as the reference's `-j 4`, 0 on CPU).
        graph: add the CUDA-graph variants (default: on CUDA).
        amp: bf16 autocast in the fast variants (default: on CUDA).
        channels_last: channels_last model and inputs in the fast variants (default: on CUDA).
        suite_runs: runs in a suite for the projection (default 240 = 80 rows x 3 seeds).
        seed: seed of data, models and draws.
        threads: torch intra-op threads while benchmarking (restored afterwards); None leaves them.
        quiet: no table.
        compile: add the product loop with torch.compile (default: on CUDA; compiling takes minutes on a CPU).

    Returns:
        {'device', 'device_name', 'torch', 'cuda', 'cudnn', 'settings', 'workload', 'variants': [row, ...],
        'summary'}; each row has name, runs, images_per_s (aggregate), ms_per_step, ratio (to `reference`),
        min_per_run, min_per_run_wall, suite_hours, tflops, and the variant's settings (or an error).
    """
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    cuda = dev.type == "cuda"
    graph = cuda if graph is None else graph and cuda
    compile = cuda if compile is None else compile
    cfg = BenchConfig(
        device=dev, batch_size=batch_size or (128 if cuda else 16), steps=steps or (200 if cuda else 3),
        warmup=warmup if warmup is not None else (20 if cuda else 1),
        workers=workers if workers is not None else (4 if cuda else 0),
        amp=cuda if amp is None else amp, channels_last=cuda if channels_last is None else channels_last, seed=seed)
    old_threads, old_bench = torch.get_num_threads(), torch.backends.cudnn.benchmark
    if threads:
        torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = True
    t_start = time.perf_counter()
    data = make_workload(seed)
    plan: list[tuple[str, int, Callable[[], dict[str, Any]]]] = [
        ("reference", 1, lambda: bench_reference(cfg, data)),
        ("fast", 1, lambda: bench_fast(cfg, data, None, False)),
    ]
    plan += [(f"packed K={k}", k, lambda k=k: bench_fast(cfg, data, k, False)) for k in ks]
    plan += [("loop", 1, lambda: bench_loop(cfg, data, None)),
             (f"loop packed K={max(ks)}", max(ks), lambda: bench_loop(cfg, data, max(ks)))]
    if compile:
        plan += [("loop+compile", 1, lambda: bench_loop(cfg, data, None, compile=True)),
                 (f"loop packed K={max(ks)}+compile", max(ks), lambda: bench_loop(cfg, data, max(ks), compile=True))]
    if graph:
        plan.append(("fast+graph", 1, lambda: bench_fast(cfg, data, None, True)))
        plan += [(f"packed K={k}+graph", k, lambda k=k: bench_fast(cfg, data, k, True)) for k in ks]
    rows: list[dict[str, Any]] = []
    try:
        for name, runs, fn in plan:
            row: dict[str, Any] = {"name": name, "runs": runs}
            try:
                row.update(fn())
                row["images_per_s"] = row["images"] / row["elapsed_s"]
                row["ms_per_step"] = 1000 * row["elapsed_s"] / row["steps"]
            except Exception as e:  # one failing variant must not lose the others
                row["error"] = f"{type(e).__name__}: {e}"[:500]
            rows.append(row)
            if cuda:
                torch.cuda.empty_cache()
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.cudnn.benchmark = old_bench
    ref_ips = rows[0].get("images_per_s")
    for row in rows:
        _derive(row, ref_ips, suite_runs, len(data.train_y))

    def best(kind: str) -> dict[str, Any] | None:  # kind: the name up to ' K=' / '+graph'
        ok = [r for r in rows if r["name"].split(" K=")[0].split("+")[0] == kind and r.get("ratio")]
        return max(ok, key=lambda r: r["ratio"]) if ok else None

    b1, bk, loop1, loopk = best("fast"), best("packed"), best("loop"), best("loop packed")
    result: dict[str, Any] = {
        "device": str(dev), "device_name": device_name(dev), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None, "python": platform.python_version(),
        "settings": {"batch_size": cfg.batch_size, "steps": cfg.steps, "warmup": cfg.warmup, "workers": cfg.workers,
                     "amp": cfg.amp, "channels_last": cfg.channels_last, "graph": graph, "compile": compile,
                     "ks": list(ks), "suite_runs": suite_runs, "seed": seed, "threads": threads or old_threads,
                     "lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY, "mix_prob": MIX_PROB,
                     "mix_alpha": MIX_ALPHA},
        "workload": {"dataset": "CIFAR-100-LT shape (exp, r=100), random pixels", "n_train": len(data.train_y),
                     "num_classes": NUM_CLASSES, "image_size": IMAGE_SIZE, "epochs": EPOCHS, "model": "resnet32_cifar",
                     "train_flops_per_image": TRAIN_FLOPS_PER_IMAGE},
        "variants": rows,
        "summary": {"reference_images_per_s": ref_ips,
                    "best_single": None if b1 is None else {"name": b1["name"], "ratio": b1["ratio"]},
                    "best_packed": None if bk is None else {"name": bk["name"], "ratio": bk["ratio"]},
                    "loop_single": None if loop1 is None else {"name": loop1["name"], "ratio": loop1["ratio"]},
                    "loop_packed": None if loopk is None else {"name": loopk["name"], "ratio": loopk["ratio"]}},
        "total_s": time.perf_counter() - t_start,
    }
    if not quiet:
        _print_table(result)
    if json_out is True:
        print(json.dumps(result, indent=1, default=str))
    elif json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=1, default=str))
    return result


def bench_main(device: str = "auto", json_out: str | Path | None = None, ks: str | Sequence[int] = "1,4,8,16",
               steps: int | None = None, warmup: int | None = None, batch_size: int | None = None,
               graph: bool | None = None, compile: bool | None = None) -> dict[str, Any]:
    """CLI entry of `lt-bench bench`: parse the pack sizes ('1,4,8,16') and run `run_bench`.

    Args:
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        json_out: where to write the JSON result (None: table only).
        ks: pack sizes, comma-separated or a sequence.
        steps: measured steps per variant (None: device default).
        warmup: warm-up steps per variant (None: device default).
        batch_size: per-model batch (None: 128 on CUDA, 16 on CPU).
        graph: CUDA-graph variants (None: on CUDA).
        compile: torch.compile variants of the product loop (None: on CUDA).

    Returns:
        The `run_bench` result.
    """
    k_list = [int(v) for v in ks.split(",") if v.strip()] if isinstance(ks, str) else [int(v) for v in ks]
    return run_bench(device, tuple(k_list), steps, warmup, batch_size, json_out or False, graph=graph,
                     compile=compile)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m benchmark.bench --device cuda --json out.json`."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="auto")
    p.add_argument("--ks", default="1,4,8,16")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--no-graph", action="store_true")
    a = p.parse_args(argv)
    bench_main(a.device, a.json, a.ks, a.steps, a.warmup, a.batch_size, False if a.no_graph else None)


if __name__ == "__main__":
    main()
