"""Progress of suite runs: live bars with ETAs on a terminal; plain lines (one per epoch, or per N minutes) otherwise.

ETAs come from the elapsed wall time per epoch trained in this process (rich's own estimate looks at a 30 s window
and shows nothing when epochs take longer): per run, and across the whole invocation for the suite bar.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn


def run_epochs(run: Any) -> int:
    """Epochs a run trains in all: stage 1 (train.epochs) plus stage 2 where it has one."""
    s = run.settings
    return s.train.epochs + (s.stage2.epochs if s.stage2 is not None else 0)


def format_duration(seconds: float | None) -> str:
    """H:MM:SS (M:SS under an hour); '?' when unknown."""
    if seconds is None:
        return "?"
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def run_label(run: Any) -> str:
    return f"{run.row}" + (f" [{run.column}]" if run.column else "") + f" s{run.seed}"


@dataclass
class RunClock:
    """One run's position in epochs (both stages) and the epochs trained in this process since it started."""

    total: int
    started: float
    position: int = 0  # epochs finished, resumed ones included
    trained: int = 0  # epochs seen finishing in this process
    last_line: float | None = None

    def advance(self, row: dict[str, Any], stage1_epochs: int) -> int:
        """Move to the epoch a hook row reports; returns the epochs newly trained."""
        pos = int(row.get("epoch", self.position)) + 1 + (stage1_epochs if row.get("stage") == 2 else 0)
        new = 1 if self.trained == 0 else max(0, pos - self.position)  # a resumed run starts past epoch 0
        self.position, self.trained = max(self.position, pos), self.trained + new
        return new

    def eta(self, now: float) -> float | None:
        """Seconds left: wall time per epoch trained here times the epochs left."""
        if self.trained == 0:
            return None
        return (now - self.started) / self.trained * max(0, self.total - self.position)


