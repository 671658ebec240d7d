"""Plan several suites at once: one training per settings hash, linked records, and a costed dry run (no torch)."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from benchmark.config import REPO_ROOT, RunSpec, SuiteError, SuiteSpec, plan, slug
from benchmark.records import RunRecord, read_record, record_path, write_record
from benchmark.settings import DataSettings, RunSettings

# What a planned run needs:
#   train  - the one occurrence of its settings hash that goes to the executor (the "primary")
#   link   - another occurrence of a hash trained in this invocation: gets a copy of the primary's record
#   reuse  - a finished record with the same hash exists (any suite): gets a copy of it now, no training
#   done   - its own record is finished (skipped, as before)
#   failed - its own record failed and --retry-failed is not given (skipped, as before)
Action = Literal["train", "link", "reuse", "done", "failed"]
RunKey = tuple[str, bool]  # (RunSettings.run_hash(), smoke)

CUDA_PROJECTION_PACK = 16  # K of a CUDA projection made on a machine without a GPU (no --runs-per-gpu)
EVAL_COST = 1 / 3  # a test image (forward only) costs about a third of a training image
COMMITTED_PROFILE = REPO_ROOT / "reports" / "perf" / "bench-h100.json"
FILE_DATASETS = ("imagenet_lt", "inat2018")  # decoded from files by DataLoader workers: no throughput profile
# Balanced test split per class (CIFAR test sets, ImageNet-LT test list, iNat-2018 val list), and the official
# train list sizes used when a split list is not present.
TEST_PER_CLASS = {"cifar10_lt": 1000, "cifar100_lt": 100, "imagenet_lt": 50, "inat2018": 3}
OFFICIAL_TRAIN = {"imagenet_lt": (115_846, 1000), "inat2018": (437_513, 8142)}

_RECORD_NAME = re.compile(r"-s\d+-([0-9a-f]{10})$")  # <cell>-s<seed>-<run_hash>


# ------------------------------------------------------------------------------------------------ planning


@dataclass
class PlannedRun:
    """One planned run of one suite, with what this invocation does for it."""

    run: RunSpec
    path: Path  # its own record
    key: RunKey
    action: Action
    source: Path | None = None  # reuse: the finished record to copy; link: the primary's record path
    primary: PlannedRun | None = None  # link: the occurrence that trains
    origin: dict[str, str] | None = None  # reuse / link: {"suite", "run_id", "path"} of the training record

    @property
    def label(self) -> str:
        return f"{self.run.suite}/{self.run.run_id}"


@dataclass
class MultiPlan:
    """All runs of the named suites, planned together."""

    suites: list[tuple[SuiteSpec, Path]]
    runs: list[PlannedRun]
    results_dir: Path
    force: bool = False
    index: dict[str, list[Path]] = field(default_factory=dict)  # run hash -> record files under results_dir

    @property
    def primaries(self) -> list[PlannedRun]:
        return [p for p in self.runs if p.action == "train"]

    def followers(self, primary: PlannedRun) -> list[PlannedRun]:
        return [p for p in self.runs if p.primary is primary]


def load_suites(names: list[str]) -> list[tuple[SuiteSpec, Path]]:
    """Load every named suite once; the same name from two different files is an error."""
    from benchmark.config import load_suite

    out: list[tuple[SuiteSpec, Path]] = []
    for name in names:
        spec, path = load_suite(name)
        same = [p for s, p in out if s.suite == spec.suite]
        if same and same[0].resolve() != path.resolve():
            raise SuiteError(f"suite '{spec.suite}' is named twice ({same[0]} and {path}); its records would mix")
        if not same:
            out.append((spec, path))
    return out


def plan_suites(suites: list[tuple[SuiteSpec, str | Path]], *, seeds: list[int] | None = None,
                overrides: dict[str, Any] | None = None, smoke: bool = False,
                rows: list[str] | None = None) -> list[RunSpec]:
    """Every run of every suite, in order, components checked. With several suites, `rows` selects, in each suite,
    the rows it has (a name no suite has is an error); with one suite an unknown row is an error, as before."""
    from benchmark.runner import check_plan

    if rows is not None and len(suites) > 1:
        known = {k for spec, _ in suites for r in spec.rows for k in (r.name, slug(r.name))}
        unknown = [r for r in rows if r not in known]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], sorted(known), n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise SuiteError(f"no row '{unknown[0]}' in suites {', '.join(s.suite for s, _ in suites)}.{hint}")
    runs: list[RunSpec] = []
    for spec, where in suites:
        sel = rows
        if rows is not None and len(suites) > 1:
            names = {k for r in spec.rows for k in (r.name, slug(r.name))}
            sel = [r for r in rows if r in names]
        suite_runs = plan(spec, seeds=seeds, overrides=overrides, smoke=smoke, where=str(where), rows=sel)
        check_plan(suite_runs, str(where) or spec.suite)
        runs += suite_runs
    return runs


def run_key(r: RunSpec) -> RunKey:
    """A run's identity across suites: its settings hash with seed, and the smoke flag."""
    return r.settings.run_hash(), r.smoke


