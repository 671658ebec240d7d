"""The lt-bench command line (Typer): thin commands that forward to config, runner, report and registries."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from benchmark import __version__
from benchmark.cli_common import console, err, fail
from benchmark.cli_data import data_app, figure_app, table1_report
from benchmark.cli_files import file_bench_cmd, register
from benchmark.cli_team import ReportTrackerOpt, log_report_files, print_offline_hint, team_app
from benchmark.config.suite import SuiteError, list_suite_names, load_suite, parse_set, plan
from benchmark.run.states import RunState
from benchmark.schema.registry import UnknownComponentError
from benchmark.tools.json_output import JsonOutput

app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", add_completion=True,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="lt-bench: paper tables of long-tailed classification as suites of training runs.")
suites_app = typer.Typer(no_args_is_help=True, help="List and show the suites in suites/.")
run_app = typer.Typer(no_args_is_help=True, help="Run training jobs.")
app.add_typer(suites_app, name="suites")
app.add_typer(run_app, name="run")
app.add_typer(data_app, name="data")
app.add_typer(team_app)  # pull, dashboard
app.add_typer(figure_app, name="figure")
register(data_app)  # data synth / prepare / check

SuiteArg = Annotated[str, typer.Argument(help="Suite name (in suites/) or path to a suite YAML.")]
ResultsOpt = Annotated[Path, typer.Option("--results-dir", help="Where result records live (relative: to the working "
                                                                  "directory).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")]
SeedsOpt = Annotated[str | None, typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: suite's).")]
SmokeOpt = Annotated[bool, typer.Option("--smoke", help="Tiny epochs and data: at most a minute per run on CPU.")]
RowsOpt = Annotated[str | None, typer.Option("--rows", help="Comma-separated rows (display names or slugs) to run.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON alone on stdout (anything else goes to stderr).")]


def print_version(value: bool) -> None:
    if value:
        print(f"lt-bench {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: Annotated[bool, typer.Option("--version", help="Print the lt-bench version and exit.",
                                                       callback=print_version, is_eager=True)] = False) -> None:
    """lt-bench: paper tables of long-tailed classification as suites of training runs."""


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
def validate(name: SuiteArg, as_json: JsonOpt = False) -> None:
    """Check a suite: schema, every row's settings, every component name. Trains nothing."""
    from benchmark.config.validation import check_plan

    with JsonOutput(as_json) as out:
        try:
            spec, path = load_suite(name)
            runs = plan(spec)
            check_plan(runs, str(path))
        except (SuiteError, UnknownComponentError) as e:
            fail(str(e))
    if as_json:
        return out.emit({"suite": spec.suite, "path": str(path), "ok": True, "rows": len(spec.rows), "runs": len(runs)})
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcomes (with --dry-run: the plan, schema in the "
                                                         "README) as JSON alone on stdout; progress goes to stderr.")]
    = False,
    log_every: Annotated[float, typer.Option("--log-every", help="When stdout is not a terminal (Slurm, nohup, a "
                                             "pipe): minutes between progress lines of a run (0: every epoch).")] = 0.0,
    device_kind: Annotated[str | None, typer.Option("--device-kind", help="With --dry-run: the GPU to project for "
                                                    "(bench profile; default: this machine's GPU, else h100).")]
    = None,
    seeds: SeedsOpt = None,
    set_: SetOpt = None,
    results_dir: ResultsOpt = Path("results"),
    tracker: Annotated[str, typer.Option("--tracker", metavar="[wandb|none]",
                                         help="wandb (offline without an API key) or none.")] = "wandb",
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run again the runs recorded as failed.")]
    = False,
    force: Annotated[bool, typer.Option("--force", help="Re-run even finished runs (from scratch).")] = False,
    executor: Annotated[str, typer.Option("--executor", metavar="[inline|local|slurm]",
                                          help="inline (this process), local (a process per GPU slot) or slurm "
                                               "(submitit job array).")] = "inline",
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
    from benchmark.tools.output import outcomes_json

    if tracker not in ("wandb", "none"):
        fail(f"--tracker '{tracker}': use wandb or none")
    if log_every < 0:
        fail(f"--log-every {log_every:g}: give minutes >= 0 (0: a line every epoch)")
    with JsonOutput(as_json) as out, RunProgress(err if as_json else console, every_s=60 * log_every) as progress:
        try:
            suites = load_suites(names)
            folder = results_dir / (suites[0][0].suite if len(suites) == 1 else "_multi") / "_slurm"
            ex = make_executor(executor, gpus, runs_per_gpu, slurm_profile, partition, account, time_min,
                               gpus_per_run, slurm_cluster, wait, folder)  # checks the executor options, dry run or not
            if dry_run:
                return dry_run_cmd(suites, seeds=parse_seeds(seeds), overrides=parse_set(set_ or []), smoke=smoke,
                                   rows=split_rows(rows), results_dir=results_dir, tracker=tracker,
                                   retry_failed=retry_failed, force=force, runs_per_gpu=runs_per_gpu,
                                   device_kind=device_kind, out=out)
            outcomes = run_suites(suites, seeds=parse_seeds(seeds), overrides=parse_set(set_ or []),
                                  smoke=smoke, results_dir=results_dir, tracker=tracker,
                                  retry_failed=retry_failed, force=force, executor=ex, rows=split_rows(rows),
                                  progress=progress)
        except (SuiteError, UnknownComponentError) as e:
            fail(str(e))
    if as_json:
        out.emit(outcomes_json(outcomes))
    else:
        console.print(outcome_table(suites, outcomes))
    print_offline_hint(outcomes)
    if any(o.state == RunState.FAILED for o in outcomes):
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
                device_kind: str | None, out: JsonOutput) -> None:
    """`run suite ... --dry-run`: the per-run table and the costed plan (or the plan as JSON)."""
    from benchmark.run.planning import plan_suites, resolve_plan
    from benchmark.run.projection import dry_run
    from benchmark.run.runner import planned_outcomes
    from benchmark.tools.dry_run_view import print_dry_run

    runs = plan_suites(suites, seeds=seeds, overrides=overrides, smoke=smoke, rows=rows)
    mp = resolve_plan(suites, runs, results_dir, retry_failed=retry_failed, force=force)
    report = dry_run(mp, runs_per_gpu=runs_per_gpu, device_kind=device_kind, tracker=tracker,
                     retry_failed=retry_failed)
    if out.enabled:
        return out.emit(report.model_dump_json(indent=1))
    console.print(outcome_table(suites, planned_outcomes(mp)))
    print_dry_run(console, report)


