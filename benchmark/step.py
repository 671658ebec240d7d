"""One optimisation step: bf16 autocast, channels_last, fused SGD, and forward + backward replayed from a CUDA graph."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

# loss_fn(out, y_a, y_b, lam, class_weight): y_b / lam None for a plain batch; lam a float or a tensor.
LossFn = Callable[[Any, torch.Tensor, torch.Tensor | None, Any, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class Execution:
    """How a run executes its steps; recorded with the run, not part of its id (like the device)."""

    precision: str  # 'fp32', or 'bf16': the forward under bf16 autocast, losses and weights in fp32
    channels_last: bool
    cuda_graph: bool  # forward + loss + backward captured once, replayed for every full-size batch
    optimizer: str  # 'fused' (one multi-tensor kernel) or 'default' SGD
    note: str = ""  # why a requested feature is off (e.g. 'cuda_graph needs CUDA')

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_execution(precision: str, channels_last: bool | None, cuda_graph: bool | None, device: torch.device,
                      world: int = 1, graph_safe: bool = True) -> Execution:
    """'auto' / None mean: on CUDA bf16, channels_last, a CUDA graph and fused SGD; on the CPU none of them.

    A CUDA graph needs CUDA, one process, and a loss without per-epoch Python state (`graph_safe`); when one
    is missing the run goes eager and the reason is recorded.
    """
    cuda = device.type == "cuda"
    prec = ("bf16" if cuda else "fp32") if precision == "auto" else precision
    why = "" if cuda else "needs CUDA" if cuda_graph else ""
    if cuda and world > 1:
        why = "off with several processes (DDP)"
    elif cuda and not graph_safe:
        why = "off: the loss changes per epoch in Python (eager)"
    graph = (cuda if cuda_graph is None else cuda_graph) and cuda and world == 1 and graph_safe
    return Execution(precision=prec, channels_last=cuda if channels_last is None else channels_last,
                     cuda_graph=graph, optimizer="fused" if cuda else "default",
                     note=f"cuda_graph {why}" if why and cuda_graph is not False else "")


def make_sgd(params: Iterable[nn.Parameter], ex: Execution, lr: float, momentum: float, weight_decay: float,
             nesterov: bool) -> torch.optim.SGD:
    """SGD with weight decay on every parameter; the fused multi-tensor kernel where the execution asks for it."""
    kw: dict[str, Any] = {"fused": True} if ex.optimizer == "fused" else {}
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, **kw)


def autocast_of(ex: Execution, device: torch.device) -> Callable[[], AbstractContextManager[Any]]:
    """A context factory: bf16 autocast (no weight cache, so it is graph-safe) or nothing."""
    if ex.precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext


class TrainStep:
    """Forward, loss, backward and optimiser step of one batch (or one packed batch of K runs).

    Eager by default. With `ex.cuda_graph`, the first `warmup` full-size steps run eagerly on a side stream
    (cuDNN autotuning, lazy state), then forward + loss + backward are captured once in a CUDA graph; each
    later batch of that shape is copied into the graph's static inputs, the graph replays, and the fused SGD
    step runs eagerly (so the learning rate stays a plain float). Batches of another shape (the epoch's short
    last batch) or per-sample lam (Remix) run eagerly on the same parameters. A graph always computes the mixed
    form lam * L(y_a) + (1 - lam) * L(y_b) with class weights; a plain batch is lam = 1, y_b = y_a, and no
    weights are ones, which give the same values. If capture fails, the run goes on eagerly (`fallback`).
    """

    def __init__(self, model: Callable[[torch.Tensor], Any], loss_fn: LossFn, optimizer: torch.optim.Optimizer,
                 ex: Execution, device: torch.device, num_classes: int, warmup: int = 3) -> None:
        self.model, self.loss_fn, self.optimizer, self.ex = model, loss_fn, optimizer, ex
        self.device, self.num_classes, self.warmup = device, num_classes, warmup
        self.autocast = autocast_of(ex, device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: dict[str, Any] = {}
        self.shape: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        self.warmed = 0
        self.replays = 0
        self.fallback = ""

    def __call__(self, x: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None = None, lam: Any = None,
                 class_weight: torch.Tensor | None = None) -> tuple[Any, torch.Tensor]:
        """One step; returns the model output (for train accuracy) and the detached loss (one value, or one per
        packed member), both on the device."""
        if self.ex.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._graphable(x, lam):
            return self._graph_step(x, y_a, y_b, lam, class_weight)
        return self._eager(x, y_a, y_b, lam, class_weight)

    def _forward_loss(self, x: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None, lam: Any,
                      w: torch.Tensor | None) -> tuple[Any, torch.Tensor]:
        with self.autocast():
            out = self.model(x)
        return out, self.loss_fn(out, y_a, y_b, lam, w)

    def _eager(self, x: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None, lam: Any,
               w: torch.Tensor | None) -> tuple[Any, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=self.graph is None)  # a captured graph owns the .grad tensors
        out, loss = self._forward_loss(x, y_a, y_b, lam, w)
        loss.sum().backward()  # a pack's loss is one value per member; each gets its own gradient
        self.optimizer.step()
        return out, loss.detach()

    def _graphable(self, x: torch.Tensor, lam: Any) -> bool:
        if not self.ex.cuda_graph or self.fallback:
            return False
        sig = (tuple(x.shape), tuple(lam.shape) if isinstance(lam, torch.Tensor) else ())
        if self.shape is None:
            self.shape = sig  # the first batch fixes the captured shapes
        return sig == self.shape

    def _graph_step(self, x: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None, lam: Any,
                    w: torch.Tensor | None) -> tuple[Any, torch.Tensor]:
        if self.graph is None and self.warmed < self.warmup:
            self.warmed += 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                res = self._eager(x, y_a, y_b, lam, w)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return res
        if self.graph is None:
            try:
                self._capture(x, y_a, y_b, lam)
            except RuntimeError as e:  # eager from here on; the reason goes into the record
                self.fallback = f"capture failed: {type(e).__name__}: {e}"[:300]
                self.graph = None
                torch.cuda.synchronize(self.device)
                self.optimizer.zero_grad(set_to_none=True)
                return self._eager(x, y_a, y_b, lam, w)
        st = self.static
        st["x"].copy_(x)
        st["y_a"].copy_(y_a)
        st["y_b"].copy_(y_a if y_b is None else y_b)
        if lam is None:
            st["lam"].fill_(1.0)
        elif isinstance(lam, torch.Tensor):
            st["lam"].copy_(lam)
        else:
            st["lam"].fill_(float(lam))
        if w is None:
            st["w"].fill_(1.0)
        else:
            st["w"].copy_(w)
        assert self.graph is not None
        self.graph.replay()
        self.optimizer.step()
        self.replays += 1
        return st["out"], st["loss"]

    def _capture(self, x: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None, lam: Any) -> None:
        lam_t = lam if isinstance(lam, torch.Tensor) else torch.ones((), device=self.device)
        self.static = {
            "x": x.clone(memory_format=torch.channels_last if self.ex.channels_last else torch.contiguous_format),
            "y_a": y_a.clone(), "y_b": (y_a if y_b is None else y_b).clone(),
            "lam": lam_t.detach().clone().float(),
            "w": torch.ones(self.num_classes, device=self.device),
        }
        st = self.static
        torch.cuda.synchronize(self.device)
        self.optimizer.zero_grad(set_to_none=True)  # backward inside the capture allocates the static .grad tensors
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out, loss = self._forward_loss(st["x"], st["y_a"], st["y_b"], st["lam"], st["w"])
            loss.sum().backward()
        st["out"], st["loss"] = out, loss.detach()
        self.graph = graph

    def info(self) -> dict[str, Any]:
        """What actually ran (stored in the record next to the execution settings)."""
        return {**self.ex.as_dict(), "graph_replays": self.replays,
                **({"graph_fallback": self.fallback} if self.fallback else {})}
