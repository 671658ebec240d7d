"""Reports: regenerate a paper table (Markdown, CSV, LaTeX) and its figures (PNG + PDF) from result records alone
(never imports torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from benchmark.config.suite import SuiteSpec, plan
from benchmark.report.figures import cell_runs, plot_alpha, plot_curves, plot_per_class
from benchmark.report.files import atomic_write, save_figure
from benchmark.report.latex import to_latex
from benchmark.report.layout import add_baseline_deltas, block_row_name, provenance, row_blocks
from benchmark.report.plots import mark_figure, plot_cells
from benchmark.report.tables import cell_frame, to_markdown
from benchmark.report.timing import plot_timing, timing_markdown
from benchmark.run.records import load_records

# figure name suffix -> function(spec, cells) -> Figure | None (None: nothing to draw for this suite)
FIGURES = {"alpha": plot_alpha, "per-class": plot_per_class, "curves": plot_curves}


@dataclass
class ReportFiles:
    markdown: Path
    csv: Path
    plot: Path  # the cells' bar chart (PNG); its PDF and the other figures are in `figures`
    text: str
    tex: Path | None = None
    figures: list[Path] = field(default_factory=list)


def build_report(spec: SuiteSpec, results_dir: Path, out_dir: Path, *, overrides: dict[str, Any] | None = None,
                 smoke: bool = False, seeds: list[int] | None = None) -> ReportFiles:
    """Write reports/<suite>.md, .csv, .tex, .png/.pdf (cells) and <suite>-<figure>.png/.pdf (accuracy vs
    alpha, per-class accuracy vs training count, learning curves: those the records can draw) for the runs the
    suite plans (same overrides as `run`).

    Example:
        >>> spec, _ = load_suite("quickstart")
        >>> build_report(spec, Path("results"), Path("reports")).markdown  # doctest: +SKIP
    """
    runs = plan(spec, seeds=seeds, overrides=overrides, smoke=smoke)
    records = {r.run_id: r for r in load_records(results_dir, spec.suite)}
    if spec.timed:  # Table 16: data wait and step time per method, the paper's orientation
        frame = cell_frame(spec, runs, records)
        name = spec.suite + ("-smoke" if smoke else "")
        text = timing_markdown(spec, frame, n_records=sum(r.run_id in records for r in runs), n_planned=len(runs))
        stem = out_dir / name
        md = atomic_write(stem.with_suffix(".md"), lambda p: Path(p).write_text(text))
        csv = atomic_write(stem.with_suffix(".csv"), lambda p: frame.to_csv(p, index=False, float_format="%.4f"))
        png = atomic_write(stem.with_suffix(".png"), lambda p: plot_timing(spec, frame, p))
        return ReportFiles(md, csv, png, text, None, [png])
    used = [records[r.run_id] for r in runs if r.run_id in records]
    prov = provenance(spec, plan(spec, seeds=seeds), used, overrides, smoke)
    frame = add_baseline_deltas(spec, cell_frame(spec, runs, records))
    if not prov.comparable:
        frame["delta"] = None
    blocks = row_blocks(spec)
    name = spec.suite + ("-smoke" if prov.smoke else "")
    text = to_markdown(spec, frame, n_records=len(used), n_planned=len(runs), notes=prov.notes(),
                       comparable=prov.comparable, blocks=blocks, block_name=block_row_name)
    stem = out_dir / name
    md = atomic_write(stem.with_suffix(".md"), lambda p: Path(p).write_text(text))
    csv = atomic_write(stem.with_suffix(".csv"), lambda p: frame.to_csv(p, index=False, float_format="%.4f"))
    tex_text = to_latex(spec, frame, blocks=blocks, block_name=block_row_name)
    tex = atomic_write(stem.with_suffix(".tex"), lambda p: Path(p).write_text(tex_text))
    note = prov.figure_note()
    figures = _save(plot_cells(spec, frame), stem, note)
    cells = cell_runs(spec, runs, records)
    for suffix, draw in FIGURES.items():
        fig = draw(spec, cells)
        if fig is not None:
            figures += _save(fig, out_dir / f"{name}-{suffix}", note)
    return ReportFiles(md, csv, figures[0], text, tex, figures)


def _save(fig: Any, stem: Path, note: str | None) -> list[Path]:
    try:
        if note:
            mark_figure(fig, note)
        return save_figure(fig, stem)
    finally:
        plt.close(fig)
