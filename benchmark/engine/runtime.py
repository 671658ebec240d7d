"""Where and how long a run trains: device choice and naming, the stop request (SIGTERM), the loop's exceptions."""

from __future__ import annotations

import signal
import threading

import torch


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


_STOP = threading.Event()
_SIGNAL = [int(signal.SIGTERM)]  # the signal of the last stop request


class Preempted(Exception):
    """A stop was requested (SIGTERM, e.g. Slurm pre-emption, or SIGINT); the run resumes from its last checkpoint.
    `signum` is the requesting signal (the last one requested unless given)."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = int(signum if signum is not None else _SIGNAL[0])


def request_stop(signum: int = signal.SIGTERM) -> None:
    """Ask the running loop to stop (signal-handler safe); `signum` says which signal asked."""
    _SIGNAL[0] = int(signum)
    _STOP.set()


def stop_requested() -> bool:
    """True once after request_stop(): the loop that asks stops."""
    if _STOP.is_set():
        _STOP.clear()
        return True
    return False


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU and its thread count (stored in records and bench results)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
