"""Where a training batch's time goes: waiting for the input pipeline vs the device step (Table 16)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from benchmark.schema.settings import RunSettings


class EpochClock:
    """One epoch's timing, every step, without a host synchronisation. Data wait: host time spent getting the next
    batch (blocked on DataLoader workers or the copy to the device, building and mixing the batch). Step time:
    forward + backward + optimiser; on CUDA the device time between two events recorded around the step on its
    stream (read after the epoch's loss read-out has waited for the stream), elsewhere the host time of the step."""

    def __init__(self, steps: int, device: torch.device) -> None:
        self.steps, self.device = steps, device
        self.wait_s, self.step_s, self.samples = 0.0, 0.0, 0
        self.events: list[tuple[Any, Any]] = []

    @contextmanager
    def fetching(self) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.wait_s += time.perf_counter() - t

    @contextmanager
    def stepping(self) -> Iterator[None]:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.events.append((start, end))
            return
        t = time.perf_counter()
        yield
        self.step_s += time.perf_counter() - t
        self.samples += 1

    def row(self) -> dict[str, float | int]:
        """The epoch's per-batch figures for its curve row (call after the epoch's work has finished on the device;
        waits for it otherwise)."""
        if self.events:
            last = self.events[-1][1]
            if not last.query():
                last.synchronize()
            self.step_s += sum(a.elapsed_time(b) for a, b in self.events) / 1000.0
            self.samples += len(self.events)
            self.events = []
        return {"train/time_data_wait_per_batch_s": self.wait_s / self.steps,
                "train/time_step_per_batch_s": self.step_s / max(self.samples, 1),
                "train/time_steps_timed": self.samples}


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
    rows = [r for r in timing_window(curve, s) if "train/time_data_wait_per_batch_s" in r]
    metrics = {"time/batch_s": time_per_batch(curve, s)}
    if not rows:  # a curve from before the loop timed its parts (resumed from an old checkpoint)
        return metrics, {}
    samples = sum(r["train/time_steps_timed"] for r in rows)
    wait = sum(r["train/time_data_wait_per_batch_s"] for r in rows) / len(rows)
    step = sum(r["train/time_step_per_batch_s"] * r["train/time_steps_timed"] for r in rows) / max(samples, 1)
    metrics.update({"time/data_wait_s": wait, "time/step_s": step})
    return metrics, {"batch_s_per_batch": metrics["time/batch_s"], "data_wait_s_per_batch": wait,
                     "step_s_per_batch": step, "batches": steps * len(rows), "step_samples": samples,
                     "epochs": [r["epoch"] for r in rows], "batch_size": s.train.batch_size,
                     "method": "every batch; data wait: host time getting the batch; step: forward + backward + "
                               "optimiser (CUDA: device time between events around the step; CPU: host time); "
                               "batch: wall time of the epoch's training / batches"}
