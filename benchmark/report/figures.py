"""Figures from result records alone: accuracy vs alpha (Fig. 3), per-class accuracy vs training count, learning
curves (each a matplotlib Figure, or None when the records hold nothing to draw)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from benchmark.config.suite import RunSpec, SuiteSpec
from benchmark.report.plots import NA, is_missing, legend_outside, mark_missing
from benchmark.report.tables import paper_value
from benchmark.run.records import RunRecord


@dataclass
class CellRuns:
    """One table cell: its label, planned settings (of its first run), paper values and finished records."""

    label: str
    row: str
    column: str | None
    settings: dict[str, Any]
    paper: dict[str, float] = field(default_factory=dict)
    records: list[RunRecord] = field(default_factory=list)


def cell_runs(spec: SuiteSpec, runs: list[RunSpec], records: dict[str, RunRecord]) -> list[CellRuns]:
    """The suite's non-cited cells in table order, each with its finished ("done") records."""
    out = []
    for row in spec.rows:
        if row.cited:
            continue
        for col in [c.name for c in spec.columns] or [None]:
            mine = [r for r in runs if r.row == row.name and r.column == col]
            if not mine:
                continue
            paper = {m: v for m in spec.metrics if (v := paper_value(row, m, col, spec.metrics[0])) is not None}
            recs = [records[r.run_id] for r in mine if r.run_id in records and records[r.run_id].status == "done"]
            out.append(CellRuns(row.name + (f" [{col}]" if col else ""), row.name, col,
                                mine[0].settings.model_dump(mode="json"), paper, recs))
    return out


