"""Progress: ETAs from elapsed time per epoch (per run and across the suite), plain lines off a terminal (every epoch
or every N minutes), live bars on one; a fake clock makes every figure hand-computable."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from benchmark.run.progress import RunProgress, format_duration


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fake_run(name: str, epochs: int, stage2: int | None = None) -> Any:
    settings = SimpleNamespace(train=SimpleNamespace(epochs=epochs),
                               stage2=SimpleNamespace(epochs=stage2) if stage2 else None)
    return SimpleNamespace(suite="s", run_id=f"{name}-s0-abc", row=name.upper(), column=None, seed=0, settings=settings)


def row(epoch: int, **extra: Any) -> dict[str, Any]:
    return {"epoch": epoch, "train/loss": 1.25, "train/acc": 40.0, "test/acc/all": 35.5, **extra}


def outcome(run: Any, status: str = "done", acc: float | None = 35.5) -> Any:
    return SimpleNamespace(run=run, status=status, acc=acc, error=None if status == "done" else "boom\nmore")


def plain(every_s: float = 0.0) -> tuple[RunProgress, io.StringIO, Clock]:
    buf, clock = io.StringIO(), Clock()
    console = Console(file=buf, force_terminal=False, width=80)
    return RunProgress(console, every_s=every_s, clock=clock), buf, clock


def test_format_duration() -> None:
    assert [format_duration(s) for s in (None, 0, 59.6, 61, 3600, 3 * 3600 + 62)] == \
        ["?", "0:00", "1:00", "1:01", "1:00:00", "3:01:02"]


def test_plain_lines_per_epoch_with_run_and_suite_eta() -> None:
    p, buf, clock = plain()
    assert not p.live  # a file is not a terminal
    a, b = fake_run("a", 4), fake_run("b", 4)
    p.start_suite([a, b])
    hook = p.start_run(a, 0, 2)
    for t, e in ((10, 0), (20, 1)):
        clock.t = t
        hook(row(e))
    lines = buf.getvalue().splitlines()
    assert lines[0] == "run [1/2] A s0  (a-s0-abc)"
    # 2 epochs in 20 s: 10 s an epoch; the run has 2 left (20 s), the suite 6 of 8 (60 s)
    assert lines[2] == ("a-s0-abc epoch 2/4  loss 1.250  train 40.0%  test 35.5%  elapsed 0:20  eta 0:20  | "
                        "suite 0/2 runs, 25%, elapsed 0:20, eta 1:00")
    assert len(lines) == 3 and all(len(line) > 80 for line in lines[1:])  # one line each, never wrapped
    clock.t = 40
    hook(row(2))
    hook(row(3))
    p.end_run(outcome(a))
    hook_b = p.start_run(b, 1, 2)
    clock.t = 50
    hook_b(row(0))
    last = buf.getvalue().splitlines()
    assert last[-3] == "  done in 0:40: best top-1 35.50%  | suite 1/2 runs, 50%, elapsed 0:40, eta 0:40"
    # the suite: 5 epochs trained in 50 s, 3 left -> 30 s; run b: 1 epoch in 10 s, 3 left
    assert last[-1].endswith("elapsed 0:10  eta 0:30  | suite 1/2 runs, 62%, elapsed 0:50, eta 0:30")


def test_every_n_minutes_keeps_the_last_epoch() -> None:
    p, buf, clock = plain(every_s=25)
    r = fake_run("a", 5)
    hook = p.start_run(r, 0, 1)
    for t, e in ((10, 0), (20, 1), (30, 2), (40, 3), (45, 4)):
        clock.t = t
        hook(row(e))
    epochs = [line.split()[2] for line in buf.getvalue().splitlines() if " epoch " in line]
    assert epochs == ["1/5", "4/5", "5/5"]  # t=10 first, t=40 (30 s later), the last one always


def test_a_resumed_run_counts_only_the_epochs_trained_here() -> None:
    p, buf, clock = plain()
    r = fake_run("a", 100)
    hook = p.start_run(r, 0, 1)
    clock.t = 10
    hook(row(50))  # resumed from a checkpoint at epoch 50: one epoch in 10 s, 49 left
    assert "epoch 51/100" in buf.getvalue() and "elapsed 0:10  eta 8:10  |" in buf.getvalue()


def test_two_stage_runs_count_both_stages() -> None:
    p, buf, clock = plain()
    r = fake_run("a", 2, stage2=2)
    hook = p.start_run(r, 0, 1)
    for t, e, extra in ((5, 0, {}), (10, 1, {}), (15, 0, {"stage": 2})):
        clock.t = t
        hook(row(e, **extra))
    last = buf.getvalue().splitlines()[-1]
    assert "epoch 3/4" in last and "eta 0:05" in last


def test_failed_and_worker_runs_settle_the_suite() -> None:
    p, buf, clock = plain()
    a, b = fake_run("a", 4), fake_run("b", 4)
    p.start_suite([a, b])
    clock.t = 100
    p.end_run(outcome(a))  # trained by a worker process (local executor): all 4 epochs in 100 s
    p.end_run(outcome(b, "failed", None))
    lines = buf.getvalue().splitlines()
    assert lines[0] == "  a-s0-abc done: best top-1 35.50%  | suite 1/2 runs, 50%, elapsed 1:40, eta 1:40"
    assert lines[1] == "  b-s0-abc failed: boom  | suite 2/2 runs, 100%, elapsed 1:40, eta 0:00"


def test_runs_left_to_another_process_leave_the_suite_eta() -> None:
    p, buf, clock = plain()
    a, b = fake_run("a", 4), fake_run("b", 4)
    p.start_suite([a, b])
    p.end_run(SimpleNamespace(run=b, status="running elsewhere", acc=None, error=None))  # no rate yet
    hook = p.start_run(a, 0, 2)
    clock.t = 10
    hook(row(0))
    lines = buf.getvalue().splitlines()
    assert lines[0] == "  b-s0-abc running elsewhere  | suite 1/2 runs, 50%, elapsed 0:00, eta ?"
    assert lines[-1].endswith("| suite 1/2 runs, 62%, elapsed 0:10, eta 0:30")  # 3 epochs left of a alone


def test_terminal_shows_bars_with_etas_not_lines() -> None:
    buf, clock = io.StringIO(), Clock()
    console = Console(file=buf, force_terminal=True, width=160)
    a, b = fake_run("a", 4), fake_run("b", 4)
    with RunProgress(console, clock=clock) as p:
        assert p.live
        p.start_suite([a, b])
        assert p._progress is not None and len(p._progress.tasks) == 1  # the suite bar, before any run starts
        hook = p.start_run(a, 0, 2)
        for t, e in ((10, 0), (20, 1)):
            clock.t = t
            hook(row(e))
    out = buf.getvalue()
    assert "run [1/2] A s0" in out and "a-s0-abc epoch" not in out  # bars, no per-epoch lines
    assert "0:20 elapsed, eta 0:20" in out  # the run's bar
    assert "suite 0/2 runs" in out and "0:20 elapsed, eta 1:00" in out  # the suite's bar
    assert "loss 1.250" in out
    assert p._progress is None  # stopped on exit


def test_an_unknown_eta_is_a_question_mark() -> None:
    p, buf, clock = plain()
    p.start_suite([fake_run("a", 3)])
    assert p.suite.eta(5.0) is None and "eta ?" in p._suite_text(5.0)


def test_a_slurm_task_logs_a_line_per_epoch_on_stderr(tiny_suite: Any, tmp_path: Any, capsys: Any) -> None:
    from benchmark.config.suite import load_suite, plan
    from benchmark.run.executors import SlurmRun
    from benchmark.run.jobs import RunJob
    from benchmark.run.records import record_path

    spec, _ = load_suite(str(tiny_suite))
    r = plan(spec)[0]
    job = RunJob(r, record_path(tmp_path, r.suite, r.cell, r.run_id), "none")
    outs = SlurmRun()(json.dumps([job.to_json()]))  # as SlurmExecutor submits it
    assert [o["state"] for o in outs] == ["done"]
    err = capsys.readouterr().err
    epochs = [line.split()[2] for line in err.splitlines() if line.startswith(f"{r.run_id} epoch ")]
    assert epochs == ["1/2", "2/2"] and "suite 1/1 runs, 100%" in err
