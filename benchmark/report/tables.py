"""Records -> tidy per-cell statistics (mean, std, n, paper value, delta) -> Markdown in the paper's layout."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from benchmark.config.suite import RowSpec, RunSpec, SuiteSpec
from benchmark.run.records import RunRecord

METRIC_LABELS = {"acc/all": "All", "acc/many": "Many", "acc/medium": "Med", "acc/few": "Few",
                 "time/batch_s": "s/batch", "time/data_wait_s": "data wait s/batch", "time/step_s": "step s/batch"}


def paper_value(row: RowSpec, metric: str, column: str | None, first_metric: str) -> float | None:
    """The paper's number for a cell: paper[metric], or paper[column][metric] / paper[column] (first metric)."""
    src: Any = row.paper if column is None else row.paper.get(column, row.paper.get(str(column)))
    v = src.get(metric) if isinstance(src, dict) else (src if metric == first_metric else None)
    return float(v) if v is not None else None


def cell_frame(spec: SuiteSpec, runs: list[RunSpec], records: dict[str, RunRecord]) -> pd.DataFrame:
    """One line per (row, column, metric, epoch): paper, mean, std (ddof 1), n done / planned, delta."""
    lines = []
    for order, row in enumerate(spec.rows):
        for col in [c.name for c in spec.columns] or [None]:
            cell_runs = [r for r in runs if r.row == row.name and r.column == col]
            recs = [records[r.run_id] for r in cell_runs if r.run_id in records]
            done = [r for r in recs if r.status == "done"]
            for metric in spec.metrics:
                for epoch in ("best", "last"):
                    vals = [v for r in done if (v := r.metrics.get(epoch, {}).get(metric)) is not None]
                    mean = sum(vals) / len(vals) if vals else None
                    std = _std(vals)
                    paper = paper_value(row, metric, col, spec.metrics[0])
                    lines.append({
                        "order": order, "row": row.name, "column": col, "metric": metric, "epoch": epoch,
                        "cited": row.cited, "paper": paper, "mean": mean, "std": std, "n": len(vals),
                        "n_planned": len(cell_runs), "n_done": len(done),
                        "n_failed": sum(r.status == "failed" for r in recs),
                        "delta": (mean - paper) if (mean is not None and paper is not None) else None,
                    })
    return pd.DataFrame(lines)


def _std(vals: list[float]) -> float | None:
    if len(vals) < 2:
        return None
    m = sum(vals) / len(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def _fmt(v: float | None, signed: bool = False, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _digits(metric: str) -> int:
    return 3 if metric.startswith("time/") else 1


def _present(v: Any) -> bool:
    return v is not None and not pd.isna(v)


def ours_text(c: pd.Series, digits: int = 1) -> str:
    """A reproduced cell: mean ± std (n), or why there is none."""
    if c["cited"]:
        return "cited"
    if c["n"] == 0 and c["n_done"] > 0:
        return "n/a (empty group)"  # e.g. no few-shot classes in CIFAR-10-LT
    if c["n"] == 0:
        return f"n/a (0/{c['n_planned']})" + (f", {c['n_failed']} failed" if c["n_failed"] else "")
    base = f" ({c['base_delta']:+.{digits}f})" if _present(c.get("base_delta")) else ""
    spread = f" ± {c['std']:.{digits}f}" if _present(c["std"]) else ""
    return f"{c['mean']:.{digits}f}{base}{spread} (n={c['n']})"


def _paper(c: pd.Series, digits: int = 1) -> str:
    base = f" ({c['paper_base_delta']:+.{digits}f})" if _present(c.get("paper_base_delta")) else ""
    return _fmt(c["paper"], digits=digits) + (base if _present(c["paper"]) else "")


def to_markdown(spec: SuiteSpec, frame: pd.DataFrame, n_records: int, n_planned: int, *,
                notes: list[str] | None = None, comparable: bool = True,
                blocks: list[tuple[str | None, list[int]]] | None = None,
                block_name: Any = None) -> str:
    """The table in the suite's row order (in blocks with their headers when given): per (column,) metric the
    paper value, ours (mean ± std, n) and, when the runs are comparable with the paper, Δ = ours − paper.
    "(+x.x)" after a value is its difference to the row's Vanilla column (frame columns base_delta /
    paper_base_delta)."""
    f = frame[frame["epoch"] == spec.report_epoch]
    groups = [(c, m) for c in ([c.name for c in spec.columns] or [None]) for m in spec.metrics]
    head = ["Method"]
    for c, m in groups:
        label = METRIC_LABELS.get(m, m) if c is None else f"{c} {METRIC_LABELS.get(m, m)}"
        head += [f"{label} paper", f"{label} ours"] + (["Δ"] if comparable else [])
    has_base = "base_delta" in f.columns and f["paper_base_delta"].map(_present).any()
    quoted = "\n>\n".join(f"> {n}" for n in notes or [])  # one paragraph per note
    lines = [f"# {spec.title}", ""] + ([quoted, ""] if quoted else []) + [
        f"Suite `{spec.suite}` v{spec.version}. Values: top-1 accuracy (%) at the **{spec.report_epoch}** "
        f"test epoch (s/batch: mean training time per batch), mean ± std over seeds (n = finished runs). "
        + ("Δ = ours − paper. " if comparable else "")
        + ("(+x.x) = difference to the row's Vanilla column, as the paper prints it. " if has_base else "")
        + f"Missing cells: n/a. Records: {n_records}/{n_planned} planned runs.", "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for title, orders in blocks or [(None, sorted(f["order"].unique()))]:
        if title:
            lines.append(f"| **{title}** |" + " |" * (len(head) - 1))
        for order in orders:
            rows = f[f["order"] == order]
            if rows.empty:
                continue
            name = rows["row"].iloc[0]
            name = (block_name(name, title) if block_name else name) + (" (cited)" if rows["cited"].iloc[0] else "")
            cells = [name]
            for c, m in groups:
                sel = rows[(rows["metric"] == m) & (rows["column"].isna() if c is None else rows["column"] == c)]
                cell = sel.iloc[0]
                d = _digits(m)
                cells += [_paper(cell, d), ours_text(cell, d)]
                if comparable:
                    cells.append("" if cell["cited"] else _fmt(cell["delta"], signed=True, digits=d))
            lines.append("| " + " | ".join(cells) + " |")
    if spec.source:
        lines += ["", f"Paper numbers: {spec.source}"]
    return "\n".join(lines) + "\n"
