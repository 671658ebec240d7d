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


def active() -> bool:
    """True inside a multi-process run (a process group is up)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shard_range(n: int, rank: int, world: int) -> range:
    """Rank `rank`'s contiguous slice of n items: the slices of all ranks are disjoint and cover every item exactly
    once (sizes differ by at most one; unlike DistributedSampler, nothing is padded or dropped)."""
    return range(n * rank // world, n * (rank + 1) // world)


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of a per-rank tensor over all ranks (in place; the tensor itself in an ordinary process)."""
    if active():
        dist.all_reduce(t)
    return t


def sync_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BN running statistics). DDP broadcasts them at the start of each training
    forward, so after the last step each rank holds its own update; rank 0's is the one its record keeps."""
    if active():
        for b in module.buffers():
            dist.broadcast(b, 0)
