"""Progress display for suite runs: a rich bar per run on a terminal, one line per run otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from benchmark.run.states import RunState


class RunProgress:
    """Shows epoch, loss, test accuracy and time left; quiet (a line per finished run) when not a TTY."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live = self.console.is_terminal
        self._progress: Progress | None = None
        self._t0 = 0.0

    def start_run(self, run: Any, index: int, total: int) -> Callable[[dict[str, Any]], None]:
        self._t0 = time.time()
        label = f"[{index + 1}/{total}] {run.row}" + (f" [{run.column}]" if run.column else "") + f" s{run.seed}"
        self.console.print(f"[bold]run[/bold] {label}  ({run.run_id})", highlight=False)
        epochs = run.settings.train.epochs
        if not self.live:
            return lambda row: None
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                  TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
        self._progress.start()
        task = self._progress.add_task("epoch", total=epochs, info="")

        def on_epoch(row: dict[str, Any]) -> None:
            assert self._progress is not None
            info = f"loss {row['train/loss']:.3f}  train {row['train/acc']:.1f}%  test {row['test/acc/all']:.1f}%"
            self._progress.update(task, completed=row["epoch"] + 1, info=info,
                                  description=f"epoch {row['epoch'] + 1}/{epochs}")

        return on_epoch

    def end_run(self, outcome: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        took = time.time() - self._t0
        if outcome.state == RunState.DONE:
            self.console.print(f"  done in {took:.0f}s: best top-1 {outcome.acc:.2f}%", highlight=False)
        else:
            first = (outcome.error or "").splitlines()[0] if outcome.error else ""
            self.console.print(f"  [red]failed[/red] after {took:.0f}s: {first}", highlight=False)
