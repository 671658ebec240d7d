"""Reports: regenerate a paper table (Markdown, CSV, PNG) from result records alone (never imports torch)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config.suite import SuiteSpec, plan
from benchmark.report.plots import plot_cells
from benchmark.report.tables import cell_frame, to_markdown
from benchmark.report.timing import plot_timing, timing_markdown
from benchmark.run.records import load_records


@dataclass
class ReportFiles:
    markdown: Path
    csv: Path
    plot: Path
    text: str


def build_report(spec: SuiteSpec, results_dir: Path, out_dir: Path, *, overrides: dict[str, Any] | None = None,
                 smoke: bool = False, seeds: list[int] | None = None) -> ReportFiles:
    """Write reports/<suite>.md, .csv and .png for the runs the suite plans (same overrides as `run`).

    Example:
        >>> spec, _ = load_suite("quickstart")
        >>> build_report(spec, Path("results"), Path("reports")).markdown  # doctest: +SKIP
    """
    runs = plan(spec, seeds=seeds, overrides=overrides, smoke=smoke)
    records = {r.run_id: r for r in load_records(results_dir, spec.suite)}
    frame = cell_frame(spec, runs, records)
    name = spec.suite + ("-smoke" if smoke else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    table, plot = (timing_markdown, plot_timing) if spec.timed else (to_markdown, plot_cells)
    text = table(spec, frame, n_records=sum(r.run_id in records for r in runs), n_planned=len(runs))
    md, csv, png = (out_dir / f"{name}{ext}" for ext in (".md", ".csv", ".png"))
    _atomic(md, lambda p: Path(p).write_text(text))
    _atomic(csv, lambda p: frame.to_csv(p, index=False, float_format="%.4f"))
    _atomic(png, lambda p: plot(spec, frame, p))
    return ReportFiles(md, csv, png, text)


def _atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