def finished_index(results_dir: Path) -> dict[str, list[Path]]:
    """Record files under results/<suite>/<cell>/ by the run hash their name ends with (records are not read)."""
    out: dict[str, list[Path]] = {}
    if not results_dir.is_dir():
        return out
    for p in sorted(results_dir.glob("*/*/*.json")):
        m = _RECORD_NAME.search(p.stem)
        if m and not p.name.startswith("."):
            out.setdefault(m.group(1), []).append(p)
    return out


def find_finished(index: dict[str, list[Path]], key: RunKey, exclude: Collection[Path] = ()) -> Path | None:
    """A finished record with this run hash and smoke flag: one that trained the run before a linked copy."""
    copies = []
    for p in index.get(key[0], []):
        if p in exclude:
            continue
        try:
            rec = read_record(p)
        except (ValueError, OSError):
            continue
        if rec.status != "done" or rec.smoke != key[1] or not rec.run_id.endswith(key[0]):
            continue
        if rec.reused_from is None:
            return p
        copies.append(p)
    return copies[0] if copies else None


def origin_of(source: Path, results_dir: Path) -> dict[str, str]:
    """{"suite", "run_id", "path"} of the record that trained the run whose record is `source`."""
    rec = read_record(source)
    return dict(rec.reused_from) if rec.reused_from else {"suite": rec.suite, "run_id": rec.run_id,
                                                          "path": _relative(source, results_dir)}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _in_progress(path: Path) -> bool:
    """A checkpoint to resume, or another process holding the run's lock."""
    if path.with_suffix(".ckpt").is_file():
        return True
    lock_path = path.with_suffix(".lock")
    if not lock_path.exists():
        return False
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(lock_path), timeout=0):
            return False
    except Timeout:
        return True


def resolve_plan(suites: list[tuple[SuiteSpec, Path]], runs: list[RunSpec], results_dir: Path, *,
                 retry_failed: bool = False, force: bool = False) -> MultiPlan:
    """Decide per planned run: skip (own record), reuse a finished record of the same hash, train (one occurrence
    per hash: one with a checkpoint or held elsewhere first, else the first in plan order) or link to that one.

    --force reuses nothing: the primary retrains and the others are linked again.
    """
    from benchmark.runner import should_run

    index = finished_index(results_dir)
    items: list[PlannedRun] = []
    pending: dict[RunKey, list[PlannedRun]] = {}
    seen: set[Path] = set()
    for r in runs:
        path = record_path(results_dir, r.suite, r.cell, r.run_id)
        if path in seen:
            continue
        seen.add(path)
        go, status = should_run(path, retry_failed, force)
        item = PlannedRun(r, path, run_key(r), "train" if go else ("done" if status == "done" else "failed"))
        items.append(item)
        if go:
            pending.setdefault(item.key, []).append(item)
    for key, group in pending.items():
        src = None if force else find_finished(index, key, {g.path for g in group})
        if src is not None:
            origin = origin_of(src, results_dir)
            for g in group:
                g.action, g.source, g.origin = "reuse", src, origin
            continue
        primary = next((g for g in group if _in_progress(g.path)), group[0])
        origin = {"suite": primary.run.suite, "run_id": primary.run.run_id,
                  "path": _relative(primary.path, results_dir)}
        for g in group:
            if g is not primary:
                g.action, g.source, g.primary, g.origin = "link", primary.path, primary, origin
    return MultiPlan(suites, items, results_dir, force, index)


