"""Training throughput of the product's own loop (a run alone, packs of K, a heterogeneous pack, with and without
torch.compile) beside the same loop in the reference configuration, measured side by side in one process."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data.base import CIFAR_MEAN, CIFAR_STD, LTData
from benchmark.data.profile import exp_profile
from benchmark.engine.loop import Run, train_pack
from benchmark.engine.runtime import device_name, resolve_device
from benchmark.run.profiles import save_profile
from benchmark.schema.settings import RunSettings

# The workload: CIFAR-100-LT, exponential profile, imbalance ratio 100 (10,847 train images), 200 epochs.
NUM_CLASSES, IMG_MAX, RATIO, IMAGE_SIZE, PAD, EPOCHS = 100, 500, 100.0, 32, 4, 200
SUITE_RUNS = 210  # distinct CIFAR runs of the paper's tables (tables 2, 3, 9-14, fig3; `run suite --dry-run`)
# ResNet-32 (16/32/64, 100 classes) on one 32x32 image: 137.7 MFLOP forward (FlopCounterMode), training ~3x.
TRAIN_FLOPS_PER_IMAGE = 3 * 137_736_704
LOOP = "benchmark.engine.loop.train_pack"  # the product function every row times

# The heterogeneous pack: (loss, rule, mixer, backbone) of CE, LDAM-DRW, BS and RIDE, each plain, + CMO, + Remix.
METHODS = [(loss, rule, mixer, bb) for loss, rule, bb in (("ce", "none", "resnet32_cifar"),
                                                           ("ldam", "drw", "resnet32_cifar"),
                                                           ("balanced_softmax", "none", "resnet32_cifar"),
                                                           ("ride", "drw", "ride_resnet32"))
           for mixer in ("none", "cmo", "remix")]


@dataclass(frozen=True)
class BenchConfig:
    """One bench run's settings (recorded in its JSON)."""

    device: str
    batch_size: int
    steps: int  # steps per timed epoch
    epochs: int  # the first is not timed (autotuning, graph capture, compilation)
    workers: int
    ks: tuple[int, ...]
    compile: bool
    seed: int = 0


