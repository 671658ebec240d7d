"""Where runs execute besides this process (unit.InlineExecutor): a pool of local GPU slots, or Slurm (submitit)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from rich.console import Console

from benchmark.config.suite import SuiteError
from benchmark.engine.runtime import Preempted
from benchmark.run.jobs import RunJob
from benchmark.run.packing import auto_pack_size, group_jobs
from benchmark.run.progress import RunProgress
from benchmark.run.recording import RunOutcome, outcome_json, outcome_of
from benchmark.run.records import DamagedRecordError, read_record
from benchmark.run.states import RunState, Status
from benchmark.run.unit import InlineExecutor, run_unit
from benchmark.schema.files import atomic_write_text


def detect_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch / no driver: a CPU machine
        return 0


class LocalExecutor:
    """A pool of GPU slots, one process per unit of work with CUDA_VISIBLE_DEVICES set.

    Runs that can share a step train as one packed process per GPU, `runs_per_gpu` runs per pack (None: sized to the
    GPU's free memory); other runs take one of the GPU's `runs_per_gpu` slots each.
    `gpus` overrides detection (on a CPU machine it creates fake slots).
    """

    def __init__(self, gpus: int | None = None, runs_per_gpu: int | None = None, gpus_per_run: int = 1) -> None:
        self.gpus = gpus if gpus is not None else max(detect_gpus(), 1)
        self.runs_per_gpu, self.gpus_per_run = runs_per_gpu, gpus_per_run
        if gpus_per_run > 1:  # a slot is a group of GPUs running one multi-process (torchrun) run
            groups = [",".join(str(g) for g in range(i, i + gpus_per_run))
                      for i in range(0, self.gpus - gpus_per_run + 1, gpus_per_run)]
            if not groups or (runs_per_gpu or 1) != 1:
                raise SuiteError(f"--gpus-per-run {gpus_per_run} needs at least that many GPUs and --runs-per-gpu 1")
            self.devices = groups
        else:
            self.devices = [str(g) for g in range(self.gpus)]
        self.capacity = runs_per_gpu or 1  # slots per device

    @property
    def slots(self) -> list[str]:
        return [d for d in self.devices for _ in range(self.capacity)]

    def run(self, jobs: list[RunJob], progress: Any = None) -> list[RunOutcome]:
        """Every unit in a worker process. SIGTERM / SIGINT to this process is forwarded to the workers as SIGTERM
        (their runs checkpoint and stop), no further unit starts, and Preempted is raised once all have exited."""
        k = 1 if self.gpus_per_run > 1 else auto_pack_size(jobs, self.runs_per_gpu)
        units = group_jobs(jobs, k)
        free = dict.fromkeys(self.devices, self.capacity)
        cond = threading.Condition()
        console = getattr(progress, "console", None)
        workers = WorkerGroup()

        def one(i_unit: tuple[int, list[RunJob]]) -> list[RunOutcome]:
            i, unit = i_unit
            need = self.capacity if len(unit) > 1 else 1  # a pack has its GPU to itself
            with cond:
                cond.wait_for(lambda: any(v >= need for v in free.values()))
                gpu = next(g for g, v in free.items() if v >= need)
                free[gpu] -= need
            try:
                if workers.stopped is not None:
                    return [RunOutcome(j.run, RunState.NOT_STARTED, j.path, detail="stopped") for j in unit]
                if console is not None:
                    ids = ", ".join(j.run.run_id for j in unit)
                    console.print(f"[{i + 1}/{len(units)}] {ids} -> GPU {gpu}", highlight=False)
                outs = run_in_subprocess(unit, {"CUDA_VISIBLE_DEVICES": gpu}, self.gpus_per_run, workers)
                for o in outs if hasattr(progress, "end_run") else []:
                    progress.end_run(o)  # the suite's count and ETA move on
                return outs
            finally:
                with cond:
                    free[gpu] += need
                    cond.notify_all()

        previous = workers.forward_signals()
        try:
            with ThreadPoolExecutor(max_workers=len(self.slots)) as pool:
                outs = [o for outs in pool.map(one, enumerate(units)) for o in outs]
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if workers.stopped is not None or workers.worker_stopped:
            signum = workers.stopped if workers.stopped is not None else signal.SIGTERM
            raise Preempted(f"{signal.Signals(signum).name} received; the workers checkpointed their runs",
                            signum)
        return outs


class WorkerGroup:
    """The worker processes of one local run, and the signals that stop them."""

    def __init__(self) -> None:
        self.procs: set[subprocess.Popen[str]] = set()
        self.lock = threading.Lock()
        self.stopped: int | None = None  # the signal this process received
        self.worker_stopped = False  # a worker reported a stop request of its own

    def forward_signals(self) -> dict[int, Any]:
        """Install SIGTERM / SIGINT handlers (main thread only) that forward SIGTERM to every worker; a second
        Ctrl-C interrupts at once. Returns the previous handlers."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: Any) -> None:
            if signum == signal.SIGINT and self.stopped == signal.SIGINT:
                raise KeyboardInterrupt
            self.stopped = signum
            with self.lock:
                procs = list(self.procs)
            for p in procs:
                _terminate(p)
        return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def add(self, proc: subprocess.Popen[str]) -> None:
        with self.lock:
            self.procs.add(proc)
        if self.stopped is not None:  # the signal came while it started
            _terminate(proc)

    def remove(self, proc: subprocess.Popen[str]) -> None:
        with self.lock:
            self.procs.discard(proc)


def _terminate(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        proc.send_signal(signal.SIGTERM)


def run_in_subprocess(unit: RunJob | list[RunJob], env: dict[str, str], nproc: int = 1,
                      workers: WorkerGroup | None = None) -> list[RunOutcome]:
    """`python -m benchmark.run.worker JOBS.json` (one run or a pack) with extra environment (under torchrun with
    `nproc` processes for a multi-GPU run); outcomes are read from what the worker prints. A worker that reports
    bad input raises SuiteError (its one line); one that reports a stop marks the group stopped."""
    jobs = unit if isinstance(unit, list) else [unit]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write("[" + ",".join(j.to_json() for j in jobs) + "]")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    workers = workers or WorkerGroup()
    try:
        popen = subprocess.Popen([*launcher, "-m", "benchmark.run.worker", f.name], env={**os.environ, **env},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        workers.add(popen)
        try:
            stdout, stderr = popen.communicate()
        finally:
            workers.remove(popen)
    finally:
        Path(f.name).unlink(missing_ok=True)
    proc = subprocess.CompletedProcess(popen.args, popen.returncode, stdout, stderr)
    for line in proc.stdout.splitlines():
        if line.startswith('{"fatal"'):
            raise SuiteError(json.loads(line)["fatal"])
        if line.startswith('{"stopped"'):
            workers.worker_stopped = True
            return [RunOutcome(j.run, RunState.INTERRUPTED, j.path, detail="stopped; resumes") for j in jobs]
    results = _outcome_lines(proc.stdout)
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
    outs = []
    for job in jobs:
        r = results.get(job.run.run_id)
        outs.append(outcome_of(job, r) if r is not None else
                    RunOutcome(job.run, RunState.FAILED, job.path,
                               error=f"worker exited with {proc.returncode}: {tail}"))
    return outs


def _outcome_lines(text: str) -> dict[str, dict[str, Any]]:
    """Rank 0's outcome lines ({"run_id": ..., "state": ...}) by run id; other ranks' and other output are ignored."""
    out: dict[str, dict[str, Any]] = {}
    for line in text.strip().splitlines():
        if not line.startswith('{"run_id"'):
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("state") != RunState.RANK:
            out[d.get("run_id", "")] = d
    return out


# ---------------------------------------------------------------------------------------------------- Slurm


@dataclass(frozen=True)
class SlurmConfig:
    """Slurm resources for one run (one array task)."""

    partition: str | None = None
    account: str | None = None
    time_min: int = 240
    gpus_per_run: int = 1
    cpus_per_task: int = 8
    mem_gb: int | None = None
    array_parallelism: int = 64
    runs_per_task: int = 16  # runs that can share a step train as one pack per array task
    setup: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path | None, **options: Any) -> SlurmConfig:
        """A profile YAML (keys as the fields) overridden by non-None command-line options."""
        import yaml

        base: dict[str, Any] = (yaml.safe_load(path.read_text()) or {}) if path else {}
        unknown = set(base) - set(cls.__dataclass_fields__)
        if unknown:
            raise SuiteError(f"{path}: unknown Slurm profile key(s) {sorted(unknown)}; "
                             f"known: {', '.join(cls.__dataclass_fields__)}")
        merged = {**base, **{k: v for k, v in options.items() if v is not None}}
        if "setup" in merged:
            merged["setup"] = tuple(merged["setup"])
        return cls(**merged)

    def executor_parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {"timeout_min": self.time_min, "gpus_per_node": self.gpus_per_run,
                                  "tasks_per_node": self.gpus_per_run, "cpus_per_task": self.cpus_per_task,
                                  "slurm_array_parallelism": self.array_parallelism}
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.account:
            params["slurm_account"] = self.account
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params


class SlurmRun:
    """The callable submitit pickles: runs one unit (a run, or a pack of runs); on pre-emption or time-out it is
    re-queued and its runs resume from their last checkpoints."""

    def __call__(self, unit_json: str) -> list[dict[str, Any]]:
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # one task per GPU of a multi-GPU run
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export()
        jobs = [RunJob.from_json(j) for j in json.loads(unit_json)]
        with RunProgress(Console(stderr=True), live=False) as progress:  # a line per epoch in the task's .err log
            progress.start_suite([j.run for j in jobs])
            outs = run_unit(jobs, progress, 0, len(jobs))
        return [outcome_json(o) for o in outs]

    def checkpoint(self, unit_json: str) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmRun(), unit_json)


class SlurmExecutor:
    """Submits the suite's runs as one job array through submitit and records the job ids for `lt-bench status`.

    `cluster="local"` (submitit's local executor) or `"debug"` runs the same path without Slurm (tests).
    """

    def __init__(self, config: SlurmConfig, folder: Path, cluster: str | None = None, wait: bool = False) -> None:
        self.config, self.folder, self.cluster, self.wait = config, folder, cluster, wait

    def run(self, jobs: list[RunJob], progress: Any = None) -> list[RunOutcome]:
        """One array task per unit: a pack of runs (sized by `config.runs_per_task`) or a run alone."""
        import submitit

        units = group_jobs(jobs, 1 if self.config.gpus_per_run > 1 else self.config.runs_per_task)
        ex = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=self.cluster)
        params = self.config.executor_parameters()
        if self.cluster in ("local", "debug"):
            params = {"timeout_min": params["timeout_min"]}
        ex.update_parameters(name=f"lt-bench-{jobs[0].run.suite}", **params)
        payloads = [json.dumps([j.to_json() for j in unit]) for unit in units]
        submitted = ex.map_array(SlurmRun(), payloads)
        ids = {j.run.run_id: s.job_id for unit, s in zip(units, submitted, strict=True) for j in unit}
        write_queue(jobs, [ids[j.run.run_id] for j in jobs])
        if not self.wait:
            return [RunOutcome(j.run, RunState.QUEUED, j.path, detail=str(ids[j.run.run_id])) for j in jobs]
        outs = []
        for unit, s in zip(units, submitted, strict=True):
            try:
                res = {r["run_id"]: r for r in s.result()}
                outs += [outcome_of(j, res[j.run.run_id]) for j in unit]
            except Exception as e:  # the job itself died (not a failed run, which returns normally)
                outs += [RunOutcome(j.run, RunState.FAILED, j.path, error=f"{type(e).__name__}: {e}") for j in unit]
        return outs