def linked_record(source: Path, run: RunSpec, results_dir: Path) -> RunRecord:
    """A copy of a finished record for another occurrence of the same run: suite, version, row, column and run id
    of `run`, and `reused_from` naming the record that trained it."""
    rec = read_record(source)
    if rec.status != "done" or rec.smoke != run.smoke or not rec.run_id.endswith(run.settings.run_hash()):
        raise SuiteError(f"{source}: not a finished record of run {run.run_id}'s settings")
    return rec.model_copy(update={"suite": run.suite, "suite_version": run.suite_version, "row": run.row,
                                  "column": run.column, "run_id": run.run_id,
                                  "reused_from": origin_of(source, results_dir)}, deep=True)


def write_link(item: PlannedRun, source: Path, results_dir: Path, *, retry_failed: bool = False,
               force: bool = False) -> str:
    """Write `item`'s linked record (atomically, under the run's lock); returns its outcome status.

    A record written meanwhile is kept (re-checked under the lock), and a finished record of another run id at
    the path is never overwritten.
    """
    from filelock import FileLock, Timeout

    from benchmark.runner import should_run

    path = item.path
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.with_suffix(".lock")), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return "running elsewhere"
    try:
        go, status = should_run(path, retry_failed, force)
        if not go:
            return f"skipped ({status})"
        if path.is_file():
            try:
                old = read_record(path)
            except (ValueError, OSError):
                old = None
            if old is not None and old.status == "done" and old.run_id != item.run.run_id:
                return f"skipped (done record of {old.run_id} kept)"
        rec = linked_record(source, item.run, results_dir)
        write_record(path, rec)
        origin = rec.reused_from or {}
        return f"reused ({origin.get('suite')}/{origin.get('run_id')})"
    finally:
        lock.release()


# ------------------------------------------------------------------------------------------ throughput profile


def cache_dir() -> Path:
    """$LTBENCH_CACHE_DIR, else the user cache dir of lt-bench (~/.cache/lt-bench)."""
    env = os.environ.get("LTBENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lt-bench"))


def profile_path(device_name: str) -> Path:
    """Where the last bench result of a device lives: <cache>/bench/<slug of the device name>.json."""
    return cache_dir() / "bench" / f"{slug(device_name)}.json"


