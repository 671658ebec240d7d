"""The team commands of the CLI (merged into `lt-bench`): pull records from W&B, a W&B dashboard, report logging."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from benchmark.cli_common import console, err, fail
from benchmark.config.suite import REPO_ROOT, SuiteError, load_suite, plan
from benchmark.run.dashboard import dashboard_spec, save_dashboard, to_report
from benchmark.run.pull import PullError, explain, pull_suite
from benchmark.run.recording import offline_runs_hint, wandb_dir
from benchmark.run.tracking import log_report, offline_sync_hint
from benchmark.schema.registry import UnknownComponentError

team_app = typer.Typer()

SuiteArg = Annotated[str, typer.Argument(help="Suite name (in suites/) or path to a suite YAML.")]
EntityOpt = Annotated[str, typer.Option("--entity", envvar="WANDB_ENTITY", help="W&B entity (user or team) that owns "
                                                                                "the project.")]
ProjectOpt = Annotated[str, typer.Option("--project", envvar="WANDB_PROJECT", help="W&B project the runs were logged "
                                                                                   "to.")]


def _check_tracker(value: str) -> str:
    if value not in ("wandb", "none"):
        fail(f"--tracker '{value}': use wandb or none")
    return value


ReportTrackerOpt = Annotated[str, typer.Option("--tracker", callback=_check_tracker, help="wandb: also log the "
                             "report's table and plot to a W&B run of job type 'report' in the suite's group; none.")]


def _suite(name: str) -> Any:
    try:
        return load_suite(name)[0]
    except (SuiteError, UnknownComponentError) as e:
        fail(str(e))


@team_app.command("pull")
def pull_cmd(name: SuiteArg, entity: EntityOpt, project: ProjectOpt,
             results_dir: Annotated[Path, typer.Option("--results-dir", help="Where result records live.")]
             = REPO_ROOT / "results") -> None:
    """Rebuild the suite's result records from its W&B runs, so that `lt-bench report` works from a shared project."""
    spec = _suite(name)
    try:
        res = pull_suite(spec.suite, entity, project, results_dir, planned=plan(spec))
    except PullError as e:
        fail(str(e))
    console.print(f"{entity}/{project}: {res.seen} W&B runs of {spec.suite}; {len(res.written)} records written, "
                  f"{len(res.unchanged)} unchanged, {len(res.kept_local)} kept (local is newer), "
                  f"{len(res.linked)} linked copies of other suites' runs, "
                  f"{len(res.skipped)} skipped -> {results_dir / spec.suite}", highlight=False, soft_wrap=True)
    for s in res.skipped:
        console.print(f"  skipped {s}", highlight=False, markup=False, soft_wrap=True)


@team_app.command("dashboard")
def dashboard_cmd(name: SuiteArg, entity: EntityOpt, project: ProjectOpt,
                  smoke: Annotated[bool, typer.Option("--smoke", help="The suite's smoke runs instead.")] = False,
                  dry_run: Annotated[bool, typer.Option("--dry-run", help="Build the report and print its panels; "
                                                                          "save nothing.")] = False) -> None:
    """Create or update the suite's W&B report: the paper table, top-1 and many/medium/few per row, accuracy vs α
    (suites that vary it) and learning curves (needs `pip install 'lt-bench[teams]'`)."""
    spec = _suite(name)
    d = dashboard_spec(spec, entity, project, smoke=smoke)
    try:
        to_report(d)
    except ImportError:
        fail("the dashboard needs wandb-workspaces: pip install 'lt-bench[teams]'")
    if dry_run:
        console.print(f"{d['title']} ({d['runset']['filters']}):", highlight=False, markup=False)
        for p in d["panels"]:
            console.print(f"  {p['type']}: {p['title']}", highlight=False, markup=False)
        return
    try:
        url = save_dashboard(d)
    except Exception as e:  # not logged in, no network, no access: one line
        fail(explain(e, entity, project))
    console.print(f"saved {url}", highlight=False, markup=False)


def log_report_files(suite: str, files: Any, smoke: bool) -> None:
    """`report --tracker wandb`: the report's table(s) and plot(s) into a W&B run of job type "report"."""
    paths: dict[str, Path] = {}
    for f in dataclasses.fields(files):
        value = getattr(files, f.name)
        for p in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(p, Path) and p.suffix in (".csv", ".png"):
                paths[f"{p.stem}/{'table' if p.suffix == '.csv' else 'plot'}"] = p
    info = log_report(suite, {f"report/{k}": p for k, p in paths.items()}, smoke=smoke, wandb_dir=wandb_dir())
    state = "logged" if info.get("ok") else "not logged (see the warning above)"
    err.print(f"W&B: report run {info.get('wandb_run_id')} ({info.get('mode')}) {state}: {', '.join(paths)}",
              highlight=False, markup=False, soft_wrap=True)
    if hint := offline_sync_hint([info]):
        err.print(hint, highlight=False, markup=False, soft_wrap=True)


def print_offline_hint(outcomes: list[Any]) -> None:
    """After `run suite`: where the offline W&B runs went and the `wandb sync` line (on stderr; nothing if none)."""
    if hint := offline_runs_hint(outcomes):
        err.print(hint, highlight=False, markup=False, soft_wrap=True)