@app.command("status")
@one_line_errors
def status_cmd(name: SuiteArg, results_dir: ResultsOpt = Path("results"), set_: SetOpt = None,
               seeds: SeedsOpt = None, smoke: SmokeOpt = False, as_json: JsonOpt = False) -> None:
    """Per planned run: done, failed, running, interrupted (resumes), queued (with its job id) or not started."""
    from benchmark.tools.output import status_counts, status_rows

    with JsonOutput(as_json) as out:
        try:
            spec, _ = load_suite(name)
            runs = plan(spec, seeds=parse_seeds(seeds), overrides=parse_set(set_ or []), smoke=smoke)
            rows = status_rows(runs, results_dir)
        except SuiteError as e:
            fail(str(e))
        counts = status_counts(rows)
    if as_json:
        return out.emit({"suite": spec.suite, "runs": rows, "counts": counts})
    t = Table("run", "row", "seed", "status", title=f"{spec.suite}: {len(runs)} runs")
    for r in rows:
        t.add_row(r["run_id"], r["row"] + (f" [{r['column']}]" if r["column"] else ""), str(r["seed"]), r["status"])
    console.print(t)
    console.print(", ".join(f"{k}: {v}" for k, v in counts.items()), highlight=False)


@app.command("report")
@one_line_errors
def report_cmd(
    name: SuiteArg,
    results_dir: ResultsOpt = Path("results"),
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where the .md, .csv and .png go.")]
    = Path("reports"),
    set_: SetOpt = None,
    seeds: SeedsOpt = None,
    smoke: SmokeOpt = False,
    as_json: JsonOpt = False,
    tracker: ReportTrackerOpt = "none",
    split_list: Annotated[list[str] | None, typer.Option("--split-list", help="table1 only: imagenet_lt=PATH or "
                                                         "inat2018=PATH, the train list to count.")] = None,
) -> None:
    """Regenerate a suite's table (paper, ours mean ± std, delta; .md, .csv, .tex) and figures (.png + .pdf) from
    result records. `report table1` builds the paper's Table 1 from the dataset statistics instead."""
    from benchmark.report import build_report
    from benchmark.tools.output import report_json

    if name == "table1":  # Table 1 from the dataset statistics (CIFAR-LT at the paper's ratios, the split lists)
        return table1_report(split_list or [], out_dir)
    with JsonOutput(as_json) as out:
        try:
            spec, _ = load_suite(name)
            files = build_report(spec, results_dir, out_dir, overrides=parse_set(set_ or []), smoke=smoke,
                                 seeds=parse_seeds(seeds))
        except SuiteError as e:
            fail(str(e))
    if as_json:
        return out.emit(report_json(spec.suite, files))
    print(files.text)
    console.print(f"wrote {', '.join(str(p) for p in [files.markdown, files.csv, files.tex, *files.figures] if p)}",
                  highlight=False, soft_wrap=True)
    if tracker == "wandb":
        log_report_files(spec.suite, files, smoke)


