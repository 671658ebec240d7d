"""Input-pipeline throughput on a file dataset (ImageNet-LT / iNat layout): the PIL DataLoader reference beside the
gpu_decode pipeline, input alone and inside the training loop (CE + CMO), measured side by side in one process."""

from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmark.config.catalog import load_dataset
from benchmark.data.prepare import expected_stats, prepare
from benchmark.data.split_lists import LAYOUTS, FileLTData
from benchmark.data.synthetic_jpeg import MANIFEST, SynthSpec, write_synthetic
from benchmark.engine.parts import make_source
from benchmark.engine.runtime import device_name, resolve_device
from benchmark.schema.settings import RunSettings
from benchmark.tools.bench import BenchConfig, time_loop

PIPELINES = ("reference", "gpu_decode")
# The default synthetic sets: on CUDA 7,726 ImageNet-sized JPEGs (about 400 x 350) of 1000 classes (more than 21
# full batches of 256: every timed step is a full batch); on the CPU 122 small ones (seconds in all).
SYNTH_CUDA = {"classes": 1000, "max_per_class": 60, "min_per_class": 5, "test_per_class": 1, "size": 400}
SYNTH_CPU = {"classes": 20, "max_per_class": 30, "min_per_class": 2, "test_per_class": 1, "size": 96}


def file_settings(dataset: str, root: Path, num_classes: int | None, pipeline: str, cfg: BenchConfig,
                  image_size: int, backbone: str, mixer: str = "cmo") -> RunSettings:
    """CE (+ CMO from the first epoch) on the file dataset through `pipeline`, in the device's default execution."""
    return RunSettings.model_validate({
        "seed": cfg.seed, "data": {"name": dataset, "root": str(root), "image_size": image_size,
                                   "num_classes": num_classes},
        "backbone": {"name": backbone}, "method": {"loss": "ce", "rule": "none", "mixer": mixer},
        "mixer": {"start": -1, "end": 0}, "eval": {"test_limit_per_class": 1},
        "train": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "steps_per_epoch": cfg.steps,
                  "warmup_epochs": 0, "device": cfg.device, "workers": cfg.workers, "pipeline": pipeline,
                  "checkpoint_every_s": 1e9}})


def time_input(s: RunSettings, data: FileLTData, steps: int, device: torch.device) -> dict[str, Any]:
    """Images/s of the input pipeline alone: `steps` batches of an instance order produced and moved to the device
    (after one untimed batch that starts workers / threads)."""
    source = make_source(s, data, device)
    bs = s.train.batch_size
    n = len(data.train_y)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).repeat(-(-(steps + 1) * bs // n))
    gen = torch.Generator(device).manual_seed(0)
    it = source.batches(order.to(device), bs, steps + 1, gen)
    next(it)()
    t0 = time.perf_counter()
    for batch in it:
        x, _ = batch()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    return {"name": f"{s.train.pipeline} input only", "pipeline": s.train.pipeline, "images": bs * steps,
            "elapsed_s": elapsed, "images_per_s": bs * steps / elapsed, "ms_per_step": 1000 * elapsed / steps,
            "shape": list(x.shape)}


def run_file_bench(dataset: str, data_root: str | Path | None = None, device: str = "auto", steps: int | None = None,
                   batch_size: int | None = None, workers: int | None = None, image_size: int = 224,
                   backbone: str = "resnet50", train: bool = True, quiet: bool = False) -> dict[str, Any]:
    """Time both pipelines on `data_root` (a prepared ImageNet-LT / iNat copy, real or synthetic; default: a
    synthetic JPEG set written to a temporary folder). Defaults: on CUDA batch 256, 20 steps, 8 workers; on the CPU
    batch 8, 2 steps, image side 64, no DataLoader workers (2 threads read the files of gpu_decode)."""
    if dataset not in LAYOUTS:
        raise ValueError(f"--dataset {dataset!r}: choose {' or '.join(LAYOUTS)}")
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    size = image_size if cuda or image_size != 224 else 64
    cfg = BenchConfig(device=str(dev), batch_size=batch_size or (256 if cuda else 8), steps=steps or (20 if cuda
                      else 2), epochs=2, workers=workers if workers is not None else (8 if cuda else 0), ks=(1,),
                      compile=False)
    tmp = None
    if data_root is None:
        tmp = tempfile.TemporaryDirectory(prefix="ltbench-synth-")
        data_root = Path(tmp.name)
        write_synthetic(SynthSpec(dataset, **(SYNTH_CUDA if cuda else SYNTH_CPU)), data_root)
        prepare(dataset, data_root)
    root = Path(data_root).expanduser()
    synthetic = (root / MANIFEST).is_file()
    stats = expected_stats(dataset, root, "synthetic") if synthetic else None
    num_classes = int(stats["classes"]) if stats else None  # a synthetic set in the layout has its own class count
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    try:
        for pipeline in PIPELINES:
            s = file_settings(dataset, root, num_classes, pipeline, cfg, size, backbone)
            data = load_dataset(s.data)
            jobs = [("input", lambda s=s, data=data: time_input(s, data, cfg.steps, dev))]
            if train:
                jobs.append(("train", lambda s=s, data=data: time_loop(f"{s.train.pipeline} train CE + CMO", cfg,
                                                                        data, [s])))
            for kind, job in jobs:
                try:
                    row = {**job(), "kind": kind, "pipeline": pipeline}
                except Exception as e:  # a row that cannot run here says why
                    row = {"name": f"{pipeline} {kind}", "kind": kind, "pipeline": pipeline,
                           "error": f"{type(e).__name__}: {e}"[:300]}
                rows.append(row)
                if not quiet:
                    print(f"{row['name']}: " + (f"{row['images_per_s']:,.0f} img/s" if "images_per_s" in row
                                                else row["error"]), flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    ratios = {}
    for kind in ("input", "train"):
        ref, fast = (next((r.get("images_per_s") for r in rows if r["kind"] == kind and r["pipeline"] == p), None)
                     for p in PIPELINES)
        if ref and fast:
            ratios[kind] = fast / ref
    return {"device": str(dev), "device_name": device_name(dev), "torch": torch.__version__,
            "python": platform.python_version(), "settings": {**asdict(cfg), "image_size": size,
                                                              "backbone": backbone},
            "dataset": dataset, "data_root": None if tmp is not None else str(root), "synthetic": synthetic
            or tmp is not None, "variants": rows, "ratios_gpu_decode_over_reference": ratios,
            "total_s": time.time() - t0}


def format_file_bench(result: dict[str, Any]) -> str:
    """The rows as plain text lines with the ratios."""
    s = result["settings"]
    lines = [f"lt-bench bench --dataset {result['dataset']}: {result['device_name']} | batch {s['batch_size']}, "
             f"{s['steps']} steps, image {s['image_size']} px, {s['backbone']}, workers {s['workers']} | "
             f"{'synthetic JPEGs' if result['synthetic'] else result['data_root']}"]
    for r in result["variants"]:
        lines.append(f"  {r['name']:<36} " + (f"{r['images_per_s']:>10,.1f} img/s  {r['ms_per_step']:>9.1f} ms/step"
                                              if "images_per_s" in r else r["error"]))
    for kind, ratio in result["ratios_gpu_decode_over_reference"].items():
        lines.append(f"  gpu_decode / reference ({kind}): {ratio:.2f}x")
    return "\n".join(lines)
