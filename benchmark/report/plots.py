"""Report plot: per table cell, reproduced accuracy per metric (bars, ± std) against the paper (markers)."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from benchmark.config.suite import SuiteSpec  # noqa: E402
from benchmark.report.tables import METRIC_LABELS  # noqa: E402


def plot_cells(spec: SuiteSpec, frame: pd.DataFrame, path: str) -> None:
    """Grouped bars: one group per row (and column), one bar per metric (± std over seeds when n > 1); paper
    values as black ticks."""
    f = frame[(frame["epoch"] == spec.report_epoch) & (~frame["cited"])].copy()
    f["cell"] = f["row"] + f["column"].map(lambda c: f" [{c}]" if isinstance(c, str) else "")
    cells = list(dict.fromkeys(f["cell"]))
    metrics = [m for m in spec.metrics if not m.startswith("time/")] or spec.metrics  # seconds on their own axis
    width = 0.8 / max(len(metrics), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(cells) * max(1, len(metrics) / 2)), 4.6))
    has_paper = False
    for j, m in enumerate(metrics):
        sub = f[f["metric"] == m].set_index("cell").reindex(cells)
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(cells))]
        std = sub["std"].astype(float)
        ax.bar(xs, sub["mean"].fillna(0).astype(float), width, label=METRIC_LABELS.get(m, m),
               yerr=std.where(std.notna(), None) if std.notna().any() else None, capsize=2)
        paper = sub["paper"].astype(float)
        if paper.notna().any():
            ax.scatter(xs, paper, marker="_", s=200, color="black", zorder=3, label=None if has_paper else "paper")
            has_paper = True
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(cells, rotation=20, ha="right")
    ax.set_ylabel(f"top-1 accuracy (%), {spec.report_epoch} epoch")
    ax.set_title("\n".join(textwrap.wrap(spec.title, 80)), fontsize=9)
    ax.legend(fontsize=8, ncol=min(len(metrics) + 1, 5), loc="upper center", bbox_to_anchor=(0.5, -0.18),
              frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
