"""Signals: SIGTERM / SIGINT under the local executor reach the workers (no orphan), exit 3 / 130, and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.config.suite import load_suite
from benchmark.run.records import read_record
from benchmark.run.runner import run_suite
from tests.test_faults import SLOW_SUITE

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes through /proc")

SUITE = SLOW_SUITE.replace("epochs: 3", "epochs: 6")


def _cli(args: list[str], **kw: object) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "benchmark.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_and_wait_for_checkpoint(args: list[str], res: Path, **kw: object) -> subprocess.Popen:
    proc = _cli(args, **kw)
    deadline = time.time() + 240
    while not list(res.glob("tiny/*/*.ckpt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(res.glob("tiny/*/*.ckpt")), "no checkpoint appeared"
    return proc


def _no_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if "time" not in k} for r in rows]


def test_sigterm_to_the_parent_stops_local_workers_and_resumes_identically(tmp_path: Path) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    res = tmp_path / "res"
    args = ["run", "suite", str(suite), "--results-dir", str(res), "--tracker", "none", "--executor", "local",
            "--gpus", "2"]
    proc = _start_and_wait_for_checkpoint(args, res)
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 3, out
    assert "error: stopped: SIGTERM received" in out and "run the same command again to resume" in out
    time.sleep(0.5)
    assert not [w for w in workers if _alive(w)], "a worker outlived its parent"
    assert not list(res.glob("tiny/*/*.json")) and list(res.glob("tiny/*/*.ckpt"))  # nothing recorded after exit
    rerun = _cli(args)
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out
    spec, _ = load_suite(str(suite))
    straight = run_suite(spec, results_dir=tmp_path / "straight", tracker="none")  # uninterrupted, inline
    for o in straight:
        resumed = read_record(next(res.glob(f"tiny/*/{o.path.name}")))
        ref = read_record(o.path)
        assert resumed.status == ref.status == "done"
        assert resumed.metrics["best"]["acc/all"] is not None and resumed.best_epoch == ref.best_epoch
        assert _no_time(list(resumed.metrics.values())) == _no_time(list(ref.metrics.values()))
        assert _no_time(resumed.curve) == _no_time(ref.curve) and resumed.per_class == ref.per_class


def test_sigterm_to_the_process_group_exits_3(tmp_path: Path) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    res = tmp_path / "res"
    args = ["run", "suite", str(suite), "--results-dir", str(res), "--tracker", "none", "--executor", "local",
            "--rows", "CE"]
    proc = _start_and_wait_for_checkpoint(args, res, start_new_session=True)
    workers = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 3 and "error: stopped" in out, out
    time.sleep(0.5)
    assert workers and not [w for w in workers if _alive(w)]


def test_ctrl_c_inline_exits_130_with_a_message_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    res = tmp_path / "res"
    args = ["run", "suite", str(suite), "--results-dir", str(res), "--tracker", "none", "--rows", "CE"]
    proc = _start_and_wait_for_checkpoint(args, res)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    assert out.strip().splitlines()[-1].startswith("error: interrupted (Ctrl-C)") and "resume" in out, out
    assert list(res.glob("tiny/ce/*.ckpt")) and not list(res.glob("tiny/ce/*.json"))
