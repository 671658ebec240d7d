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

# loss_fn(out, y_a, y_b, lam, class_weight): y_b / lam None for a plain batch; lam a float or a tensor.
LossFn = Callable[[Any, torch.Tensor, torch.Tensor | None, Any, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class Execution:
    """How a run executes its steps; recorded with the run, not part of its id (like the device)."""

    precision: str  # 'fp32', or 'bf16': the forward under bf16 autocast, losses and weights in fp32
    channels_last: bool
    cuda_graph: bool  # forward + loss + backward captured once, replayed for every full-size batch
    optimizer: str  # 'fused' (one multi-tensor kernel) or 'default' SGD
    compile: bool = False  # forward + backward of full-size batches through torch.compile (Inductor)
    note: str = ""  # why a requested feature is off (e.g. 'cuda_graph needs CUDA')

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_execution(precision: str, channels_last: bool | None, cuda_graph: bool | None, device: torch.device,
                      world: int = 1, graph_safe: bool = True, compile: bool = False) -> Execution:
    """'auto' / None mean: on CUDA bf16, channels_last, a CUDA graph and fused SGD; on the CPU none of them.
    torch.compile is opt-in: its compile time (tens of seconds) is about what it saves over a 200-epoch CIFAR run.

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
                     cuda_graph=graph, optimizer="fused" if cuda else "default", compile=compile,
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
    """Forward, loss, backward and optimiser step of one batch (or one packed batch of K runs).

    Eager by default. With `ex.cuda_graph`, the first `warmup` full-size steps run eagerly on a side stream
    (cuDNN autotuning, lazy state), then forward + loss + backward are captured once in a CUDA graph; each
    later batch of that shape is copied into the graph's static inputs, the graph replays, and the fused SGD
    step runs eagerly (so the learning rate stays a plain float). Batches of another shape (the epoch's short
    last batch) or per-sample lam (Remix) run eagerly on the same parameters. With `ex.compile`, full-size
    batches go through `torch.compile(model)` (inside the graph when there is one); other shapes use the plain
    model, so nothing recompiles; a failed compilation falls back to the plain model (`compile_fallback`).
    A graph always computes the mixed form lam * L(y_a) + (1 - lam) * L(y_b) with class weights; a plain batch
    is lam = 1, y_b = y_a, and no weights are ones, which give the same values. If capture fails, the run goes
    on eagerly (`fallback`).
    """

    def __init__(self, model: Callable[[torch.Tensor], Any], loss_fn: LossFn, optimizer: torch.optim.Optimizer,
                 ex: Execution, device: torch.device, num_classes: int, warmup: int = 3) -> None:
        self.model, self.loss_fn, self.optimizer, self.ex = model, loss_fn, optimizer, ex
        self.device, self.num_classes, self.warmup = device, num_classes, warmup
        self.autocast = autocast_of(ex, device)
        if device.type == "cuda":  # cuDNN autotunes each (fixed) batch shape once
            torch.backends.cudnn.benchmark = True
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: dict[str, Any] = {}
        self.shape: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        self.warmed = 0
        self.replays = 0
        self.fallback = ""
        self.fast_model: Callable[[torch.Tensor], Any] = \
            torch.compile(model, dynamic=False) if ex.compile else model  # type: ignore[arg-type]
        self.compiled_ok = not ex.compile  # set once the compiled model has run a step
        self.compile_fallback = ""

    def __call__(self, x: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None = None, lam: Any = None,
                 class_weight: torch.Tensor | None = None) -> tuple[Any, torch.Tensor]:
        """One step; returns the model output (for train accuracy) and the detached loss (one value, or one per
        packed member), both on the device."""
        if self.ex.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        main = self._main_shape(x, lam)
        if main and self.ex.cuda_graph and not self.fallback:
            return self._graph_step(x, y_a, y_b, lam, class_weight)
        return self._eager(x, y_a, y_b, lam, class_weight, self.fast_model if main else self.model)

    def _forward_loss(self, model: Callable[[torch.Tensor], Any], x: torch.Tensor, y_a: torch.Tensor,
                      y_b: torch.Tensor | None, lam: Any, w: torch.Tensor | None) -> tuple[Any, torch.Tensor]:
        with self.autocast():
            out = model(x)
        return out, self.loss_fn(out, y_a, y_b, lam, w)

    def _eager(self, x: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None, lam: Any,
               w: torch.Tensor | None, model: Callable[[torch.Tensor], Any] | None = None) -> tuple[Any, torch.Tensor]:
        model = self.model if model is None else model
        self.optimizer.zero_grad(set_to_none=self.graph is None)  # a captured graph owns the .grad tensors
        if model is self.fast_model and not self.compiled_ok:  # the first compiled step compiles
            try:
                out, loss = self._forward_loss(model, x, y_a, y_b, lam, w)
                loss.sum().backward()
                self.compiled_ok = True
            except Exception as e:  # Inductor / Triton missing or failing: the plain model from here on
                self.compile_fallback = f"compile failed: {type(e).__name__}: {e}"[:300]
                self.fast_model, self.compiled_ok = self.model, True
                self.optimizer.zero_grad(set_to_none=self.graph is None)
                return self._eager(x, y_a, y_b, lam, w)
        else:
            out, loss = self._forward_loss(model, x, y_a, y_b, lam, w)
            loss.sum().backward()  # a pack's loss is one value per member; each gets its own gradient
        self.optimizer.step()
        return _detached(out), loss.detach()

    def _main_shape(self, x: torch.Tensor, lam: Any) -> bool:
        """True for batches of the first batch's shape (what is captured / compiled)."""
        sig = (tuple(x.shape), tuple(lam.shape) if isinstance(lam, torch.Tensor) else ())
        if self.shape is None:
            self.shape = sig
        return sig == self.shape

    def _graph_step(self, x: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None, lam: Any,
                    w: torch.Tensor | None) -> tuple[Any, torch.Tensor]:
        if self.graph is None and self.warmed < self.warmup:
            self.warmed += 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                res = self._eager(x, y_a, y_b, lam, w, self.fast_model)
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
                return self._eager(x, y_a, y_b, lam, w, self.fast_model)
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
            out, loss = self._forward_loss(self.fast_model, st["x"], st["y_a"], st["y_b"], st["lam"], st["w"])
            loss.sum().backward()
        st["out"], st["loss"] = _detached(out), loss.detach()  # no autograd graph kept alive across steps
        self.graph = graph

    def info(self) -> dict[str, Any]:
        """What actually ran (stored in the record next to the execution settings)."""
        return {**self.ex.as_dict(), "graph_replays": self.replays,
                **({"graph_fallback": self.fallback} if self.fallback else {}),
                **({"compile_fallback": self.compile_fallback} if self.compile_fallback else {})}


def _detached(out: Any) -> Any:
    """The model output without its autograd graph (a tensor, or a dict of tensors for multi-expert models)."""
    if isinstance(out, dict):
        return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.items()}
    return out.detach()


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