class SuiteClock:
    """Epochs of every run in this invocation: the suite bar's fraction and ETA."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.totals: dict[str, int] = {}
        self.settled: dict[str, int] = {}  # epochs done or no longer to do, per run
        self.trained = 0
        self.runs_done = 0

    def plan(self, key: str, total: int) -> None:
        self.totals.setdefault(key, total)
        self.settled.setdefault(key, 0)

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def fraction(self) -> float:
        return sum(self.settled.values()) / self.total if self.total else 0.0

    def eta(self, now: float) -> float | None:
        if self.trained == 0:
            return None
        return (now - self.started) / self.trained * max(0, self.total - sum(self.settled.values()))


class RunProgress:
    """Progress of the runs handed to an executor (thread-safe: the local executor reports from threads).

    Terminal (`live`): a suite bar and a bar per running run, with loss, accuracy, elapsed time and ETA.
    Otherwise: one plain line per epoch, or at most one per run every `every_s` seconds (the last epoch always),
    with run, epoch, loss / accuracy, elapsed time, the run's ETA and the suite's.
    """

    def __init__(self, console: Console | None = None, *, live: bool | None = None, every_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console or Console()
        self.live = self.console.is_terminal if live is None else live
        self.every_s = every_s
        self.clock = clock
        self.suite = SuiteClock(clock())
        self.runs: dict[str, RunClock] = {}
        self.n_runs = 0
        self._lock = threading.RLock()
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._suite_task: TaskID | None = None

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()

    # ---------------------------------------------------------------------------------------------- events

    def start_suite(self, runs: list[Any]) -> None:
        """The runs this invocation will train: the suite bar's total and ETA cover them all."""
        with self._lock:
            self.suite = SuiteClock(self.clock())
            for r in runs:
                self.suite.plan(_key(r), run_epochs(r))
            self.n_runs = len(runs)
            if self.live:  # the suite bar from the start, whichever executor reports
                self._ensure_live()
                self._update_suite(self.suite.started)

    def start_run(self, run: Any, index: int, total: int) -> Callable[[dict[str, Any]], None]:
        """Announce a run; returns its per-epoch hook."""
        key = _key(run)
        with self._lock:
            self.n_runs = max(self.n_runs, total)
            self.suite.plan(key, run_epochs(run))
            self.runs[key] = RunClock(run_epochs(run), self.clock())
            self.console.print(f"run [{index + 1}/{total}] {run_label(run)}  ({run.run_id})", highlight=False,
                               markup=False, soft_wrap=True)
            if self.live:
                self._ensure_live()
                assert self._progress is not None
                self._tasks[key] = self._progress.add_task(f"{run_label(run)}", total=run_epochs(run), info="",
                                                           eta="")
        stage1 = run.settings.train.epochs

        def on_epoch(row: dict[str, Any]) -> None:
            self._epoch(run, key, row, stage1)

        return on_epoch

    def end_run(self, outcome: Any) -> None:
        """A run finished (or failed): its line, and the suite's count and ETA move on."""
        key = _key(outcome.run)
        with self._lock:
            now = self.clock()
            rc = self.runs.pop(key, None)
            if rc is None:  # trained elsewhere (a worker process): all its epochs count as trained here
                total = self.suite.totals.get(key, run_epochs(outcome.run))
                self.suite.plan(key, total)
                if outcome.status == "done":
                    self.suite.trained += total - self.suite.settled[key]
            self.suite.settled[key] = self.suite.totals.get(key, 0)
            self.suite.runs_done += 1
            if key in self._tasks and self._progress is not None:
                self._progress.remove_task(self._tasks.pop(key))
            took = f" in {format_duration(now - rc.started)}" if rc is not None else ""
            who = "  " if rc is not None else f"  {outcome.run.run_id} "  # not announced here: name it
            if outcome.status == "done":
                acc = f": best top-1 {outcome.acc:.2f}%" if outcome.acc is not None else ""
                msg = f"{who}done{took}{acc}"
            else:
                first = (outcome.error or "").splitlines()[0] if outcome.error else ""
                msg = f"{who}{outcome.status}{took}" + (f": {first}" if first else "")
            self.console.print(f"{msg}  | {self._suite_text(now)}", highlight=False, markup=False, soft_wrap=True)
            self._update_suite(now)

    def finish(self) -> None:
        """Stop the live display (idempotent)."""
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
                self._tasks.clear()
                self._suite_task = None

    # ---------------------------------------------------------------------------------------------- internals

    def _epoch(self, run: Any, key: str, row: dict[str, Any], stage1_epochs: int) -> None:
        with self._lock:
            now = self.clock()
            rc = self.runs.get(key)
            if rc is None:
                return
            self.suite.trained += rc.advance(row, stage1_epochs)
            self.suite.settled[key] = min(rc.position, self.suite.totals.get(key, rc.total))
            metrics = _metrics_text(row)
            if self.live and self._progress is not None and key in self._tasks:
                self._progress.update(self._tasks[key], completed=rc.position, info=metrics,
                                      eta=f"{format_duration(now - rc.started)} elapsed, eta "
                                          f"{format_duration(rc.eta(now))}")
                self._update_suite(now)
                return
            last = rc.position >= rc.total
            if self.every_s > 0 and rc.last_line is not None and now - rc.last_line < self.every_s and not last:
                return
            rc.last_line = now
            self.console.print(f"{run.run_id} epoch {rc.position}/{rc.total}  {metrics}  elapsed "
                               f"{format_duration(now - rc.started)}  eta {format_duration(rc.eta(now))}  | "
                               f"{self._suite_text(now)}", highlight=False, markup=False, soft_wrap=True)

    def _suite_text(self, now: float) -> str:
        return (f"suite {self.suite.runs_done}/{self.n_runs} runs, {100 * self.suite.fraction:.0f}%, elapsed "
                f"{format_duration(now - self.suite.started)}, eta {format_duration(self.suite.eta(now))}")

    def _ensure_live(self) -> None:
        if self._progress is None:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.fields[info]}"), TextColumn("{task.fields[eta]}"),
                                      console=self.console, transient=True)
            self._progress.start()
            self._suite_task = self._progress.add_task("suite", total=max(self.suite.total, 1), info="", eta="")

    def _update_suite(self, now: float) -> None:
        if self._progress is None or self._suite_task is None:
            return
        self._progress.update(self._suite_task, total=max(self.suite.total, 1),
                              completed=sum(self.suite.settled.values()),
                              description=f"suite {self.suite.runs_done}/{self.n_runs} runs",
                              info=f"{100 * self.suite.fraction:.0f}%",
                              eta=f"{format_duration(now - self.suite.started)} elapsed, eta "
                                  f"{format_duration(self.suite.eta(now))}")


def _key(run: Any) -> str:
    return f"{run.suite}/{run.run_id}"


def _metrics_text(row: dict[str, Any]) -> str:
    parts = []
    if "train/loss" in row:
        parts.append(f"loss {row['train/loss']:.3f}")
    if "train/acc" in row:
        parts.append(f"train {row['train/acc']:.1f}%")
    if "test/acc/all" in row:
        parts.append(f"test {row['test/acc/all']:.1f}%")
    return "  ".join(parts)