def queue_file(suite_dir: Path) -> Path:
    return suite_dir / "_queue.json"


def read_queue(suite_dir: Path) -> dict[str, str]:
    """The suite's submitted runs (run id -> job id); a damaged queue file is a SuiteError saying to delete it."""
    q = queue_file(suite_dir)
    try:
        queue = json.loads(q.read_text()) if q.is_file() else {}
    except ValueError:  # not JSON, or not UTF-8
        queue = None
    if not isinstance(queue, dict):
        raise SuiteError(f"{q}: not a queue file written by lt-bench (a JSON object of run ids); delete it")
    return queue


def write_queue(jobs: Iterable[RunJob], job_ids: list[str]) -> None:
    """Remember submitted runs (run id -> scheduler job id) next to the suite's records."""
    by_dir: dict[Path, dict[str, str]] = {}
    for job, jid in zip(jobs, job_ids, strict=True):
        by_dir.setdefault(job.path.parent.parent, {})[job.run.run_id] = jid
    for suite_dir, entries in by_dir.items():
        q = queue_file(suite_dir)
        old = read_queue(suite_dir)
        suite_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(q, json.dumps({**old, **entries}, indent=1))


def run_status(path: Path, run_id: str, queue: dict[str, str]) -> Status:
    """done / failed (from the record), running (its lock is held), queued (submitted), or not started."""
    if path.is_file():
        try:
            return Status(RunState(read_record(path).status))
        except DamagedRecordError:
            return Status(RunState.UNREADABLE, "damaged record")
        except (ValueError, OSError):
            return Status(RunState.UNREADABLE, "record")
    lock_path = path.with_suffix(".lock")
    if lock_path.exists():
        try:
            with FileLock(str(lock_path), timeout=0):
                pass
        except Timeout:
            return Status(RunState.RUNNING)
    if path.with_suffix(".ckpt").exists():
        return Status(RunState.INTERRUPTED, "resumes")
    return Status(RunState.QUEUED, str(queue[run_id])) if run_id in queue else Status(RunState.NOT_STARTED)


