"""Tables as the paper prints them: "(+x.x)" against Vanilla, Table 9's blocks, the smoke / override header without Δ
against the paper, LaTeX with the best value per column in bold, missing cells "n/a"."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from fixtures.make_records import TABLE9, write_suite

from benchmark.config.suite import load_suite, plan
from benchmark.report import build_report
from benchmark.report.latex import tex_escape
from benchmark.report.layout import Provenance, baseline_column, row_blocks
from benchmark.report.plots import mark_figure, plot_cells
from benchmark.report.tables import cell_frame
from benchmark.run.records import load_records, write_record

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"


def _row(text: str, name: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith(f"| {name} |"))


def test_baseline_column_per_group() -> None:
    t3, _ = load_suite("table3")
    t13, _ = load_suite("table13")
    t9, _ = load_suite("table9")
    assert [baseline_column(t3, c) for c in ("Vanilla", "+ROS", "+CMO")] == ["Vanilla"] * 3
    assert baseline_column(t13, "50 +ROS") == "50 Vanilla" and baseline_column(t13, "10 +CMO") == "10 Vanilla"
    assert baseline_column(t9, None) is None


def test_table3_deltas_against_vanilla(tmp_path: Path) -> None:
    spec, _ = load_suite("table3")
    text = build_report(spec, FIXTURES, tmp_path).text
    # paper: 32.3 - 38.6 = -6.3 (the paper prints -5.3 there); ours: 32.0 - 38.0 = -6.0; Δ vs paper 32.0 - 32.3
    assert _row(text, "CE").startswith("| CE | 38.6 (+0.0) | 38.0 (+0.0) ± 0.5 (n=3) | -0.6 | 32.3 (-6.3) | "
                                       "32.0 (-6.0) ± 0.5 (n=3) | -0.3 | 40.0 (+1.4) | n/a (0/3) | n/a | "
                                       "43.9 (+5.3) | 43.0 (+5.0) ± 0.5 (n=3) | -0.9 |")
    assert "| 47.0 (+5.9) | 47.5 (+6.5) ± 0.5 (n=3) | +0.5 |" in _row(text, "CE-DRW")
    assert _row(text, "RIDE").count("n/a (0/3)") == 4 and "(+x.x) = difference to the row's Vanilla" in text


def test_table9_two_blocks_with_headers(tmp_path: Path) -> None:
    spec, _ = load_suite("table9")
    assert row_blocks(spec) == [("CIFAR-100-LT", [0, 1]), ("ImageNet-LT", [2, 3])]
    lines = [ln for ln in build_report(spec, FIXTURES, tmp_path).text.splitlines() if ln.startswith("| ")]
    names = [ln.split(" | ")[0][2:] for ln in lines[1:]]
    assert names == ["**CIFAR-100-LT**", "CutMix", "CMO", "**ImageNet-LT**", "CutMix", "CMO"]
    assert lines[2].startswith("| CutMix | 35.6 | 35.0 ± 0.5 (n=3) | -0.6 |")
    assert lines[5].startswith("| CutMix | 45.5 | n/a (0/3) | n/a |")  # the ImageNet-LT CutMix row, not run


def test_latex_bold_best_per_column_and_na(tmp_path: Path) -> None:
    spec, _ = load_suite("table3")
    tex = build_report(spec, FIXTURES, tmp_path).tex.read_text()
    rows = {ln.split(" & ")[0]: ln.split(" & ") for ln in tex.splitlines() if " & " in ln}
    # columns: name, then (paper, ours) for Vanilla, +ROS, +Remix, +CMO
    assert rows["CE-DRW"][2] == r"\textbf{41.0} (+0.0) $\pm$ 0.5"  # best ours in Vanilla (41.0 > 38.0)
    assert rows["CE"][2] == r"38.0 (+0.0) $\pm$ 0.5"
    assert rows["RIDE"][1] == r"\textbf{48.6} (+0.0)" and rows["CE"][1] == "38.6 (+0.0)"  # best paper value
    assert rows["CE-DRW"][8].startswith(r"\textbf{47.5} (+6.5)") and rows["CE"][8].startswith("43.0")
    assert rows["LDAM-DRW"][2] == "n/a" and rows["CE"][6] == "n/a"  # no records: n/a, never 0
    assert tex.count(r"\textbf") == 4 + 3  # ours: Vanilla, +ROS, +CMO; paper: one per column (4)
    assert r"\begin{tabular}" in tex and "top-1 \\%" in tex


def test_latex_bold_is_per_block(tmp_path: Path) -> None:
    spec, _ = load_suite("table9")
    tex = build_report(spec, FIXTURES, tmp_path).tex.read_text()
    assert r"\multicolumn{9}{l}{\textit{CIFAR-100-LT}} \\" in tex and r"\textit{ImageNet-LT}" in tex
    paper_all = [ln.split(" & ")[1] for ln in tex.splitlines() if ln.startswith(("CutMix &", "CMO &"))]
    assert paper_all == ["35.6", r"\textbf{43.9}", "45.5", r"\textbf{49.1}"]  # best of each block


def test_tex_escape() -> None:
    assert tex_escape("CE + CMO (α = 1.0) 5% a_b & ±") == r"CE + CMO ($\alpha$ = 1.0) 5\% a\_b \& $\pm$"


def test_smoke_report_says_so_and_shows_no_delta(tmp_path: Path) -> None:
    res = tmp_path / "res"
    assert write_suite("table9", TABLE9, res, smoke=True) == 6
    spec, _ = load_suite("table9")
    files = build_report(spec, res, tmp_path / "rep", smoke=True, seeds=[0, 1, 2])
    assert files.markdown.name == "table9-smoke.md"
    text = files.text
    assert "**Smoke runs**" in text and "no Δ against the paper is shown" in text
    assert "| Δ |" not in text and "Δ = ours − paper" not in text
    assert _row(text, "CutMix").startswith("| CutMix | 35.6 | 35.0 ± 0.5 (n=3) | 71.0 |")
    assert {p.name for p in files.figures} >= {"table9-smoke.png", "table9-smoke-curves.pdf"}


def test_figures_of_runs_unlike_the_paper_say_so() -> None:
    spec, _ = load_suite("table9")
    runs = plan(spec)
    frame = cell_frame(spec, runs, {r.run_id: r for r in load_records(FIXTURES, "table9")})
    note = Provenance(smoke=True).figure_note()
    assert note == "SMOKE RUNS: not comparable with the paper" and Provenance().figure_note() is None
    fig = plot_cells(spec, frame)
    mark_figure(fig, note)
    assert fig.axes[0].get_title().startswith(note + "\n" + "Table 9.")
    plt.close(fig)


def test_override_report_names_the_overrides(tmp_path: Path) -> None:
    res = tmp_path / "res"
    write_suite("table9", TABLE9, res, overrides={"train.epochs": 3})
    spec, _ = load_suite("table9")
    text = build_report(spec, res, tmp_path / "rep", overrides={"train.epochs": 3}).text
    assert "**Overridden settings** (`--set`): `train.epochs=3`." in text and "| Δ |" not in text
    assert "Records: 6/12" in text
    plain = build_report(spec, res, tmp_path / "rep2").text  # without the override: the records are not this plan's
    assert "Records: 0/12" in plain and "| Δ |" in plain


def test_records_whose_settings_differ_from_the_plan_are_named(tmp_path: Path) -> None:
    res = tmp_path / "res"
    write_suite("table9", TABLE9, res)
    rec = load_records(res, "table9")[0]
    rec.settings["train"]["lr"] = 0.2  # a record edited (or made by other code) under the planned run id
    write_record(next((res / "table9").glob(f"*/{rec.run_id}.json")), rec)
    spec, _ = load_suite("table9")
    text = build_report(spec, res, tmp_path / "rep").text
    assert "**Records differ from the suite's planned settings** in: train.lr." in text and "| Δ |" not in text
