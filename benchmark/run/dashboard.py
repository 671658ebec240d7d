"""`lt-bench dashboard`: a W&B report of a suite (wandb-workspaces), from a spec built by a pure, tested function."""

from __future__ import annotations

from typing import Any

from benchmark.config.suite import SuiteSpec, plan

REPORT_PREFIX = "lt-bench"  # reports are titled "lt-bench <suite>: <title>" and found again by that title


def report_title(spec: SuiteSpec, smoke: bool = False) -> str:
    return f"{REPORT_PREFIX} {spec.suite}{' (smoke)' if smoke else ''}: {spec.title}"[:128]


def paper_table_markdown(spec: SuiteSpec) -> str:
    """The suite's paper values as a Markdown table (rows x [column ·] metric); empty cells are 'n/a'."""
    cols = [c.name for c in spec.columns] or [None]
    heads = [f"{c} · {m}" if c else m for c in cols for m in spec.metrics]
    lines = ["| row | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for row in spec.rows:
        cells = []
        for c in cols:
            values = row.paper.get(c) if c is not None and isinstance(row.paper.get(c), dict) else row.paper
            for m in spec.metrics:
                v = values.get(m) if isinstance(values, dict) else None
                cells.append(f"{v:g}" if isinstance(v, (int, float)) else "n/a")
        lines.append(f"| {row.name}{' (cited)' if row.cited else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def varies_alpha(spec: SuiteSpec) -> bool:
    """True when the suite's runs use more than one Beta(α, α) of the mixer (e.g. fig3)."""
    return len({r.settings.mixer.alpha for r in plan(spec, seeds=spec.seeds[:1])
                if r.settings.method.mixer != "none"}) > 1


def dashboard_spec(spec: SuiteSpec, entity: str, project: str, smoke: bool = False) -> dict[str, Any]:
    """The report as plain data: title, the run set (the suite's W&B group, grouped by row [and column]) and the
    panels: the paper table, top-1 per row, many/medium/few, accuracy vs α (suites that vary it), learning curves."""
    group = f"{spec.suite}-smoke" if smoke else spec.suite
    groupby = ["config.row"] + (["config.column"] if spec.columns else [])
    epoch = spec.report_epoch
    shots = [m for m in ("acc/many", "acc/medium", "acc/few") if m in spec.metrics] or \
        ["acc/many", "acc/medium", "acc/few"]
    panels: list[dict[str, Any]] = [
        {"type": "markdown", "title": "Paper table", "markdown": paper_table_markdown(spec)},
        {"type": "bar", "title": f"Top-1 ({epoch} epoch), mean ± std over seeds", "metrics": [f"{epoch}/acc/all"],
         "groupby": "row"},
        {"type": "bar", "title": "Many / medium / few", "metrics": [f"{epoch}/{m}" for m in shots], "groupby": "row"},
    ]
    if varies_alpha(spec):
        panels.append({"type": "scatter", "title": "Top-1 vs α (Beta(α, α) of the mixer)", "x": "mixer.alpha",
                       "y": f"{epoch}/acc/all"})
    panels += [
        {"type": "line", "title": "Learning curves: test top-1", "x": "epoch", "y": ["test/acc/all"],
         "groupby": "row"},
        {"type": "line", "title": "Learning curves: training loss", "x": "epoch", "y": ["train/loss"],
         "groupby": "row"},
    ]
    return {"entity": entity, "project": project, "title": report_title(spec, smoke),
            "description": f"Runs of the lt-bench suite '{spec.suite}' (v{spec.version})"
                           + (f"; paper values from {spec.source}" if spec.source else "") + ".",
            "runset": {"name": group, "filters": f"Group = '{group}'", "groupby": groupby},
            "heading": spec.title, "panels": panels}


def to_report(d: dict[str, Any]) -> Any:
    """The wandb-workspaces Report of a dashboard spec (built offline; saving needs W&B)."""
    import wandb_workspaces.reports.v2 as wr

    def panel(p: dict[str, Any]) -> Any:
        if p["type"] == "markdown":
            return wr.MarkdownPanel(markdown=f"**{p['title']}**\n\n{p['markdown']}")
        if p["type"] == "bar":
            return wr.BarPlot(title=p["title"], metrics=[wr.SummaryMetric(m) for m in p["metrics"]],
                              groupby=wr.Config(p["groupby"]), groupby_aggfunc="mean", groupby_rangefunc="stddev",
                              orientation="v")
        if p["type"] == "scatter":
            return wr.ScatterPlot(title=p["title"], x=wr.Config(p["x"]), y=wr.SummaryMetric(p["y"]))
        return wr.LinePlot(title=p["title"], x=p["x"], y=p["y"], groupby=wr.Config(p["groupby"]),
                           groupby_aggfunc="mean", groupby_rangefunc="stddev")

    rs = d["runset"]
    runset = wr.Runset(entity=d["entity"], project=d["project"], name=rs["name"], filters=rs["filters"],
                       groupby=rs["groupby"])
    return wr.Report(entity=d["entity"], project=d["project"], title=d["title"], description=d["description"],
                     width="fluid", blocks=[wr.H1(d["heading"]), wr.P(d["description"]),
                                            wr.PanelGrid(runsets=[runset], panels=[panel(p) for p in d["panels"]])])


def save_dashboard(d: dict[str, Any], api: Any = None) -> str:
    """Create the report, or update the project's report with the same title; returns its URL."""
    import wandb

    api = api if api is not None else wandb.Api(timeout=30)
    report = to_report(d)
    for existing in api.reports(f"{d['entity']}/{d['project']}"):
        if getattr(existing, "display_name", None) == d["title"]:
            report.id = existing.id
            break
    report.save()
    return str(report.url)