def save_profile(result: dict[str, Any]) -> Path:
    """Keep a `lt-bench bench` result (its JSON) as the throughput profile of its device; returns the file."""
    if not result.get("device_name") or not isinstance(result.get("variants"), list):
        raise ValueError("a bench result needs 'device_name' and a 'variants' list")
    path = profile_path(str(result["device_name"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(result, indent=1, default=str))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_LOOP_ROW = re.compile(r"^loop(?: packed K=(\d+))?(\+compile)?$")


def parse_profile(result: dict[str, Any]) -> dict[bool, dict[int, float]]:
    """{compiled?: {K: images/s}} of the product loop rows of a bench result.

    Rows are `loop` (K = 1), `loop packed K=16`, with `+compile` for torch.compile; newer results also give a
    product row the fields `function` and `k`. Rows without images/s (errors) and the reference configuration are
    left out; where two rows measure one K (a pack of one method and a heterogeneous pack), the slower counts.
    """
    out: dict[bool, dict[int, float]] = {False: {}, True: {}}
    for row in result.get("variants", []):
        ips = row.get("images_per_s")
        if not isinstance(ips, (int, float)) or ips <= 0:
            continue
        name = str(row.get("name", ""))
        if name.startswith("reference"):
            continue
        m = _LOOP_ROW.match(name)
        if "function" in row and row.get("k") is not None:
            k = int(row["k"])
            compiled = bool(row.get("compile")) or name.endswith("+compile")
        elif m:
            k = int(m.group(1) or 1)
            compiled = m.group(2) is not None
        else:
            continue
        out[compiled][k] = min(float(ips), out[compiled].get(k, math.inf))
    return out


def interpolate(points: dict[int, float], k: int) -> float:
    """Linear in K between measured pack sizes; clamped outside them."""
    ks = sorted(points)
    if k <= ks[0]:
        return points[ks[0]]
    if k >= ks[-1]:
        return points[ks[-1]]
    hi = next(i for i, x in enumerate(ks) if x >= k)
    k0, k1 = ks[hi - 1], ks[hi]
    return points[k0] + (points[k1] - points[k0]) * (k - k0) / (k1 - k0)


@dataclass
class Profile:
    """Images/s of the product loop by pack size on one device, and the file it came from."""

    device_kind: str
    device_name: str
    file: Path
    source: Literal["cache", "committed"]
    points: dict[bool, dict[int, float]]
    note: str | None = None
    model: str | None = None  # the backbone the bench measured (workload.model)

    def images_per_s(self, k: int, compiled: bool = False) -> float:
        pts = self.points[True] if compiled and self.points[True] else self.points[False] or self.points[True]
        return interpolate(pts, k)


def _read_profile(path: Path, source: Literal["cache", "committed"], kind: str) -> Profile:
    data = json.loads(path.read_text())
    points = parse_profile(data)
    if not points[False] and not points[True]:
        raise ValueError(f"{path}: no product-loop rows ('loop', 'loop packed K=...') with images_per_s")
    workload = data.get("workload") if isinstance(data.get("workload"), dict) else {}
    return Profile(kind, str(data.get("device_name", "?")), path, source, points, model=workload.get("model"))


def load_profile(device_kind: str) -> Profile:
    """The newest bench result in <cache>/bench/ whose device name matches `device_kind` (a name or part of one,
    e.g. 'h100'), else the committed reports/perf/bench-<kind>.json, else reports/perf/bench-h100.json."""
    kind = slug(device_kind)
    bench_dir = cache_dir() / "bench"
    cands = [p for p in bench_dir.glob("*.json") if p.stem == kind or f"-{kind}-" in f"-{p.stem}-"] \
        if bench_dir.is_dir() else []
    for p in sorted(cands, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return _read_profile(p, "cache", device_kind)
        except (ValueError, OSError, AttributeError):
            continue
    committed = REPO_ROOT / "reports" / "perf" / f"bench-{kind}.json"
    path = committed if committed.is_file() else COMMITTED_PROFILE
    try:
        prof = _read_profile(path, "committed", device_kind)
    except (ValueError, OSError) as e:
        raise SuiteError(f"no usable throughput profile ({e})") from None
    if kind not in slug(prof.device_name).split("-") and kind != slug(prof.device_name):
        prof.note = (f"no bench result for '{device_kind}' in {bench_dir}; projected with the committed profile "
                     f"of {prof.device_name}")
    return prof


def default_device_kind() -> str:
    """The local GPU's name, else 'h100'."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # no usable torch / driver: project for the committed profile
        pass
    return "h100"


# ------------------------------------------------------------------------------------------------- costing


@dataclass(frozen=True)
class RunCost:
    """Images one run still has to process: training images, test images (evaluated after every epoch)."""

    dataset: str
    epochs: int
    train_images: int
    eval_images: int
    projected: bool  # an in-memory dataset of the bench's kind (CIFAR-shaped); file datasets are not


def epoch_images(d: DataSettings) -> tuple[int, int]:
    """(train images, test images) of one epoch of a dataset, from its class counts (no data needed)."""
    from benchmark.components import dataset_counts, dataset_options
    from benchmark.data.base import DataError

    opts = {k: v for k, v in dataset_options(d).items() if k != "imbalance_ratio"}
    try:
        counts = dataset_counts(d.name, d.imbalance_ratio, **opts)
    except DataError:
        if d.name not in OFFICIAL_TRAIN:
            raise
        n, c = OFFICIAL_TRAIN[d.name]
        return n, c * TEST_PER_CLASS[d.name]
    per_class = TEST_PER_CLASS.get(d.name, d.test_per_class or 50)
    return sum(counts), len(counts) * per_class


def run_cost(s: RunSettings, start_epoch: int = 0, with_stage1: bool = True) -> RunCost:
    """What a run costs from `start_epoch`: train images per epoch (capped by steps_per_epoch) x epochs, and the
    test split (capped by eval.test_limit_per_class) per epoch; a second stage adds its epochs."""
    n, test = epoch_images(s.data)
    if s.eval.test_limit_per_class is not None:
        per_class = TEST_PER_CLASS.get(s.data.name, s.data.test_per_class or 50)
        test = test // per_class * min(per_class, s.eval.test_limit_per_class)

    def per_epoch(bs: int) -> int:
        cap = s.train.steps_per_epoch
        return n if cap is None else min(n, cap * bs)

    epochs = max(s.train.epochs - start_epoch, 0) if (s.stage2 is None or with_stage1) else 0
    train, ev = epochs * per_epoch(s.train.batch_size), epochs * test
    if s.stage2 is not None:
        epochs += s.stage2.epochs
        train += s.stage2.epochs * per_epoch(s.stage2.batch_size)
        ev += s.stage2.epochs * test
    return RunCost(s.data.name, epochs, train, ev, s.data.name not in FILE_DATASETS)


# ------------------------------------------------------------------------------------------------ data check


def check_data(d: DataSettings) -> tuple[Literal["missing", "download"], str] | None:
    """None when the run's files are there (or generated); else ('missing' | 'download', what to fix)."""
    from benchmark.data.base import default_data_root

    if d.name in ("cifar10_lt", "cifar100_lt"):
        from benchmark.data.cifar import cifar_folder, cifar_missing

        c = 10 if d.name == "cifar10_lt" else 100
        root = Path(d.root).expanduser() if d.root else default_data_root()
        missing = cifar_missing(root, c)
        if not missing:
            return None
        folder = cifar_folder(root, c)
        if d.download:
            return "download", (f"CIFAR-{c} not in {folder}: downloaded through torchvision on first use "
                                f"(needs network; or put the python-version files there / set data.root)")
        return "missing", (f"CIFAR-{c} files not found in {folder} ({', '.join(p.name for p in missing)}) and "
                           f"data.download=false: put the official python-version files there, set data.root or "
                           f"$LTBENCH_DATA, or allow the download")
    if d.name in FILE_DATASETS:
        from benchmark.data.split_lists import LAYOUTS, split_paths

        lay = LAYOUTS[d.name]
        base, train, test = split_paths(d.name, d.root, d.train_list, d.test_list)
        problems = [f"split list {p} not found" for p in (train, test) if not p.is_file()]
        if not base.is_dir():
            problems.append(f"image root {base} does not exist")
        elif train.is_file():
            first = next((ln.split()[0] for ln in train.read_text(errors="replace").splitlines() if ln.strip()), "")
            if first and not (base / first).is_file():
                problems.append(f"first listed image {base / first} not found")
        if not problems:
            return None
        return "missing", (f"{lay.title}: {'; '.join(problems)}. Put the official lists ({lay.train_file}, "
                           f"{lay.test_file}; from {lay.source}) and {lay.images} in {base}, or set data.root "
                           f"(and data.train_list / data.test_list)")
    return None  # generated in code (synthetic_lt) or a dataset that checks its own files


# ----------------------------------------------------------------------------------------- dry-run schema


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanSuite(_Out):
    suite: str
    version: int
    path: str
    planned: int  # runs of this suite in the plan


class PlanCounts(_Out):
    planned: int  # runs of all suites (rows x columns x seeds)
    distinct: int  # distinct (settings hash with seed, smoke): = finished + to_train + failed
    finished: int  # distinct runs with a finished record somewhere that is kept (own or reused)
    to_train: int  # distinct runs that would train (jobs sent to the executor)
    failed: int  # distinct runs whose only records failed and are not retried (--retry-failed)
    reuse: int  # planned runs that would get a copy of an existing finished record
    link: int  # planned runs that would get a copy of a run trained in this invocation
    skipped: int  # planned runs with their own record (done or failed), left alone


class PlanRun(_Out):
    suite: str
    run_id: str
    row: str
    column: str | None
    seed: int
    run_hash: str
    smoke: bool
    action: Action
    source: str | None  # reuse / link: "<suite>/<run_id>" of the record that trained (or will train) it
    path: str  # its record file


class PackSize(_Out):
    k: int
    source: str  # where K comes from


class ProfilePoint(_Out):
    k: int
    images_per_s: float


class PlanProfile(_Out):
    device_kind: str
    device_name: str
    file: str
    source: Literal["cache", "committed"]
    loop: list[ProfilePoint]  # product loop, by pack size K
    loop_compile: list[ProfilePoint]  # the same under torch.compile (used when every member sets train.compile)
    note: str | None


class PlanPack(_Out):
    index: int
    size: int  # members (K of the throughput profile)
    runs: list[str]  # "<suite>/<run_id>" of the members
    dataset: str
    backbone: str
    member_epochs: int
    train_images: int
    eval_images: int
    images_per_s: float | None  # profile at K = size; None when not projected
    gpu_hours: float | None
    projected: bool


class NotProjected(_Out):
    dataset: str
    runs: int
    member_epochs: int
    train_images: int
    eval_images: int
    reason: str


class PlanTotals(_Out):
    packs: int
    member_epochs: int
    train_images: int
    eval_images: int
    projected_runs: int
    projected_gpu_hours: float  # one GPU, packs one after another
    not_projected: list[NotProjected]


class DataIssue(_Out):
    suite: str
    row: str
    columns: list[str]
    dataset: str
    status: Literal["missing", "download"]
    message: str


class DryRunPlan(_Out):
    """`lt-bench run suite ... --dry-run --json` (README: "Planning several suites")."""

    plan_version: Literal[1]
    suites: list[PlanSuite]
    smoke: bool
    results_dir: str
    counts: PlanCounts
    pack_size: PackSize
    profile: PlanProfile
    totals: PlanTotals
    packs: list[PlanPack]
    runs: list[PlanRun]
    data: list[DataIssue]
    notes: list[str]


def count_plan(mp: MultiPlan) -> PlanCounts:
    by_key: dict[RunKey, set[str]] = {}
    for p in mp.runs:
        by_key.setdefault(p.key, set()).add(p.action)
    n = {a: sum(p.action == a for p in mp.runs) for a in ("train", "link", "reuse", "done", "failed")}
    to_train = sum("train" in acts for acts in by_key.values())
    finished = sum("train" not in acts and bool(acts & {"done", "reuse"}) for acts in by_key.values())
    return PlanCounts(planned=len(mp.runs), distinct=len(by_key), finished=finished, to_train=to_train,
                      failed=len(by_key) - to_train - finished, reuse=n["reuse"], link=n["link"],
                      skipped=n["done"] + n["failed"])


def pack_size(mp: MultiPlan, jobs: list[Any], runs_per_gpu: int | None) -> PackSize:
    """K for the packs: --runs-per-gpu, else the auto size on this machine's GPU, else 16 for a CUDA projection."""
    if runs_per_gpu is not None:
        return PackSize(k=runs_per_gpu, source="--runs-per-gpu")
    from benchmark.packing import auto_pack_size

    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:  # no usable torch: as a CPU machine
        cuda = False
    if cuda:
        return PackSize(k=auto_pack_size(jobs, None), source="auto size for the runs on this machine's GPU")
    return PackSize(k=CUDA_PROJECTION_PACK, source="no GPU on this machine, the size used for a CUDA projection "
                                                   "(--runs-per-gpu sets K)")


def dry_run(mp: MultiPlan, *, runs_per_gpu: int | None = None, device_kind: str | None = None,
            tracker: str = "wandb", retry_failed: bool = False) -> DryRunPlan:
    """The plan without training: counts, packs (group_jobs with the K that would be used), images and projected
    GPU-hours on one GPU from a bench profile, and the rows whose data is missing."""
    from benchmark.engine.checkpoint import checkpoint_epoch
    from benchmark.packing import group_jobs
    from benchmark.runner import RunJob

    primaries = mp.primaries
    jobs = [RunJob(p.run, p.path, tracker, retry_failed, mp.force) for p in primaries]
    k = pack_size(mp, jobs, runs_per_gpu)
    units = group_jobs(jobs, k.k) if jobs else []
    prof = load_profile(device_kind or default_device_kind())
    stage1_ok = _stage1_available(mp)
    by_path = {p.path: p for p in primaries}
    packs: list[PlanPack] = []
    skipped: dict[str, NotProjected] = {}
    for i, unit in enumerate(units):
        members = [by_path[j.path] for j in unit]
        costs = []
        for m in members:
            ckpt = m.path.with_suffix(".ckpt")
            start = 0 if mp.force or not ckpt.is_file() else checkpoint_epoch(ckpt)
            s = m.run.settings
            costs.append(run_cost(s, start, with_stage1=s.stage2 is None
                                  or (m.run.suite, s.stage1().run_hash()) not in stage1_ok))
        train, ev = sum(c.train_images for c in costs), sum(c.eval_images for c in costs)
        epochs = sum(c.epochs for c in costs)
        projected = all(c.projected for c in costs)
        ips = prof.images_per_s(len(unit), all(m.run.settings.train.compile for m in members)) if projected else None
        hours = (train + EVAL_COST * ev) / ips / 3600 if ips else None
        s0 = members[0].run.settings
        packs.append(PlanPack(index=i, size=len(unit), runs=[m.label for m in members], dataset=s0.data.name,
                              backbone=s0.backbone.name, member_epochs=epochs, train_images=train, eval_images=ev,
                              images_per_s=ips, gpu_hours=hours, projected=projected))
        if not projected:
            for c in costs:
                np_ = skipped.setdefault(c.dataset, NotProjected(
                    dataset=c.dataset, runs=0, member_epochs=0, train_images=0, eval_images=0,
                    reason=f"no throughput profile for {c.dataset}: bench measures CIFAR-shaped in-memory runs"))
                np_.runs += 1
                np_.member_epochs += c.epochs
                np_.train_images += c.train_images
                np_.eval_images += c.eval_images
    totals = PlanTotals(packs=len(packs), member_epochs=sum(p.member_epochs for p in packs),
                        train_images=sum(p.train_images for p in packs), eval_images=sum(p.eval_images for p in packs),
                        projected_runs=sum(p.size for p in packs if p.projected),
                        projected_gpu_hours=sum(p.gpu_hours or 0.0 for p in packs),
                        not_projected=list(skipped.values()))
    notes = [f"K: {k.source}",
             f"projection: {prof.device_name} profile from {prof.file} ({prof.source}); seconds per pack = (train "
             f"images + {EVAL_COST:.2f} x test images) / images/s of the product loop at K = pack size"]
    if prof.note:
        notes.append(prof.note)
    other = sorted({p.backbone for p in packs if p.projected and prof.model and p.backbone != prof.model})
    if other:
        notes.append(f"the profile measures {prof.model}; runs of {', '.join(other)} are projected at its images/s")
    if any(p.run.settings.train.device == "cpu" for p in primaries):
        notes.append("runs with train.device=cpu train on the CPU; they are projected as if on the GPU")
    if any(p.run.settings.stage2 is not None for p in primaries):
        notes.append("two-stage runs: stage 1 is counted unless a finished or planned run of the suite has its "
                     "settings; stage 2 is counted at the full cost of a training image")
    return DryRunPlan(
        plan_version=1,
        suites=[PlanSuite(suite=s.suite, version=s.version, path=str(p),
                          planned=sum(r.run.suite == s.suite for r in mp.runs)) for s, p in mp.suites],
        smoke=any(p.run.smoke for p in mp.runs), results_dir=str(mp.results_dir), counts=count_plan(mp),
        pack_size=k,
        profile=PlanProfile(device_kind=prof.device_kind, device_name=prof.device_name, file=str(prof.file),
                            source=prof.source, note=prof.note,
                            loop=[ProfilePoint(k=kk, images_per_s=v) for kk, v in sorted(prof.points[False].items())],
                            loop_compile=[ProfilePoint(k=kk, images_per_s=v)
                                          for kk, v in sorted(prof.points[True].items())]),
        totals=totals, packs=packs,
        runs=[PlanRun(suite=p.run.suite, run_id=p.run.run_id, row=p.run.row, column=p.run.column, seed=p.run.seed,
                      run_hash=p.key[0], smoke=p.run.smoke, action=p.action,
                      source=f"{p.origin['suite']}/{p.origin['run_id']}" if p.origin else None, path=str(p.path))
              for p in mp.runs],
        data=data_issues(mp), notes=notes)


def _stage1_available(mp: MultiPlan) -> set[tuple[str, str]]:
    """(suite, run hash) of runs whose weights a two-stage run of that suite could load (finished or planned)."""
    out = {(p.run.suite, p.key[0]) for p in mp.runs if p.action != "failed"}
    return out | {(path.parent.parent.name, h) for h, paths in mp.index.items() for path in paths}


def data_issues(mp: MultiPlan) -> list[DataIssue]:
    """One entry per (suite, row) with work to do whose data is missing or must be downloaded."""
    checked: dict[str, tuple[str, str] | None] = {}
    out: dict[tuple[str, str], DataIssue] = {}
    for p in mp.runs:
        if p.action != "train" and p.action != "link":
            continue
        d = p.run.settings.data
        key = d.model_dump_json()
        if key not in checked:
            checked[key] = check_data(d)
        issue = checked[key]
        if issue is None:
            continue
        row = (p.run.suite, p.run.row)
        if row not in out:
            out[row] = DataIssue(suite=p.run.suite, row=p.run.row, columns=[], dataset=d.name, status=issue[0],
                                 message=issue[1])
        if p.run.column is not None and p.run.column not in out[row].columns:
            out[row].columns.append(p.run.column)
    return list(out.values())


def format_count(n: float) -> str:
    """12_345_678 -> '12.3 M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f}" if not math.isnan(n) else "-"
