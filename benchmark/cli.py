"""The lt-bench command line (Typer): thin commands that forward to config, runner, report and registries."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from benchmark.config.suite import REPO_ROOT, SuiteError, list_suite_names, load_suite, parse_set, plan
from benchmark.schema.registry import UnknownComponentError

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="lt-bench: paper tables of long-tailed classification as suites of training runs.")
suites_app = typer.Typer(no_args_is_help=True, help="List and show the suites in suites/.")
run_app = typer.Typer(no_args_is_help=True, help="Run training jobs.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(suites_app, name="suites")
app.add_typer(run_app, name="run")
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True)

SuiteArg = Annotated[str, typer.Argument(help="Suite name (in suites/) or path to a suite YAML.")]
ResultsOpt = Annotated[Path, typer.Option("--results-dir", help="Where result records live.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")]
SeedsOpt = Annotated[str | None, typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: suite's).")]
SmokeOpt = Annotated[bool, typer.Option("--smoke", help="Tiny epochs and data: at most a minute per run on CPU.")]
RowsOpt = Annotated[str | None, typer.Option("--rows", help="Comma-separated rows (display names or slugs) to run.")]


def fail(msg: str, code: int = 2) -> None:
    """Print one error line and exit (2 = bad input)."""
    err.print(f"error: {msg}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code)


def one_line_errors(command: Any) -> Any:
    """OS errors, no memory, stops (SIGTERM, Ctrl-C), unusable checkpoints: one line and an exit code (fault_line)."""
    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> None:
        from benchmark.run.faults import FAULTS, fault_line

        try:
            command(*args, **kwargs)
        except FAULTS as e:
            fail(*fault_line(e))
    return wrapper


def split_rows(text: str | None) -> list[str] | None:
    return [r.strip() for r in text.split(",") if r.strip()] if text else None


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        fail(f"--seeds '{text}': expected comma-separated integers, e.g. 0,1,2")
    if not seeds or any(s < 0 or s >= 2**32 for s in seeds) or len(set(seeds)) != len(seeds):
        fail(f"--seeds '{text}': give distinct seeds in [0, 2^32), e.g. 0,1,2")
    return seeds


@suites_app.command("list")
def suites_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False
                ) -> None:
    """List the suites with their titles and run counts."""
    rows = []
    for name in list_suite_names():
        try:
            spec, _ = load_suite(name)
            rows.append({"suite": name, "version": spec.version, "title": spec.title,
                         "rows": len(spec.rows), "runs": len(plan(spec))})
        except SuiteError as e:
            rows.append({"suite": name, "error": str(e)})
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    t = Table("suite", "v", "runs", "title")
    for r in rows:
        t.add_row(r["suite"], str(r.get("version", "")), str(r.get("runs", "")), r.get("title", r.get("error", "")))
    console.print(t)


@suites_app.command("show")
def suites_show(name: SuiteArg) -> None:
    """Show a suite's rows and the resolved settings of its first run."""
    try:
        spec, path = load_suite(name)
        runs = plan(spec)
    except SuiteError as e:
        fail(str(e))
    console.print(f"[bold]{spec.suite}[/bold] v{spec.version}: {spec.title}  ({path})", highlight=False)
    t = Table("row", "column", "method", "seeds", "paper")
    for row in spec.rows:
        cols = [c.name for c in spec.columns] or [""]
        for c in cols:
            t.add_row(row.name + (" (cited)" if row.cited else ""), c, json.dumps(row.method),
                      "-" if row.cited else ",".join(map(str, spec.seeds)), json.dumps(row.paper))
    console.print(t)
    if runs:
        console.print("First run's resolved settings:")
        console.print_json(runs[0].settings.model_dump_json())


@app.command("validate")
@one_line_errors
def validate(name: SuiteArg) -> None:
    """Check a suite: schema, every row's settings, every component name. Trains nothing."""
    from benchmark.config.validation import check_plan

    try:
        spec, path = load_suite(name)
        runs = plan(spec)
        check_plan(runs, str(path))
    except (SuiteError, UnknownComponentError) as e:
        fail(str(e))
    console.print(f"{path}: ok ({len(spec.rows)} rows, {len(runs)} runs)", highlight=False)