def make_workload(seed: int = 0, test_size: int = 100) -> LTData:
    """CIFAR-100-LT-shaped data (exp profile, ratio 100) with random uint8 pixels."""
    counts = exp_profile(IMG_MAX, NUM_CLASSES, RATIO)
    rng = np.random.default_rng(seed)
    train_y = np.repeat(np.arange(NUM_CLASSES), counts).astype(np.int64)
    train_x = rng.integers(0, 256, (len(train_y), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    test_y = np.arange(test_size, dtype=np.int64) % NUM_CLASSES
    test_x = rng.integers(0, 256, (test_size, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    return LTData(name="bench_cifar100_lt_r100", num_classes=NUM_CLASSES, train_x=train_x, train_y=train_y,
                  test_x=test_x, test_y=test_y, mean=CIFAR_MEAN, std=CIFAR_STD, crop_pad=PAD, reweight_epoch=1)


def run_settings(cfg: BenchConfig, seed: int, loss: str = "ce", rule: str = "none", mixer: str = "cmo",
                 backbone: str = "resnet32_cifar", reference: bool = False, compile: bool = False) -> RunSettings:
    """A run of the workload: the method from the first epoch on; `reference` is the official code's configuration
    (DataLoader workers with per-image CPU transforms, fp32, eager)."""
    execution: dict[str, Any] = {"pipeline": "reference", "workers": cfg.workers, "precision": "fp32",
                                 "channels_last": False, "cuda_graph": False} if reference else {"compile": compile}
    return RunSettings.model_validate({
        "seed": seed, "method": {"loss": loss, "rule": rule, "mixer": mixer, "reweight_epoch": 1},
        "backbone": {"name": backbone, "num_experts": 3 if backbone.startswith("ride") else None},
        "mixer": {"start": -1, "end": 0}, "eval": {"test_limit_per_class": 1},
        "train": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "steps_per_epoch": cfg.steps,
                  "warmup_epochs": 0, "device": cfg.device, "checkpoint_every_s": 1e9, **execution}})


def time_loop(name: str, cfg: BenchConfig, data: LTData, runs: list[RunSettings]) -> dict[str, Any]:
    """Train `runs` as one pack with the product loop; images/s from its own train time per epoch (data, mixing,
    step; evaluation excluded) over the epochs after the first (`first_epoch_extra_s`: how much longer that took)."""
    t0 = time.time()
    out = train_pack([Run(s, data, f"bench-{i}") for i, s in enumerate(runs)])
    errors = [r for r in out if isinstance(r, Exception)]
    if errors:
        raise RuntimeError(f"{type(errors[0]).__name__}: {errors[0]}")
    res = out[0]
    assert not isinstance(res, Exception)
    timed = res.curve[1:] or res.curve
    epoch_s = sum(r["train/time_per_batch_s"] for r in timed) / len(timed) * cfg.steps
    k = len(runs)
    images = cfg.batch_size * cfg.steps * k
    return {**res.execution, "name": name, "function": LOOP, "k": k, "runs": k, "images": images * len(timed),
            "steps": cfg.steps * len(timed), "elapsed_s": epoch_s * len(timed), "images_per_s": images / epoch_s,
            "ms_per_step": 1000 * epoch_s / cfg.steps, "wall_s": time.time() - t0,
            "first_epoch_extra_s": res.curve[0]["train/time_per_batch_s"] * cfg.steps - epoch_s,
            "members": sorted({f"{s.method.loss}/{s.method.rule}/{s.method.mixer}" for s in runs})}


def variants(cfg: BenchConfig) -> list[tuple[str, list[RunSettings]]]:
    """Every timed row: the reference configuration, the loop alone, packs of K (CE + CMO, seeds differ) and the
    heterogeneous pack; with compile also the loop alone and the largest packs under torch.compile."""
    kmax = max(cfg.ks)
    hetero = [run_settings(cfg, cfg.seed + j, *METHODS[j % len(METHODS)]) for j in range(kmax)]
    rows = [("reference", [run_settings(cfg, cfg.seed, reference=True)]),
            ("loop", [run_settings(cfg, cfg.seed)])]
    rows += [(f"loop packed K={k}", [run_settings(cfg, cfg.seed + j) for j in range(k)]) for k in cfg.ks if k > 1]
    rows.append((f"loop hetero K={kmax}", hetero))
    if cfg.compile:
        rows.append(("loop+compile", [run_settings(cfg, cfg.seed, compile=True)]))
        rows.append((f"loop packed K={kmax}+compile", [run_settings(cfg, cfg.seed + j, compile=True)
                                                       for j in range(kmax)]))
        rows.append((f"loop hetero K={kmax}+compile", [s.model_copy(update={"train": s.train.model_copy(
            update={"compile": True})}) for s in hetero]))
    return rows


def derive(row: dict[str, Any], ref_ips: float | None, n_train: int) -> None:
    """Ratio to the reference row, 200-epoch minutes per run and hours for the paper's distinct CIFAR runs."""
    ips, k = row["images_per_s"], row["k"]
    row["ratio"] = ips / ref_ips if ref_ips else None
    row["min_per_run"] = EPOCHS * n_train / ips / 60  # effective: the aggregate throughput spread over the runs
    row["min_per_run_wall"] = EPOCHS * n_train * k / ips / 60  # until a run (its whole pack) finishes
    row["suite_hours"] = math.ceil(SUITE_RUNS / k) * row["min_per_run_wall"] / 60
    row["tflops"] = ips * TRAIN_FLOPS_PER_IMAGE / 1e12


def run_bench(device: str = "auto", ks: Sequence[int] = (1, 4, 8, 16), steps: int | None = None,
              epochs: int | None = None, batch_size: int | None = None, workers: int | None = None,
              compile: bool | None = None, seed: int = 0, quiet: bool = False) -> dict[str, Any]:
    """Time every variant in this process, one after another, on one device; a failing variant reports its error.

    Defaults: on CUDA full CIFAR-100-LT epochs (85 steps of 128), 3 epochs (2 timed), 4 reference workers and the
    compile rows; on the CPU 2 steps of 16, 2 epochs, no workers, no compile (seconds in all).
    """
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    data = make_workload(seed)
    n_train = len(data.train_y)
    bs = batch_size or (128 if cuda else 16)
    cfg = BenchConfig(device=str(dev), batch_size=bs, steps=steps or (math.ceil(n_train / bs) if cuda else 2),
                      epochs=epochs or (3 if cuda else 2), workers=workers if workers is not None else (4 if cuda
                                                                                                        else 0),
                      ks=tuple(sorted(set(ks))), compile=cuda if compile is None else compile, seed=seed)
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    for name, runs in variants(cfg):
        try:
            rows.append(time_loop(name, cfg, data, runs))
        except Exception as e:  # a variant that cannot run here (e.g. compile without a compiler) says why
            rows.append({"name": name, "function": LOOP, "k": len(runs), "runs": len(runs),
                         "error": f"{type(e).__name__}: {e}"[:300]})
        if not quiet:
            r = rows[-1]
            print(f"{name}: " + (f"{r['images_per_s']:,.0f} img/s" if "images_per_s" in r else r["error"]),
                  flush=True)
    ref = next((r.get("images_per_s") for r in rows if r["name"] == "reference"), None)
    for r in rows:
        if "images_per_s" in r:
            derive(r, ref, n_train)
    return {"device": str(dev), "device_name": device_name(dev), "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(), "settings": asdict(cfg),
            "workload": {"dataset": "CIFAR-100-LT shape (exp, r=100), random pixels", "n_train": n_train,
                         "num_classes": NUM_CLASSES, "image_size": IMAGE_SIZE, "epochs": EPOCHS,
                         "model": "resnet32_cifar (ride_resnet32 for RIDE)",
                         "train_flops_per_image": TRAIN_FLOPS_PER_IMAGE},
            "variants": rows, "summary": summarize(rows, ref), "total_s": time.time() - t0}


def summarize(rows: list[dict[str, Any]], ref: float | None) -> dict[str, Any]:
    """The reference's images/s and the fastest row of each kind with its ratio."""
    def best(kind: str) -> dict[str, Any] | None:
        cands = [r for r in rows if r["name"].removesuffix("+compile").split(" K=")[0] == kind and "images_per_s" in r]
        top = max(cands, key=lambda r: r["images_per_s"], default=None)
        return {"name": top["name"], "images_per_s": top["images_per_s"], "ratio": top["ratio"]} if top else None

    return {"reference_images_per_s": ref, "loop_single": best("loop"), "loop_packed": best("loop packed"),
            "loop_hetero": best("loop hetero")}


def print_table(result: dict[str, Any]) -> None:
    """The rows as a table: images/s, ratio to the reference, minutes per 200-epoch run, hours for the paper."""
    from rich.console import Console
    from rich.table import Table

    s = result["settings"]
    table = Table(title=f"lt-bench bench: {result['device_name']} | torch {result['torch']} | batch "
                        f"{s['batch_size']}, {s['steps']} steps x {s['epochs'] - 1} timed epochs")
    for col in ("variant", "K", "img/s", "ms/step", "x ref", "min/run", f"h for {SUITE_RUNS} runs", "notes"):
        table.add_column(col, justify="left" if col in ("variant", "notes") else "right")
    for r in result["variants"]:
        if "images_per_s" not in r:
            table.add_row(r["name"], str(r["k"]), "-", "-", "-", "-", "-", r["error"][:80])
            continue
        notes = [r.get("precision", ""), "NHWC" if r.get("channels_last") else "",
                 "graph" if r.get("cuda_graph") else "", f"1st epoch +{r['first_epoch_extra_s']:.1f}s"]
        notes += [str(r[k])[:40] for k in ("graph_fallback", "compile_fallback", "note") if r.get(k)]
        table.add_row(r["name"], str(r["k"]), f"{r['images_per_s']:,.0f}", f"{r['ms_per_step']:.2f}",
                      f"{r['ratio']:.2f}" if r.get("ratio") else "-", f"{r['min_per_run']:.2f}",
                      f"{r['suite_hours']:.2f}", ", ".join(n for n in notes if n))
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # logs and captured output: do not wrap the table to 80 columns
    console.print(table)
    console.print(f"every row times {LOOP}; workload {result['workload']['n_train']} images x {EPOCHS} epochs per "
                  "run; min/run = one 200-epoch run at the row's aggregate throughput.", highlight=False)


def bench_main(device: str = "auto", json_out: str | Path | None = None, ks: str | Sequence[int] = "1,4,8,16",
               steps: int | None = None, compile: bool | None = None) -> dict[str, Any]:
    """The `lt-bench bench` command: run, print the table, write the JSON where asked."""
    import json

    sizes = [int(k) for k in ks.split(",") if k.strip()] if isinstance(ks, str) else list(ks)
    if not sizes or any(k < 1 for k in sizes):
        raise ValueError(f"--ks {ks!r}: give pack sizes >= 1, e.g. 1,4,8,16")
    result = run_bench(device=device, ks=sizes, steps=steps, compile=compile)
    print_table(result)
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=1, default=str))
    if any("images_per_s" in r for r in result["variants"]):
        print(f"throughput profile for `run suite --dry-run`: {save_profile(result)}")
    return result
