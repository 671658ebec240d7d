"""One run over several processes (torchrun / Slurm tasks): rank discovery, process group, reductions."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def rank_world() -> tuple[int, int]:
    """(rank, world size) from the torchrun / submitit environment; (0, 1) for an ordinary process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> tuple[torch.device, int, int]:
    """Join the process group when launched with WORLD_SIZE > 1; each rank gets its own GPU (NCCL) or the CPU
    (gloo). Returns (device, rank, world)."""
    rank, world = rank_world()
    if world == 1:
        return device, 0, 1
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0")) % max(torch.cuda.device_count(), 1)
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


def mean(value: float, device: torch.device) -> float:
    """The mean of a per-rank value over all ranks (the value itself in an ordinary process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()
