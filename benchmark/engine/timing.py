"""Where a training batch's time goes: waiting for the input pipeline vs the synchronised device step (Table 16)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from benchmark.schema.settings import RunSettings

TIME_EVERY = 50  # one step in this many is timed between two device synchronisations (the others run unsynchronised)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(i: int, steps: int) -> bool:
    """Whether step i of an epoch of `steps` has its device time measured: every TIME_EVERY-th step, never the
    (possibly short) last one unless the epoch has a single step; at least one step per epoch."""
    if steps == 1:
        return True
    every = min(TIME_EVERY, steps - 1)
    return i < steps - 1 and i % every == every - 1


class EpochClock:
    """One epoch's timing. Data wait: host time spent getting the next batch (blocked on DataLoader workers, the
    copy to the device, building the batch), every step. Step time: forward + backward + optimiser of sampled steps,
    between two device synchronisations (the queue drained before, the step's kernels finished after)."""

    def __init__(self, steps: int, device: torch.device) -> None:
        self.steps, self.device = steps, device
        self.wait_s, self.step_s, self.samples = 0.0, 0.0, 0

    @contextmanager
    def fetching(self) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.wait_s += time.perf_counter() - t

    @contextmanager
    def stepping(self, i: int) -> Iterator[None]:
        if not timed_step(i, self.steps):
            yield
            return
        synchronize(self.device)
        t = time.perf_counter()
        yield
        synchronize(self.device)
        self.step_s += time.perf_counter() - t
        self.samples += 1

    def row(self) -> dict[str, float | int]:
        """The epoch's per-batch figures for its curve row."""
        return {"train/data_wait_s_per_batch": self.wait_s / self.steps,
                "train/step_s_per_batch": self.step_s / max(self.samples, 1), "train/step_samples": self.samples}


def timing_window(curve: list[dict[str, Any]], s: RunSettings) -> list[dict[str, Any]]:
    """The epochs timings are averaged over: those where CMO would be active (the same window for every row, so CE
    and CE + CMO compare like for like, Table 16); without such epochs, every epoch but the first."""
    e = s.train.epochs
    window = [r for r in curve if s.mixer.start < r["epoch"] < e - s.mixer.end]
    return window or curve[1:] or curve


def time_per_batch(curve: list[dict[str, Any]], s: RunSettings) -> float:
    """Mean wall seconds per training batch (data wait + forward / backward / step) over the timing window."""
    rows = timing_window(curve, s)
    return sum(r["train/time_per_batch_s"] for r in rows) / len(rows)


def timing_summary(curve: list[dict[str, Any]], s: RunSettings, steps: int) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, record timing): mean wall, data-wait and step seconds per batch over the timing window, and how they
    were measured. Epochs are weighted equally (each has `steps` batches)."""
    rows = [r for r in timing_window(curve, s) if "train/data_wait_s_per_batch" in r]
    metrics = {"time/batch_s": time_per_batch(curve, s)}
    if not rows:  # a curve from before the loop timed its parts (resumed from an old checkpoint)
        return metrics, {}
    samples = sum(r["train/step_samples"] for r in rows)
    wait = sum(r["train/data_wait_s_per_batch"] for r in rows) / len(rows)
    step = sum(r["train/step_s_per_batch"] * r["train/step_samples"] for r in rows) / max(samples, 1)
    metrics.update({"time/data_wait_s": wait, "time/step_s": step})
    return metrics, {"batch_s_per_batch": metrics["time/batch_s"], "data_wait_s_per_batch": wait,
                     "step_s_per_batch": step, "batches": steps * len(rows), "step_samples": samples,
                     "epochs": [r["epoch"] for r in rows], "batch_size": s.train.batch_size,
                     "method": f"data wait: host time getting each batch (every batch); step: forward + backward + "
                               f"optimiser between device synchronisations (1 step in {TIME_EVERY}); "
                               f"batch: wall time per batch"}