def _mean_std(vals: list[float]) -> tuple[float, float]:
    a = np.asarray(vals, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _metric(rec: RunRecord, epoch: str, metric: str) -> float | None:
    v = rec.metrics.get(epoch, {}).get(metric)
    return None if is_missing(v) else float(v)


def plot_alpha(spec: SuiteSpec, cells: list[CellRuns], metric: str = "acc/all") -> Figure | None:
    """Mean ± std accuracy against alpha of Beta(alpha, alpha) for the CMO cells (log x, ticks at the alphas),
    the no-mixer cells as a horizontal line with a ± std band, the paper's values as black crosses / dashed
    line. None when the suite does not vary alpha over at least two CMO cells."""
    sweep = [c for c in cells if c.settings["method"]["mixer"] != "none"]
    alphas = sorted({float(c.settings["mixer"]["alpha"]) for c in sweep})
    if len(alphas) < 2:
        return None
    base = [c for c in cells if c.settings["method"]["mixer"] == "none"]
    epoch = spec.report_epoch
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs, ms, ss, missing, top = [], [], [], [], 0.0
    for a in alphas:
        vals = [v for c in sweep if float(c.settings["mixer"]["alpha"]) == a
                for r in c.records if (v := _metric(r, epoch, metric)) is not None]
        if vals:
            m, s = _mean_std(vals)
            xs.append(a), ms.append(m), ss.append(s)
            top = max(top, m + s)
        else:
            missing.append(a)
    if xs:
        ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label="CE + CMO (ours, mean ± std)")
    paper = [(float(c.settings["mixer"]["alpha"]), c.paper[metric]) for c in sweep if metric in c.paper]
    if paper:
        ax.scatter(*zip(*paper, strict=True), marker="x", s=60, color="black", zorder=4, label="paper")
        top = max(top, *(p for _, p in paper))
    for i, c in enumerate(base):
        vals = [v for r in c.records if (v := _metric(r, epoch, metric)) is not None]
        if vals:
            m, s = _mean_std(vals)
            ax.axhline(m, color=f"C{i + 1}", lw=1.2, label=f"{c.label} (ours)")
            ax.axhspan(m - s, m + s, color=f"C{i + 1}", alpha=0.18, lw=0, gid="band")
            top = max(top, m + s)
        if metric in c.paper:
            ax.axhline(c.paper[metric], color=f"C{i + 1}", ls="--", lw=1.0, label=f"{c.label} (paper)")
            top = max(top, c.paper[metric])
    low = min([m - s for m, s in zip(ms, ss, strict=True)] + [p for _, p in paper] +
              [c.paper[metric] for c in base if metric in c.paper] or [0.0])
    span = max(top - low, 1.0)
    ax.set_ylim(max(0.0, low - 0.25 * span), top + 0.15 * span)
    mark_missing(ax, missing, ax.get_ylim()[0] + 0.02 * span)
    ax.set_xscale("log")
    ax.set_xticks(alphas)
    ax.set_xticklabels([f"{a:g}" for a in alphas], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("α of λ ~ Beta(α, α)")
    ax.set_ylabel(f"top-1 accuracy (%), {epoch} epoch")
    ax.set_title(spec.title, fontsize=9, wrap=True)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_per_class(spec: SuiteSpec, cells: list[CellRuns]) -> Figure | None:
    """Per-class accuracy (mean over seeds) against the class's training count, log x, one line per cell, with
    the many / medium / few thresholds. None when no record has per-class accuracy."""
    epoch = spec.report_epoch
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    drawn = 0
    for c in cells:
        recs = [r for r in c.records if r.per_class.get(epoch) and r.class_counts]
        if not recs:
            continue
        acc = np.array([r.per_class[epoch] for r in recs], dtype=float).mean(axis=0)
        counts = np.asarray(recs[0].class_counts, dtype=float)
        order = np.argsort(-counts, kind="stable")
        ax.plot(counts[order], acc[order], marker="o" if len(counts) <= 100 else None, ms=3, lw=1.2,
                label=f"{c.label} (n={len(recs)})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.invert_xaxis()  # head classes on the left, as the class index runs
    for t in (spec.shots.many_above, spec.shots.few_below):
        ax.axvline(t, color="0.5", ls=":", lw=1)
    ax.set_xlabel("training images of the class (log scale; dotted: many / few thresholds)")
    ax.set_ylabel(f"per-class top-1 accuracy (%), {epoch} epoch")
    ax.set_ylim(0, 100)
    ax.set_title(spec.title, fontsize=9, wrap=True)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    fig.tight_layout()
    return fig


CURVE_PANELS = (("test/acc/all", "test top-1 accuracy (%)"), ("train/loss", "train loss"))


def plot_curves(spec: SuiteSpec, cells: list[CellRuns]) -> Figure | None:
    """Learning curves: per cell, the mean over seeds (± std band) of test accuracy and train loss per epoch.
    None when no record has a curve."""
    if not any(r.curve for c in cells for r in c.records):
        return None
    fig, axes = plt.subplots(1, len(CURVE_PANELS), figsize=(10.5, 3.8))
    for ax, (key, ylabel) in zip(axes, CURVE_PANELS, strict=True):
        for i, c in enumerate(cells):
            per_epoch: dict[int, list[float]] = {}
            for r in c.records:
                for pt in r.curve:
                    v = pt.get(key)
                    if v is not None and not (isinstance(v, float) and math.isnan(v)):
                        per_epoch.setdefault(int(pt["epoch"]), []).append(float(v))
            if not per_epoch:
                continue
            ep = sorted(per_epoch)
            stats = [_mean_std(per_epoch[e]) for e in ep]
            m = np.array([s[0] for s in stats])
            s = np.array([s[1] for s in stats])
            x = np.array(ep) + 1  # epochs counted from 1
            ax.plot(x, m, color=f"C{i % 10}", lw=1.2, label=f"{c.label} (n={len(c.records)})")
            ax.fill_between(x, m - s, m + s, color=f"C{i % 10}", alpha=0.18, lw=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(spec.title, fontsize=9)
    legend_outside(axes[-1])
    fig.tight_layout()
    return fig


__all__ = ["NA", "CellRuns", "cell_runs", "plot_alpha", "plot_curves", "plot_per_class"]
