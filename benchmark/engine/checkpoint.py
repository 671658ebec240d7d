"""Per-epoch training checkpoints: the whole loop state, written atomically with a digest, loaded with weights_only."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.schema.files import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this run (another run id, or unreadable)."""


class DamagedFileError(CheckpointError):
    """A checkpoint or weights file whose content no longer matches the digest written with it."""


# A sealed file: this header line (magic, sha256 of the body in hex, newline), then the torch.save bytes. Files
# without the header (written before digests existed) load as plain torch files.
SEAL_MAGIC = b"LTBENCH-SHA256 "
_SEAL_LEN = len(SEAL_MAGIC) + 64 + 1


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to a temp file in the same folder, fsync, then rename over `path`: never a partial file; an error
    that names no file names the target."""
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), fsync=True)
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def save_sealed(obj: Any, path: Path) -> None:
    """torch.save `obj` behind a sha256 header line, atomically (digest and content land in one rename)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    body = buf.getvalue()
    write_atomic(path, SEAL_MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def load_sealed(path: Path, what: str = "checkpoint") -> Any:
    """torch.load (weights_only) a sealed file after checking its digest; a mismatch is a DamagedFileError saying
    which file and what to do. Unsealed (older) files load as they are."""
    raw = path.read_bytes()
    body = raw
    if raw.startswith(SEAL_MAGIC):
        digest, body = raw[len(SEAL_MAGIC):_SEAL_LEN - 1], raw[_SEAL_LEN:]
        if hashlib.sha256(body).hexdigest().encode() != digest:
            raise DamagedFileError(f"{path}: damaged {what} (its content does not match the digest written with it); "
                                   f"delete it or rerun with --force to train the run from scratch")
    return torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)


@dataclass
class TrainState:
    """Loop bookkeeping that must survive a restart (model and optimiser travel separately)."""

    epoch: int = 0  # next epoch to train
    best: dict[str, Any] = field(default_factory=lambda: {"acc/all": -1.0})
    best_epoch: int = -1
    pc_best: list[float] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    pc_last: list[float] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)

    def record(self, epoch: int, metrics: dict[str, Any], per_class: list[float]) -> None:
        """Note an evaluated epoch: last always, best when top-1 is strictly better (the reference's rule)."""
        if metrics["acc/all"] > self.best["acc/all"]:
            self.best, self.best_epoch, self.pc_best = dict(metrics), epoch, per_class
        self.last, self.pc_last = metrics, per_class


def save_checkpoint(path: Path, run_id: str, st: TrainState, model: dict[str, Any], optimizer: dict[str, Any],
                    gen: torch.Generator, rng: np.random.Generator) -> None:
    """Model and optimiser state dicts (a run's own layout), every RNG state and the loop state; temp file + rename,
    never a partial file."""
    payload = {
        "run_id": run_id,
        "model": model,
        "optimizer": optimizer,
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "state": json.dumps(asdict(st)),
    }
    save_sealed(payload, path)


def load_checkpoint(path: Path, run_id: str, gen: torch.Generator,
                    rng: np.random.Generator) -> tuple[TrainState, dict[str, Any], dict[str, Any]]:
    """Restore the generators in place; returns the loop state and the model and optimiser state dicts. A checkpoint
    of another run id is refused."""
    try:
        payload = load_sealed(path)
    except DamagedFileError:
        raise
    except Exception as e:  # truncated or foreign file
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}); delete it to restart the run") \
            from None
    if payload.get("run_id") != run_id:
        raise CheckpointError(f"{path}: checkpoint of run '{payload.get('run_id')}', not '{run_id}'; "
                              f"delete it or point the run elsewhere")
    gen.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    rng.bit_generator.state = json.loads(payload["numpy_rng"])
    return TrainState(**json.loads(payload["state"])), payload["model"], payload["optimizer"]


def checkpoint_epoch(path: Path) -> int:
    """The next epoch a run resumes at from this checkpoint (0 without one or when unreadable)."""
    if not path.is_file():
        return 0
    try:
        return int(json.loads(load_sealed(path)["state"])["epoch"])
    except Exception:  # an unreadable checkpoint fails loudly when its run loads it
        return 0


def sgd_state(momentum: dict[str, torch.Tensor], names: list[str], group: dict[str, Any]) -> dict[str, Any]:
    """An SGD state dict in the layout of a run's own optimiser (parameters numbered in `names` order)."""
    return {"state": {i: {"momentum_buffer": momentum[n].cpu()} for i, n in enumerate(names) if n in momentum},
            "param_groups": [{**group, "params": list(range(len(names)))}]}


def momentum_of(optimizer_state: dict[str, Any], names: list[str]) -> dict[str, torch.Tensor]:
    """The momentum buffers of a run's own SGD state dict, by parameter name."""
    return {names[int(i)]: st["momentum_buffer"] for i, st in optimizer_state["state"].items()
            if st.get("momentum_buffer") is not None}