def make_executor(kind: str, gpus: int | None, runs_per_gpu: int | None, profile: Path | None, partition: str | None,
                  account: str | None, time_min: int | None, gpus_per_run: int | None, cluster: str | None,
                  wait: bool, folder: Path) -> object:
    """The executor a `run suite` command names, from its options; a bad combination is a SuiteError (one line)."""
    if runs_per_gpu is not None and runs_per_gpu < 1:
        raise SuiteError("--runs-per-gpu must be >= 1")
    if kind == "inline":
        return InlineExecutor(runs_per_gpu)
    if kind == "local":
        if (gpus is not None and gpus < 1) or (gpus_per_run or 1) < 1:
            raise SuiteError("--gpus, --runs-per-gpu and --gpus-per-run must be >= 1")
        return LocalExecutor(gpus, runs_per_gpu, gpus_per_run or 1)
    if kind == "slurm":
        if profile is not None and not profile.is_file():
            raise SuiteError(f"--slurm-profile {profile}: no such file")
        cfg = SlurmConfig.load(profile, partition=partition, account=account, time_min=time_min,
                               gpus_per_run=gpus_per_run, runs_per_task=runs_per_gpu)
        return SlurmExecutor(cfg, folder, cluster=cluster, wait=wait)
    raise SuiteError(f"--executor '{kind}': use inline, local or slurm")