@app.command("ls")
def ls_cmd(kind: Annotated[str | None, typer.Argument(
               metavar="KIND", help="datasets, losses, rules, mixers, samplers, schedules, augmentations or "
                                    "backbones (default: all).", show_default=False)] = None,
           as_json: JsonOpt = False) -> None:
    """List registered components with a one-line description."""
    from benchmark.config.catalog import registries
    from benchmark.tools.output import registries_json

    regs = registries()
    if kind is not None and kind not in regs:
        fail(f"unknown registry '{kind}': choose from {', '.join(regs)}")
    if as_json:
        return JsonOutput(True).emit(registries_json(regs, kind))
    for name, entries in regs.items():
        if kind in (None, name):
            t = Table("name", "description", title=name)
            for n, d in entries:
                t.add_row(n, d)
            console.print(t)


@app.command("bench")
def bench_cmd(
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    as_json: JsonOpt = False,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the JSON to this file.")] = None,
    ks: Annotated[str, typer.Option("--ks", help="Pack sizes K for the packed variant.")] = "1,4,8,16",
    steps: Annotated[int | None, typer.Option("--steps", help="Measured steps per variant.")] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="Also time the loop under "
                                                 "torch.compile (default: on CUDA).")] = None,
    dataset: Annotated[str | None, typer.Option(help="imagenet_lt|inat2018: PIL vs gpu_decode input pipelines")] = None,
    data_root: Annotated[Path | None, typer.Option(help="With --dataset: its root (default: synthetic JPEGs)")] = None,
) -> None:
    """Images/s of the reference-style loop vs the fast path vs packed runs (CIFAR-100-LT shape, ResNet-32,
    CE + CMO), measured side by side in one process, with ratios and projected minutes per run and suite."""
    from benchmark.tools.bench import bench_main

    if dataset is not None:
        return file_bench_cmd(dataset, data_root, device, steps, out, as_json)
    with JsonOutput(as_json) as stdout:  # the table and notes go to stderr
        result = bench_main(device=device, json_out=str(out) if out else None, ks=ks, steps=steps, compile=compile)
    if as_json:
        stdout.emit(result)


def main() -> None:  # pragma: no cover
    app(prog_name="lt-bench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
