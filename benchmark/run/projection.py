"""What a plan costs before it runs: throughput profiles from `lt-bench bench`, images per run, projected
GPU-hours, missing data, and the `run suite --dry-run [--json]` report (no torch import)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from benchmark.config.catalog import dataset_counts, dataset_options
from benchmark.data.base import DataError, default_data_root
from benchmark.data.cifar import cifar_folder, cifar_missing
from benchmark.data.split_lists import LAYOUTS, split_paths
from benchmark.engine.checkpoint import checkpoint_epoch
from benchmark.run.jobs import RunJob
from benchmark.run.packing import auto_pack_size, group_jobs
from benchmark.run.planning import Action, MultiPlan, RunKey
from benchmark.run.profiles import default_device_kind, load_profile
from benchmark.schema.settings import DataSettings, RunSettings

CUDA_PROJECTION_PACK = 16  # K of a CUDA projection made on a machine without a GPU (no --runs-per-gpu)
EVAL_COST = 1 / 3  # a test image (forward only) costs about a third of a training image
FILE_DATASETS = ("imagenet_lt", "inat2018")  # decoded from files by DataLoader workers: no throughput profile
# Balanced test split per class (CIFAR test sets, ImageNet-LT test list, iNat-2018 val list), and the official
# train list sizes used when a split list is not present.
TEST_PER_CLASS = {"cifar10_lt": 1000, "cifar100_lt": 100, "imagenet_lt": 50, "inat2018": 3}
OFFICIAL_TRAIN = {"imagenet_lt": (115_846, 1000), "inat2018": (437_513, 8142)}


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
    if d.name in ("cifar10_lt", "cifar100_lt"):
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
    """K for the packs: 1 for suites timed in one process, --runs-per-gpu, else the auto size on this machine's GPU,
    else 16 for a CUDA projection."""
    if any(spec.timed for spec, _ in mp.suites):
        return PackSize(k=1, source="a timed suite: one run at a time in one process")
    if runs_per_gpu is not None:
        return PackSize(k=runs_per_gpu, source="--runs-per-gpu")
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
                                  or (m.run.suite, s.stage1().run_hash(m.run.suite_version)) not in stage1_ok))
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