@run_app.command("suite")
@one_line_errors
def run_suite_cmd(
    names: Annotated[list[str], typer.Argument(help="Suite names (in suites/) or paths to suite YAMLs; several are "
                                                    "planned together and each distinct run trains once.")],
    smoke: SmokeOpt = False,
    rows: RowsOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, packs, images and projected GPU-hours; "
                                                            "train nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print the plan as JSON (schema in the "
                                                         "README).")] = False,
    device_kind: Annotated[str | None, typer.Option("--device-kind", help="With --dry-run: the GPU to project for "
                                                    "(bench profile; default: this machine's GPU, else h100).")]
    = None,
    seeds: SeedsOpt = None,
    set_: SetOpt = None,
    results_dir: ResultsOpt = REPO_ROOT / "results",
    tracker: Annotated[str, typer.Option("--tracker", help="wandb (offline without an API key) or none.")] = "wandb",
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run again the runs recorded as failed.")]
    = False,
    force: Annotated[bool, typer.Option("--force", help="Re-run even finished runs (from scratch).")] = False,
    executor: Annotated[str, typer.Option("--executor", help="inline (this process), local (a process per GPU "
                                                             "slot) or slurm (submitit job array).")] = "inline",
    gpus: Annotated[int | None, typer.Option("--gpus", help="local: GPU slots to use (default: all visible; "
                                                            "on a CPU machine, fake slots).")] = None,
    runs_per_gpu: Annotated[int | None, typer.Option(
        "--runs-per-gpu", help="Runs sharing one GPU. Runs that can share a step (same batch shape, schedule and "
                               "execution; any loss, mixer, sampler, seed) train as one pack (default: as many as "
                               "the free GPU memory holds, at most 16; slurm: 16 per array task); others in K "
                               "processes (local). 1 turns packing off.")] = None,
    slurm_profile: Annotated[Path | None, typer.Option("--slurm-profile", help="slurm: YAML with partition, "
                                                       "account, time_min, gpus_per_run, cpus_per_task, ...")] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="slurm: partition.")] = None,
    account: Annotated[str | None, typer.Option("--account", help="slurm: account.")] = None,
    time_min: Annotated[int | None, typer.Option("--time", help="slurm: minutes per run.")] = None,
    gpus_per_run: Annotated[int | None, typer.Option("--gpus-per-run", help="local / slurm: GPUs (processes) per "
                                                     "run; > 1 trains one run data-parallel (DDP).")] = None,
    slurm_cluster: Annotated[str | None, typer.Option("--slurm-cluster", help="slurm: submitit cluster override "
                                                      "(local or debug run the Slurm path without Slurm).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="slurm: wait for the jobs and report their outcome.")] = False,
) -> None:
    """Train every run of the suites that has no finished record; write one record per planned run.

    Runs with the same settings (hash with seed) in several suites or rows train once: the others get a copy of
    its record (`reused_from`), as do runs whose settings finished earlier in any suite.
    """
    from benchmark.run.executors import make_executor
    from benchmark.run.planning import load_suites
    from benchmark.run.progress import RunProgress
    from benchmark.run.runner import run_suites

    if tracker not in ("wandb", "none"):
        fail(f"--tracker '{tracker}': use wandb or none")
    if as_json and not dry_run:
        fail("--json goes with --dry-run")
    try:
        suites = load_suites(names)
        folder = results_dir / (suites[0][0].suite if len(suites) == 1 else "_multi") / "_slurm"
        ex = make_executor(executor, gpus, runs_per_gpu, slurm_profile, partition, account, time_min, gpus_per_run,
                           slurm_cluster, wait, folder)  # checks the executor options, dry run or not
        if dry_run:
            dry_run_cmd(suites, seeds=parse_seeds(seeds), overrides=parse_set(set_ or []), smoke=smoke,
                        rows=split_rows(rows), results_dir=results_dir, tracker=tracker, retry_failed=retry_failed,
                        force=force, runs_per_gpu=runs_per_gpu, device_kind=device_kind, as_json=as_json)
            return
        outcomes = run_suites(suites, seeds=parse_seeds(seeds), overrides=parse_set(set_ or []),
                              smoke=smoke, results_dir=results_dir, tracker=tracker,
                              retry_failed=retry_failed, force=force, executor=ex, rows=split_rows(rows),
                              progress=RunProgress(console))
    except (SuiteError, UnknownComponentError) as e:
        fail(str(e))
    console.print(outcome_table(suites, outcomes))
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def outcome_table(suites: list, outcomes: list) -> Table:
    """One line per planned run: run id (with its suite when there are several), row, seed, status, top-1."""
    many = len(suites) > 1
    title = ", ".join(s.suite for s, _ in suites) + f": {len(outcomes)} runs"
    t = Table("run", "row", "seed", "status", "best top-1", title=title)
    for o in outcomes:
        t.add_row((f"{o.run.suite}/" if many else "") + o.run.run_id,
                  o.run.row + (f" [{o.run.column}]" if o.run.column else ""), str(o.run.seed),
                  o.status, f"{o.acc:.2f}" if o.acc is not None else "")
    return t


def dry_run_cmd(suites: list, *, seeds: list[int] | None, overrides: dict, smoke: bool, rows: list[str] | None,
                results_dir: Path, tracker: str, retry_failed: bool, force: bool, runs_per_gpu: int | None,
                device_kind: str | None, as_json: bool) -> None:
    """`run suite ... --dry-run`: the per-run table and the costed plan (or the plan as JSON)."""
    from benchmark.run.planning import plan_suites, resolve_plan
    from benchmark.run.projection import dry_run, format_count
    from benchmark.run.runner import planned_outcomes

    runs = plan_suites(suites, seeds=seeds, overrides=overrides, smoke=smoke, rows=rows)
    mp = resolve_plan(suites, runs, results_dir, retry_failed=retry_failed, force=force)
    report = dry_run(mp, runs_per_gpu=runs_per_gpu, device_kind=device_kind, tracker=tracker,
                     retry_failed=retry_failed)
    if as_json:
        print(report.model_dump_json(indent=1))
        return
    console.print(outcome_table(suites, planned_outcomes(mp)))
    c, tot, prof = report.counts, report.totals, report.profile
    lines = [
        f"Dry run of {', '.join(s.suite for s in report.suites)}: nothing is trained or written.",
        f"  runs in the suites       {c.planned}",
        f"  distinct runs            {c.distinct}   (settings hash with seed; {c.planned - c.distinct} shared)",
        f"  already finished         {c.finished}   ({c.reuse} runs would get a copy of a finished record, "
        f"{c.skipped} have their own record)",
        f"  to train                 {c.to_train}   ({c.link} more runs get a copy when their twin finishes)",
        f"  packs                    {tot.packs}   (K = {report.pack_size.k}: {report.pack_size.source})",
        f"  member-epochs            {tot.member_epochs:,}",
        f"  images to train          {format_count(tot.train_images)}   (+ {format_count(tot.eval_images)} test "
        f"images evaluated)",
        f"  projected GPU-hours      {tot.projected_gpu_hours:.3g} on one {prof.device_name} "
        f"({tot.projected_runs} runs; profile {prof.file}, {prof.source})",
    ]
    if c.failed:
        lines.append(f"  failed, not retried      {c.failed}   (--retry-failed)")
    for n in tot.not_projected:
        lines.append(f"  not projected            {n.runs} runs on {n.dataset}: {n.member_epochs:,} member-epochs, "
                     f"{format_count(n.train_images)} train + {format_count(n.eval_images)} test images ({n.reason})")
    lines += [f"  note: {n}" for n in report.notes[2:]]  # the first two say where K and the profile come from
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
    if report.packs:
        t = Table("#", "K", "dataset", "backbone", "epochs", "images", "img/s", "GPU-h", "runs",
                  title=f"packs ({len(report.packs)})")
        for p in report.packs[:40]:
            first = p.runs[0] + (f" +{len(p.runs) - 1}" if len(p.runs) > 1 else "")
            t.add_row(str(p.index), str(p.size), p.dataset, p.backbone, f"{p.member_epochs:,}",
                      format_count(p.train_images), f"{p.images_per_s:,.0f}" if p.images_per_s else "-",
                      f"{p.gpu_hours:.3f}" if p.gpu_hours is not None else "not projected", first)
        console.print(t)
        if len(report.packs) > 40:
            console.print(f"... {len(report.packs) - 40} more packs (--json lists all)", highlight=False)
    missing = [d for d in report.data if d.status == "missing"]
    download = [d for d in report.data if d.status == "download"]
    if missing:
        console.print(f"Data missing for {len(missing)} rows (these runs would fail):", highlight=False)
        for d in missing:
            cols = f" [{', '.join(d.columns)}]" if d.columns else ""
            console.print(f"  {d.suite} / {d.row}{cols}: {d.message}", highlight=False, markup=False, soft_wrap=True)
    if download:
        for msg in sorted({d.message for d in download}):
            n = sum(d.message == msg for d in download)
            console.print(f"Data to download ({n} rows): {msg}", highlight=False, markup=False, soft_wrap=True)


@app.command("status")
@one_line_errors
def status_cmd(name: SuiteArg, results_dir: ResultsOpt = REPO_ROOT / "results", set_: SetOpt = None,
               seeds: SeedsOpt = None, smoke: SmokeOpt = False) -> None:
    """Per planned run: done, failed, running, interrupted (resumes), queued (with its job id) or not started."""
    from benchmark.run.executors import read_queue, run_status
    from benchmark.run.records import record_path

    try:
        spec, _ = load_suite(name)
        runs = plan(spec, seeds=parse_seeds(seeds), overrides=parse_set(set_ or []), smoke=smoke)
        queue = read_queue(results_dir / spec.suite)
    except SuiteError as e:
        fail(str(e))
    t = Table("run", "row", "seed", "status", title=f"{spec.suite}: {len(runs)} runs")
    counts: dict[str, int] = {}
    for r in runs:
        st = run_status(record_path(results_dir, r.suite, r.cell, r.run_id), r.run_id, queue)
        counts[st.split(" ")[0]] = counts.get(st.split(" ")[0], 0) + 1
        t.add_row(r.run_id, r.row + (f" [{r.column}]" if r.column else ""), str(r.seed), st)
    console.print(t)
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), highlight=False)


