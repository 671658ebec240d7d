"""Timing tables (Table 16): rows side by side as the paper's columns, data wait vs step time, overhead in %."""

from __future__ import annotations

import math
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from benchmark.config.suite import SuiteSpec  # noqa: E402
from benchmark.report.tables import ours_text  # noqa: E402

TIMING_LABELS = {"time/batch_s": "Training time per batch (s): wall, data wait + step",
                 "time/data_wait_s": "Data wait per batch (s): blocked on the input pipeline",
                 "time/step_s": "Step time per batch (s): forward + backward + optimiser on the device",
                 "acc/all": "Top-1 accuracy (%)"}


def _cells(spec: SuiteSpec, frame: pd.DataFrame) -> pd.DataFrame:
    f = frame[(frame["epoch"] == spec.report_epoch) & frame["column"].isna()]
    return f.set_index(["row", "metric"])


def _change(v: float | None, base: float | None, metric: str) -> str:
    """Row vs the first row: relative change in % for times, points for accuracies."""
    if v is None or base is None or (isinstance(v, float) and math.isnan(v)) or \
            (isinstance(base, float) and math.isnan(base)):
        return "—"
    if metric.startswith("time/"):
        return f"{100.0 * (v - base) / base:+.2f} %" if base else "—"
    return f"{v - base:+.1f} pts"


def _num(v: object) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)  # type: ignore[arg-type]


def timing_markdown(spec: SuiteSpec, frame: pd.DataFrame, n_records: int, n_planned: int) -> str:
    """The paper's orientation: one column per row of the suite (CE, CE + CMO), the paper's seconds, ours per
    metric (mean ± std, n), and each later row's change against the first (the CMO overhead)."""
    f = _cells(spec, frame)
    names = [r.name for r in spec.rows]
    base = names[0]
    head = ["", *names, *(f"{n} vs {base}" for n in names[1:])]
    lines = [f"# {spec.title}", "",
             f"Suite `{spec.suite}` v{spec.version}. Trained one after another in one process on one device; each "
             f"value is a mean per training batch over the epochs where CMO is active, then mean ± std over seeds "
             f"(n = finished runs). Overhead = (row − {base}) / {base}. Records: {n_records}/{n_planned} planned "
             f"runs.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    first = spec.metrics[0]
    paper = [_num(f.loc[(n, first), "paper"]) if (n, first) in f.index else None for n in names]
    if any(p is not None for p in paper):
        lines.append("| " + " | ".join([f"Paper: {TIMING_LABELS.get(first, first).split(':')[0]}",
                                        *("—" if p is None else f"{p:.3f}" for p in paper),
                                        *(_change(p, paper[0], first) for p in paper[1:])]) + " |")
    for m in spec.metrics:
        if not all((n, m) in f.index for n in names):
            continue
        digits = 3 if m.startswith("time/") else 1
        means = [_num(f.loc[(n, m), "mean"]) for n in names]
        lines.append("| " + " | ".join([f"Ours: {TIMING_LABELS.get(m, m)}",
                                        *(ours_text(f.loc[(n, m)], digits) for n in names),
                                        *(_change(v, means[0], m) for v in means[1:])]) + " |")
    if spec.source:
        lines += ["", f"Paper numbers: {spec.source}"]
    return "\n".join(lines) + "\n"


def plot_timing(spec: SuiteSpec, frame: pd.DataFrame, path: str) -> None:
    """One bar per suite row in the paper's left-to-right order: data wait and step time stacked, wall time per
    batch as a diamond, the paper's seconds as black ticks and the first row's paper value as a dashed line
    (0.355 s for Table 16); later bars are labelled with their overhead against the first."""
    f = _cells(spec, frame)
    names = [r.name for r in spec.rows]

    def vals(metric: str, col: str = "mean") -> list[float]:
        return [float(f.loc[(n, metric), col]) if (n, metric) in f.index and _num(f.loc[(n, metric), col])
                is not None else math.nan for n in names]

    wait, step, wall = vals("time/data_wait_s"), vals("time/step_s"), vals("time/batch_s")
    paper = vals("time/batch_s", "paper")
    xs = list(range(len(names)))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(names) + 2), 4.6))
    ax.bar(xs, [0 if math.isnan(v) else v for v in wait], 0.55, label="data wait (input pipeline)", color="#f0a04b")
    ax.bar(xs, [0 if math.isnan(v) else v for v in step], 0.55, bottom=[0 if math.isnan(v) else v for v in wait],
           label="step (forward + backward + optimiser)", color="#4b8bf0")
    ax.scatter(xs, wall, marker="D", color="#222222", zorder=4, label="ours: wall time per batch")
    if not math.isnan(paper[0]):
        ax.axhline(paper[0], color="black", linestyle="--", linewidth=1,
                   label=f"paper {names[0]}: {paper[0]:.3f} s/batch")
    if any(not math.isnan(p) for p in paper[1:]):
        ax.scatter(xs, paper, marker="_", s=400, color="black", zorder=3, label="paper")
    for i in xs[1:]:
        if not (math.isnan(wall[i]) or math.isnan(wall[0]) or wall[0] == 0):
            top = max(v for v in (wall[i], wait[i] + step[i]) if not math.isnan(v))
            ax.annotate(f"{100 * (wall[i] - wall[0]) / wall[0]:+.1f} %", (i, top), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=9)
    ax.set_xticks(xs)
    ax.set_xticklabels(names)
    ax.set_ylabel("seconds per training batch")
    ax.set_title("\n".join(textwrap.wrap(spec.title, 70)), fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
