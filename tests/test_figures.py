"""Figures from the committed fixture records (tests/fixtures/results): the series each figure draws, "n/a" for
missing cells, legends outside the data, tick labels that do not overlap, PNG at 150 dpi + PDF."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.legend import Legend
from PIL import Image

from benchmark.config.suite import load_suite, plan
from benchmark.data.profile import exp_profile
from benchmark.report import build_report
from benchmark.report.figures import cell_runs, plot_alpha, plot_curves, plot_per_class
from benchmark.report.layout import add_baseline_deltas
from benchmark.report.plots import fit_ticklabels, overlapping, plot_cells
from benchmark.report.tables import cell_frame
from benchmark.run.records import load_records

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"


def _cells(suite: str) -> tuple:
    spec, _ = load_suite(suite)
    runs = plan(spec)
    records = {r.run_id: r for r in load_records(FIXTURES, suite)}
    return spec, runs, records, cell_runs(spec, runs, records)


def _na_texts(ax: plt.Axes) -> list:
    return [t for t in ax.texts if t.get_text() == "n/a"]


def _legend_clear_of_axes(fig: plt.Figure, ax: plt.Axes) -> bool:
    fig.canvas.draw()
    leg = next(c for c in fig.findobj(Legend))
    r = fig.canvas.get_renderer()
    return not leg.get_window_extent(r).overlaps(ax.get_window_extent(r))


def test_fixture_records_are_the_planned_runs() -> None:
    spec, runs, records, cells = _cells("fig3")
    assert len(records) == 18 and all(r.run_id in records for r in runs if "0-25" not in r.cell)
    assert [len(c.records) for c in cells] == [3, 3, 0, 3, 3, 3, 3]  # alpha = 0.25 has no records


def test_alpha_figure_mean_std_on_numeric_axis_with_baseline_band() -> None:
    spec, _, _, cells = _cells("fig3")
    fig = plot_alpha(spec, cells)
    ax = fig.axes[0]
    ebar = ax.containers[0]
    x, y = ebar.lines[0].get_data()
    assert list(x) == [0.1, 0.5, 1.0, 2.0, 4.0]  # numeric alphas; 0.25 has no records
    assert np.allclose(y, [41.0, 42.5, 44.0, 43.0, 41.5])  # means of value + (seed - 1) * 0.5
    seg = ebar.lines[2][0].get_segments()[0]  # error bar of alpha = 0.1: mean ± sample std 0.5
    assert np.allclose([seg[0][1], seg[1][1]], [40.5, 41.5])
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in _na_texts(ax)] == ["n/a"] and _na_texts(ax)[0].get_position()[0] == 0.25
    hlines = {ln.get_label(): ln.get_ydata()[0] for ln in ax.lines if ln.get_label().startswith("CE ")}
    assert hlines == {"CE (ours)": 38.0, "CE (paper)": 38.6}
    band = [p for p in ax.patches if p.get_gid() == "band"]
    assert len(band) == 1 and np.isclose(band[0].get_y(), 37.5) and np.isclose(band[0].get_height(), 1.0)
    paper = [c for c in ax.collections if c.get_label() == "paper"][0]
    assert np.allclose(paper.get_offsets(), [[1.0, 43.9]])  # only alpha = 1.0 has a paper value
    assert not overlapping(fig, ax.get_xticklabels()) and _legend_clear_of_axes(fig, ax)
    plt.close(fig)


def test_alpha_figure_needs_an_alpha_sweep() -> None:
    spec, _, _, cells = _cells("table9")
    assert plot_alpha(spec, cells) is None  # CutMix and CMO at one alpha: nothing to sweep


def test_per_class_accuracy_against_training_count() -> None:
    spec, _, _, cells = _cells("fig3")
    fig = plot_per_class(spec, cells)
    ax = fig.axes[0]
    lines = [ln for ln in ax.lines if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in lines] == [f"{c.label} (n=3)" for c in cells if c.records]
    x, y = lines[0].get_data()
    assert list(x) == sorted(exp_profile(500, 100, 100.0), reverse=True) and ax.get_xscale() == "log"
    assert np.isclose(y[0], 90.0) and np.isclose(y[69], 90 - 0.8 * 69) and np.isclose(y[99], 90 - 0.8 * 99)
    _, y_cmo = lines[1].get_data()
    assert np.isclose(y_cmo[99] - y[99], 8.0) and np.isclose(y_cmo[0], y[0])  # CMO fixture: tail classes + 8
    assert _legend_clear_of_axes(fig, ax)
    plt.close(fig)


def test_learning_curves_mean_over_seeds() -> None:
    spec, _, _, cells = _cells("fig3")
    fig = plot_curves(spec, cells)
    acc_ax, loss_ax = fig.axes[:2]
    acc = {ln.get_label(): ln.get_data() for ln in acc_ax.lines}
    assert len(acc) == 6 and len(loss_ax.lines) == 6
    x, y = acc["CE (n=3)"]
    assert list(x) == [1, 2, 3, 4, 5] and np.allclose(y, [38.0 * e / 5 for e in range(1, 6)])
    assert np.allclose(loss_ax.lines[0].get_ydata(), [2.0 / e for e in range(1, 6)])
    plt.close(fig)


def test_cell_bars_missing_cells_say_na_never_zero() -> None:
    spec, runs, records, _ = _cells("table3")
    frame = add_baseline_deltas(spec, cell_frame(spec, runs, records))
    fig = plot_cells(spec, frame)
    ax = fig.axes[0]
    bars = [p for c in ax.containers if hasattr(c, "patches") for p in c.patches]
    assert sorted(round(b.get_height(), 2) for b in bars) == [32.0, 38.0, 41.0, 43.0, 47.5]
    assert len(_na_texts(ax)) == 16 - 5  # 16 cells, 5 with records
    labels = ax.get_xticklabels()
    assert len(labels) == 16 and not overlapping(fig, labels)  # turned upright when they would overlap
    assert _legend_clear_of_axes(fig, ax)
    plt.close(fig)


def test_fit_ticklabels_rotates_only_when_needed() -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    names = [f"a rather long method name {i}" for i in range(8)]
    assert overlapping(fig, [ax.text(0.1, 0.5, "same place"), ax.text(0.1, 0.5, "same place")])
    fit_ticklabels(ax, names)
    assert ax.get_xticklabels()[0].get_rotation() == 90 and not overlapping(fig, ax.get_xticklabels())
    fig2, ax2 = plt.subplots(figsize=(8, 2))
    fit_ticklabels(ax2, ["CE", "CMO"])
    assert ax2.get_xticklabels()[0].get_rotation() == 0
    plt.close(fig), plt.close(fig2)


def test_report_writes_png_150_dpi_and_pdf_per_figure(tmp_path: Path) -> None:
    spec, _ = load_suite("fig3")
    old = os.umask(0o022)
    try:
        files = build_report(spec, FIXTURES, tmp_path)
    finally:
        os.umask(old)
    names = sorted(p.name for p in files.figures)
    assert names == sorted(f"fig3{s}.{e}" for s in ("", "-alpha", "-per-class", "-curves") for e in ("png", "pdf"))
    for p in files.figures:
        assert (p.stat().st_mode & 0o777) == 0o644
        if p.suffix == ".pdf":
            assert p.read_bytes()[:5] == b"%PDF-"
            continue
        im = Image.open(p)
        assert abs(im.info["dpi"][0] - 150) < 0.5 and im.size[0] >= 900 and im.size[1] >= 500, (p.name, im.size)
    assert not list(tmp_path.glob(".*"))  # no temp files left


@pytest.mark.parametrize("suite", ["table3", "table9"])
def test_every_figure_of_a_suite_renders(suite: str, tmp_path: Path) -> None:
    spec, _ = load_suite(suite)
    files = build_report(spec, FIXTURES, tmp_path)
    stems = {p.stem for p in files.figures}
    assert stems == {suite, f"{suite}-per-class", f"{suite}-curves"}  # no alpha sweep in these suites
