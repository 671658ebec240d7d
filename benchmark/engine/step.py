"""One optimisation step: bf16 autocast, channels_last, fused SGD, and forward + backward replayed from a CUDA graph."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from benchmark.methods.losses import logits_of


@dataclass
class PackBatch:
    """One step's inputs for a pack of K runs (K = 1 for a run alone), all on the device.

    A plain batch is lam = 1, y_b = y_a; an unweighted loss has class weights of ones (the same values).
    """

    x: torch.Tensor  # [K, B, C, H, W] each member's (mixed) images
    y_a: torch.Tensor  # [K, B] labels weighted by lam
    y_b: torch.Tensor  # [K, B] labels weighted by 1 - lam
    lam: torch.Tensor  # [K, B] label weight of y_a (one value per row, or per sample for Remix)
    mixed: torch.Tensor  # [K] 1.0 where the member's batch was mixed this step
    w: torch.Tensor  # [K, C] class weights of the member's rule this epoch

    FIELDS = ("x", "y_a", "y_b", "lam", "mixed", "w")

    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape)


# loss_fn(outputs, batch) -> [K] losses: member j's loss from outputs[j] and row j of the batch.
LossFn = Callable[[list[Any], PackBatch], torch.Tensor]


@dataclass(frozen=True)
class Execution:
    """How a run executes its steps; recorded with the run, not part of its id (like the device)."""

    precision: str  # 'fp32', or 'bf16': the forward under bf16 autocast, losses and weights in fp32
    channels_last: bool
    cuda_graph: bool  # forward + loss + backward captured once, replayed for every full-size batch
    optimizer: str  # 'fused' (one multi-tensor kernel) or 'default' SGD
    compile: bool = False  # forward + backward of full-size batches through torch.compile (Inductor)
    tf32: bool = False  # TF32 convolutions on CUDA (never in fp32 mode: fp32 means fp32)
    note: str = ""  # why a requested feature is off (e.g. 'cuda_graph needs CUDA')

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_execution(precision: str, channels_last: bool | None, cuda_graph: bool | None, device: torch.device,
                      world: int = 1, not_graph_safe: str = "", compile: bool = False) -> Execution:
    """'auto' / None mean: on CUDA bf16, channels_last, a CUDA graph and fused SGD; on the CPU none of them.
    torch.compile is opt-in: its compile time (tens of seconds) is about what it saves over a 200-epoch CIFAR run.

    A CUDA graph needs CUDA, one process, and components that declare themselves graph-safe (`not_graph_safe` names
    the first that does not); when one is missing the run goes eager and the reason is recorded.
    """
    cuda = device.type == "cuda"
    prec = ("bf16" if cuda else "fp32") if precision == "auto" else precision
    why = "" if cuda else "needs CUDA" if cuda_graph else ""
    if cuda and world > 1:
        why = "off with several processes (DDP)"
    elif cuda and not_graph_safe:
        why = f"off: {not_graph_safe} is not graph-safe (eager)"
    graph = (cuda if cuda_graph is None else cuda_graph) and cuda and world == 1 and not not_graph_safe
    return Execution(precision=prec, channels_last=cuda if channels_last is None else channels_last,
                     cuda_graph=graph, optimizer="fused" if cuda else "default", compile=compile,
                     tf32=cuda and prec != "fp32",
                     note=f"cuda_graph {why}" if why and cuda_graph is not False else "")


def make_sgd(params: Iterable[nn.Parameter], ex: Execution, lr: float, momentum: float, weight_decay: float,
             nesterov: bool) -> torch.optim.SGD:
    """SGD with weight decay on every parameter; the fused multi-tensor kernel where the execution asks for it."""
    kw: dict[str, Any] = {"fused": True} if ex.optimizer == "fused" else {}
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, **kw)


def autocast_of(ex: Execution, device: torch.device) -> Callable[[], AbstractContextManager[Any]]:
    """The execution's autocast context factory (see `bf16_autocast`)."""
    return bf16_autocast(device, ex.precision == "bf16")


def bf16_autocast(device: torch.device, on: bool) -> Callable[[], AbstractContextManager[Any]]:
    """A context factory: bf16 autocast (no weight cache, so it is graph-safe) or nothing."""
    if on:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext


class TrainStep:
    """Forward, loss, backward and optimiser step of one pack batch (K runs; K = 1 for a run alone).

    Eager by default. With `ex.cuda_graph`, the first `warmup` full-size steps run eagerly on a side stream
    (cuDNN autotuning, lazy state), then forward + loss + backward are captured once in a CUDA graph; each
    later batch of that shape is copied into the graph's static inputs, the graph replays, and the fused SGD
    step runs eagerly (so the learning rate stays a plain float). Batches of another shape (the epoch's short
    last batch) run eagerly on the same parameters. With `ex.compile`, full-size batches go through
    `torch.compile(model)` (inside the graph when there is one); other shapes use the plain model, so nothing
    recompiles; a failed compilation falls back to the plain model (`compile_fallback`). If capture fails, the run
    goes on eagerly (`fallback`). Returns each member's detached loss and its count of correct background labels.
    """

    def __init__(self, model: Callable[[torch.Tensor], list[Any]], loss_fn: LossFn, optimizer: torch.optim.Optimizer,
                 ex: Execution, device: torch.device, warmup: int = 3) -> None:
        self.model, self.loss_fn, self.optimizer, self.ex = model, loss_fn, optimizer, ex
        self.device, self.warmup = device, warmup
        self.autocast = autocast_of(ex, device)
        if device.type == "cuda":  # cuDNN autotunes each (fixed) batch shape once; TF32 only outside fp32 mode
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = ex.tf32
            torch.backends.cuda.matmul.allow_tf32 = False
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: PackBatch | None = None
        self.static_out: tuple[torch.Tensor, torch.Tensor] | None = None
        self.shape: tuple[int, ...] | None = None
        self.warmed = 0
        self.replays = 0
        self.fallback = ""
        self.fast_model: Callable[[torch.Tensor], list[Any]] = \
            torch.compile(model, dynamic=False) if ex.compile else model  # type: ignore[arg-type]
        self.compiled_ok = not ex.compile  # set once the compiled model has run a step
        self.compile_fallback = ""

    def __call__(self, b: PackBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """One step; returns ([K] losses, [K] correct counts), detached, on the device."""
        main = self._main_shape(b)
        if main and self.ex.cuda_graph and not self.fallback:
            return self._graph_step(b)
        return self._eager(b, self.fast_model if main else self.model)

    def _forward_loss(self, model: Callable[[torch.Tensor], list[Any]],
                      b: PackBatch) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            outs = model(b.x)
        losses = self.loss_fn(outs, b)
        with torch.no_grad():
            correct = torch.stack([(logits_of(o).argmax(-1) == b.y_a[j]).sum() for j, o in enumerate(outs)])
        return losses, correct

    def _eager(self, b: PackBatch, model: Callable[[torch.Tensor], list[Any]] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model if model is None else model
        self.optimizer.zero_grad(set_to_none=self.graph is None)  # a captured graph owns the .grad tensors
        if model is self.fast_model and not self.compiled_ok:  # the first compiled step compiles
            try:
                losses, correct = self._forward_loss(model, b)
                losses.sum().backward()
                self.compiled_ok = True
            except Exception as e:  # Inductor / Triton missing or failing: the plain model from here on
                self.compile_fallback = f"compile failed: {type(e).__name__}: {e}"[:300]
                self.fast_model, self.compiled_ok = self.model, True
                self.optimizer.zero_grad(set_to_none=self.graph is None)
                return self._eager(b)
        else:
            losses, correct = self._forward_loss(model, b)
            losses.sum().backward()  # each member's parameters get the gradient of its own loss
        self.optimizer.step()
        return losses.detach(), correct

    def _main_shape(self, b: PackBatch) -> bool:
        """True for batches of the first batch's shape (what is captured / compiled)."""
        if self.shape is None:
            self.shape = b.shape()
        return b.shape() == self.shape

    def _graph_step(self, b: PackBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.graph is None and self.warmed < self.warmup:
            self.warmed += 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                res = self._eager(b, self.fast_model)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return res
        if self.graph is None:
            try:
                self._capture(b)
            except RuntimeError as e:  # eager from here on; the reason goes into the record
                self.fallback = f"capture failed: {type(e).__name__}: {e}"[:300]
                self.graph = None
                torch.cuda.synchronize(self.device)
                self.optimizer.zero_grad(set_to_none=True)
                return self._eager(b, self.fast_model)
        assert self.graph is not None and self.static is not None and self.static_out is not None
        for name in PackBatch.FIELDS:
            getattr(self.static, name).copy_(getattr(b, name))
        self.graph.replay()
        self.optimizer.step()
        self.replays += 1
        return self.static_out

    def _capture(self, b: PackBatch) -> None:
        self.static = PackBatch(*(getattr(b, n).clone() for n in PackBatch.FIELDS))
        torch.cuda.synchronize(self.device)
        self.optimizer.zero_grad(set_to_none=True)  # backward inside the capture allocates the static .grad tensors
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            losses, correct = self._forward_loss(self.fast_model, self.static)
            losses.sum().backward()
        self.static_out = (losses.detach(), correct)  # no autograd graph kept alive across steps
        self.graph = graph

    def info(self) -> dict[str, Any]:
        """What actually ran (stored in the record next to the execution settings)."""
        return {**self.ex.as_dict(), "graph_replays": self.replays,
                **({"graph_fallback": self.fallback} if self.fallback else {}),
                **({"compile_fallback": self.compile_fallback} if self.compile_fallback else {})}


def host_sync_sites(fn: Callable[[], Any]) -> list[str] | None:
    """Run `fn` under torch's CUDA sync debug mode; returns 'file:line' of each synchronising call it made
    (a blocking copy, .item(), ...), or None off CUDA."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return [f"{w.filename}:{w.lineno}" for w in caught if "called a synchronizing CUDA operation" in str(w.message)]