@app.command("report")
@one_line_errors
def report_cmd(
    name: SuiteArg,
    results_dir: ResultsOpt = REPO_ROOT / "results",
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where the .md, .csv and .png go.")]
    = REPO_ROOT / "reports",
    set_: SetOpt = None,
    seeds: SeedsOpt = None,
    smoke: SmokeOpt = False,
) -> None:
    """Regenerate a suite's table (paper, ours mean ± std, delta) and plot from result records."""
    from benchmark.report import build_report

    try:
        spec, _ = load_suite(name)
        files = build_report(spec, results_dir, out_dir, overrides=parse_set(set_ or []), smoke=smoke,
                             seeds=parse_seeds(seeds))
    except SuiteError as e:
        fail(str(e))
    print(files.text)
    console.print(f"wrote {files.markdown}, {files.csv}, {files.plot}", highlight=False)


@data_app.command("stats")
def data_stats(
    dataset: Annotated[str, typer.Argument(help="Dataset name, e.g. cifar100_lt.")],
    imbalance_ratio: Annotated[float, typer.Option("--imbalance-ratio", help="n_max / n_min (>= 1).")] = 100.0,
    many_above: Annotated[int, typer.Option(help="Many-shot: n > this.")] = 100,
    few_below: Annotated[int, typer.Option(help="Few-shot: n < this.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Class counts and many/medium/few group sizes of a long-tailed train split (no images needed)."""
    from benchmark.config.catalog import dataset_counts
    from benchmark.data.base import DataError
    from benchmark.data.profile import shot_groups

    if imbalance_ratio < 1:
        fail(f"--imbalance-ratio {imbalance_ratio}: must be >= 1")
    try:
        counts = dataset_counts(dataset, imbalance_ratio)
    except (UnknownComponentError, DataError) as e:
        fail(str(e))
    g = shot_groups(counts, many_above, few_below).sizes()
    out = {"dataset": dataset, "imbalance_ratio": imbalance_ratio, "num_classes": len(counts),
           "total": sum(counts), "max": max(counts), "min": min(counts), "groups": g,
           "thresholds": {"many": f"n > {many_above}", "few": f"n < {few_below}"}, "class_counts": counts}
    if as_json:
        print(json.dumps(out))
        return
    console.print(f"{dataset} ratio {imbalance_ratio:g}: {len(counts)} classes, total {sum(counts):,}, "
                  f"max {max(counts)}, min {min(counts)}; many/medium/few {g['many']}/{g['medium']}/{g['few']}",
                  highlight=False, soft_wrap=True)


@app.command("ls")
def ls_cmd(kind: Annotated[str | None, typer.Argument(help="datasets|losses|rules|mixers|samplers|schedules|backbones")]
           = None) -> None:
    """List registered components with a one-line description."""
    from benchmark.config.catalog import registries

    regs = registries()
    if kind is not None and kind not in regs:
        fail(f"unknown registry '{kind}': choose from {', '.join(regs)}")
    for name, entries in regs.items():
        if kind in (None, name):
            t = Table("name", "description", title=name)
            for n, d in entries:
                t.add_row(n, d)
            console.print(t)


@app.command("bench")
def bench_cmd(
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the JSON to this file.")] = None,
    ks: Annotated[str, typer.Option("--ks", help="Pack sizes K for the packed variant.")] = "1,4,8,16",
    steps: Annotated[int | None, typer.Option("--steps", help="Measured steps per variant.")] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="Also time the loop under "
                                                 "torch.compile (default: on CUDA).")] = None,
) -> None:
    """Images/s of the reference-style loop vs the fast path vs packed runs (CIFAR-100-LT shape, ResNet-32,
    CE + CMO), measured side by side in one process, with ratios and projected minutes per run and suite."""
    from benchmark.tools.bench import bench_main

    result = bench_main(device=device, json_out=str(out) if out else None, ks=ks, steps=steps, compile=compile)
    if as_json:
        print(json.dumps(result, indent=1, default=str))


def main() -> None:  # pragma: no cover
    app(prog_name="lt-bench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
