"""Report plot: per table cell, reproduced accuracy per metric (bars, ± std) against the paper (markers); shared
figure helpers (tick labels that never overlap, legends outside the data, "n/a" for missing cells)."""

from __future__ import annotations

import itertools
import math
import textwrap
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from benchmark.config.suite import SuiteSpec  # noqa: E402
from benchmark.report.tables import METRIC_LABELS  # noqa: E402

NA = "n/a"


def overlapping(fig: Figure, texts: list[Text]) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts whose rendered bounding boxes overlap (after a draw)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in texts if t.get_visible() and t.get_text().strip()]
    return [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]


def fit_ticklabels(ax: Axes, labels: list[str], width: int = 14) -> None:
    """Wrapped x tick labels; turned vertical when wrapped ones still overlap (checked with the renderer)."""
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(["\n".join(textwrap.wrap(s, width)) or s for s in labels], fontsize=8)
    if overlapping(ax.figure, ax.get_xticklabels()):
        ax.set_xticklabels(labels, rotation=90, fontsize=8)


def legend_outside(ax: Axes, **kw: Any) -> Any:
    """A legend to the right of the axes, never over the data or the tick labels (None when nothing is labelled)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                     fontsize=8, frameon=False, **kw)


def mark_missing(ax: Axes, xs: list[float], y: float) -> None:
    """"n/a" written upright at each x where a value is missing (never a zero-height bar or a zero point)."""
    for x in xs:
        ax.text(x, y, NA, rotation=90, ha="center", va="bottom", fontsize=7, color="0.35", gid="n/a")


def mark_figure(fig: Figure, note: str) -> None:
    """Put `note` (e.g. "SMOKE RUNS") above the figure's title, so a copied PNG still says what it shows."""
    st = fig._suptitle
    if st is not None and st.get_text():
        st.set_text(f"{note}\n{st.get_text()}")
    else:
        ax = fig.axes[0]
        ax.set_title(f"{note}\n{ax.get_title()}", fontsize=9)
    fig.tight_layout()


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def plot_cells(spec: SuiteSpec, frame: pd.DataFrame) -> Figure:
    """Grouped bars: one group per row (and column), one bar per metric (± std over seeds when n > 1); paper
    values as black ticks; cells without a value say "n/a" instead of a bar."""
    f = frame[(frame["epoch"] == spec.report_epoch) & (~frame["cited"])].copy()
    f["cell"] = f["row"] + f["column"].map(lambda c: f" [{c}]" if isinstance(c, str) else "")
    cells = list(dict.fromkeys(f["cell"]))
    metrics = [m for m in spec.metrics if not m.startswith("time/")] or spec.metrics  # seconds on their own axis
    width = 0.8 / max(len(metrics), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(cells) * len(metrics) + 2.5), 4.6))
    top = pd.concat([f["mean"] + f["std"].fillna(0), f["paper"]]).astype(float).max()
    top = 1.0 if is_missing(top) or top <= 0 else float(top) * 1.12
    has_paper = False
    for j, m in enumerate(metrics):
        sub = f[f["metric"] == m].set_index("cell").reindex(cells)
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(cells))]
        mean, std = sub["mean"].astype(float), sub["std"].astype(float)
        have = [k for k in range(len(cells)) if not is_missing(mean.iloc[k])]
        ax.bar([xs[k] for k in have], [mean.iloc[k] for k in have], width, label=METRIC_LABELS.get(m, m), color=f"C{j}",
               yerr=[0.0 if is_missing(std.iloc[k]) else std.iloc[k] for k in have] if have else None, capsize=2)
        mark_missing(ax, [xs[k] for k in range(len(cells)) if k not in have], 0.01 * top)
        paper = sub["paper"].astype(float)
        if paper.notna().any():
            ax.scatter(xs, paper, marker="_", s=200, color="black", zorder=3, label=None if has_paper else "paper")
            has_paper = True
    ax.set_ylim(0, top)
    ax.set_ylabel(f"top-1 accuracy (%), {spec.report_epoch} epoch")
    ax.set_title("\n".join(textwrap.wrap(spec.title, 80)), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    legend_outside(ax)
    fit_ticklabels(ax, cells)
    fig.tight_layout()
    return fig
