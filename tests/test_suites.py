"""Every suite in suites/: loads, validates, plans (full and smoke), and its paper numbers match the paper's text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.config.suite import SUITES_DIR, SuiteSpec, load_suite, plan
from benchmark.config.validation import check_plan
from benchmark.report.tables import paper_value

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "cmo-paper.txt"
SUITE_FILES = sorted(p for p in SUITES_DIR.glob("*.yaml") if not p.name.startswith("_"))
PAPER_SUITES = [p for p in SUITE_FILES if re.fullmatch(r"(table\d+|fig\d+)", p.stem)]
METRICS = {"acc/all", "acc/many", "acc/medium", "acc/few", "time/batch_s"}
# A decimal number that is not a signed delta such as "(+5.3)" / "(-4.3)" and not part of a longer token.
_NUMBER = re.compile(r"(?<![+\-\d.])\d+\.\d+")


def _load(path: Path) -> SuiteSpec:
    spec, _ = load_suite(str(path))
    return spec


def _paper_text() -> str:
    if not PAPER.is_file():
        pytest.skip(f"paper text not present at {PAPER}")
    return PAPER.read_text(encoding="utf-8")


def _row(spec: SuiteSpec, name: str):  # noqa: ANN202
    matches = [r for r in spec.rows if r.name == name]
    assert len(matches) == 1, f"{spec.suite}: expected one row named {name!r}"
    return matches[0]


def _value(suite: str, row: str, metric: str = "acc/all", column: str | None = None) -> float | None:
    spec = _load(SUITES_DIR / f"{suite}.yaml")
    return paper_value(_row(spec, row), metric, column, spec.metrics[0])


def _expected_numbers(spec: SuiteSpec, row) -> list[float]:  # noqa: ANN001
    """A row's paper values in the paper's reading order: columns left to right, metrics All / Many / Med / Few."""
    out = []
    for col in [c.name for c in spec.columns] or [None]:
        for m in spec.metrics:
            v = paper_value(row, m, col, spec.metrics[0])
            if v is not None:
                out.append(v)
    return out


@pytest.mark.parametrize("path", SUITE_FILES, ids=[p.stem for p in SUITE_FILES])
def test_suite_loads_validates_and_plans(path: Path) -> None:
    spec, where = load_suite(str(path))
    assert spec.suite == path.stem
    runs = plan(spec)
    check_plan(runs, str(where))
    assert runs, "a suite must plan at least one run"
    assert len({r.name for r in spec.rows}) == len(spec.rows), "row names must be unique"
    assert len({r.run_id for r in runs}) == len(runs), "run ids must be unique"
    n_cells = sum(not r.cited for r in spec.rows) * max(len(spec.columns), 1)
    assert len(runs) == n_cells * len(spec.seeds)


@pytest.mark.parametrize("path", SUITE_FILES, ids=[p.stem for p in SUITE_FILES])
def test_smoke_plan(path: Path) -> None:
    spec, where = load_suite(str(path))
    runs = plan(spec, smoke=True)
    assert runs and all(r.smoke and r.run_id.startswith("smoke-") for r in runs)
    assert all(r.settings.train.epochs == 2 and r.settings.train.steps_per_epoch == 3 for r in runs)
    assert {r.seed for r in runs} == {spec.seeds[0]}
    check_plan(runs, str(where))


@pytest.mark.parametrize("path", SUITE_FILES, ids=[p.stem for p in SUITE_FILES])
def test_paper_values_are_well_formed(path: Path) -> None:
    spec = _load(path)
    columns = [c.name for c in spec.columns]
    for row in spec.rows:
        if columns:
            assert set(row.paper) <= set(columns), f"{row.name}: paper keys {sorted(row.paper)} are not columns"
            cells = list(row.paper.values())
        else:
            cells = [row.paper] if row.paper else []
        for cell in cells:
            assert isinstance(cell, dict) and set(cell) <= set(spec.metrics) & METRICS, f"{row.name}: {cell}"
            assert all(isinstance(v, (int, float)) and 0 <= v <= 100 for v in cell.values()), f"{row.name}: {cell}"
        if not row.cited and not _expected_numbers(spec, row):
            assert row.note, f"{row.name}: a run row without a paper value needs a note saying why"
            assert re.search(r"no paper value|no number|not accuracy|figure only", row.note), row.note
        if row.cited:
            assert _expected_numbers(spec, row), f"{row.name}: a cited row exists only to show its paper value"


@pytest.mark.parametrize("path", PAPER_SUITES, ids=[p.stem for p in PAPER_SUITES])
def test_paper_suite_conventions(path: Path) -> None:
    spec = _load(path)
    assert spec.version >= 1 and spec.seeds == [0, 1, 2] and spec.source
    assert path.read_text().startswith("# "), "a suite starts with a header comment"
    header = path.read_text().split("\nsuite:")[0]
    assert f"lt-bench run suite {spec.suite}" in header and "Runtime" in header


@pytest.mark.parametrize("path", PAPER_SUITES, ids=[p.stem for p in PAPER_SUITES])
def test_paper_values_appear_in_the_paper(path: Path) -> None:
    """Each row's values, in reading order, appear as consecutive numbers on one line of the paper's text."""
    lines = [[float(x) for x in _NUMBER.findall(line)] for line in _paper_text().splitlines()]
    spec = _load(path)
    for row in spec.rows:
        want = _expected_numbers(spec, row)
        if not want:
            continue
        k = len(want)
        assert any(nums[i:i + k] == want for nums in lines for i in range(len(nums) - k + 1)), \
            f"{spec.suite} row {row.name!r}: {want} is not a run of numbers on any line of the paper"


def test_every_paper_table_has_a_suite() -> None:
    tables = {int(n) for n in re.findall(r"^Table (\d+)\. ", _paper_text(), flags=re.M)}
    assert tables >= set(range(2, 17))
    missing = [n for n in sorted(tables) if n >= 2 and not (SUITES_DIR / f"table{n}.yaml").is_file()]
    assert not missing, f"no suite for Table(s) {missing} (Table 1 is the dataset summary)"
    assert (SUITES_DIR / "fig3.yaml").is_file()


def test_known_values_table2() -> None:
    assert _value("table2", "Cross Entropy (CE)", column="100") == 38.6
    assert _value("table2", "CE + CMO", column="100") == 43.9
    assert _value("table2", "BS + CMO", column="100") == 46.6
    assert _value("table2", "LDAM-DRW + CMO", column="100") == 47.2
    assert _value("table2", "RIDE (3 experts) + CMO", column="10") == 60.2


def test_known_values_other_tables() -> None:
    assert _value("table3", "RIDE", column="+ROS") == 22.6
    assert _value("table4", "BS + CMO") == 52.3
    assert _value("table6", "BS + CMO", "acc/few") == 44.2
    assert _value("table7", "CE-DRW + CMO + LAS") == 71.8
    assert _value("table8", "CMO", column="Wide ResNet-50") == 71.9
    assert _value("table9", "CutMix (ImageNet-LT)", "acc/few") == 8.1
    assert _value("table13", "RIDE", column="50 +ROS") == 31.3
    assert _value("table15", "BS + CMO") == 74.0
    assert _value("fig3", "CE") == 38.6


def test_cited_rows_follow_the_markers() -> None:
    cited = {r.name for r in _load(SUITES_DIR / "table2.yaml").rows if r.cited}
    assert cited == {"BBN", "Causal Norm", "IB Loss", "Balanced Softmax (BS)", "LADE", "MiSLAS"}
    cited = {r.name for r in _load(SUITES_DIR / "table4.yaml").rows if r.cited}
    assert cited == {"Cross Entropy (CE)", "Decouple-cRT", "Decouple-LWS", "Causal Norm", "RIDE (3 experts)",
                     "RIDE (4 experts)"}
    t7 = _load(SUITES_DIR / "table7.yaml")
    assert {r.name for r in t7.rows if not r.cited} == {
        "Cross Entropy (CE)", "Balanced Softmax", "CE + CMO", "CE-DRW + CMO", "LDAM-DRW + CMO", "BS + CMO",
        "CE-DRW + CMO + LAS", "RIDE (3 experts) + CMO"}


def test_table16_notes_carry_the_paper_seconds() -> None:
    text = _paper_text()
    assert re.search(r"Training Time \(s\)\s+0\.355\s+0\.369", text)
    spec = _load(SUITES_DIR / "table16.yaml")
    assert _row(spec, "CE").paper == {"time/batch_s": 0.355} and _row(spec, "CE + CMO").paper == {"time/batch_s": 0.369}
    assert spec.metrics[0] == "time/batch_s"


def test_shared_configurations_agree() -> None:
    """Cells that are the same experiment in two tables resolve to the same settings (same config hash)."""
    def cfg(suite: str, row: str, column: str | None = None) -> str:
        spec = _load(SUITES_DIR / f"{suite}.yaml")
        (run,) = [r for r in plan(spec, seeds=[0]) if r.row == row and r.column == column]
        return run.config_hash

    assert cfg("table9", "CMO (ImageNet-LT)") == cfg("table4", "CE + CMO") == cfg("table16", "CE + CMO")
    assert cfg("table9", "CMO") == cfg("table2", "CE + CMO", "100") == cfg("table3", "CE", "+CMO") \
        == cfg("table11", "CE + CMO") == cfg("table12", "CMO w/ CutMix") == cfg("table10", "q(1, k)") \
        == cfg("fig3", "CE + CMO (α = 1.0)")
    assert cfg("table2", "CE-DRW + CMO", "50") == cfg("table13", "CE-DRW", "50 +CMO")
    assert cfg("table2", "Remix", "100") == cfg("table3", "CE-DRW", "+Remix")
    assert cfg("table7", "CE-DRW + CMO") == cfg("table8", "CMO", "ResNet-50")


def test_las_row_reuses_its_stage1_run() -> None:
    """Table 7's LAS row is stage 2 on exactly the CE-DRW + CMO run of the same seed (the runner reuses it)."""
    spec = _load(SUITES_DIR / "table7.yaml")
    runs = {(r.row, r.seed): r for r in plan(spec)}
    for seed in spec.seeds:
        las = runs[("CE-DRW + CMO + LAS", seed)].settings
        assert las.stage2 is not None and las.stage2.eps_head == 0.3 and las.stage2.eps_tail == 0.0
        assert las.stage1().run_hash() == runs[("CE-DRW + CMO", seed)].settings.run_hash()


def test_method_axes_of_special_rows() -> None:
    t10 = {r.row: r.settings for r in plan(_load(SUITES_DIR / "table10.yaml"), seeds=[0])}
    assert [t10[n].mixer.fg_power for n in ("q(1/2, k)", "q(1, k)", "q(2, k)")] == [0.5, 1.0, 2.0]
    t3 = {(r.row, r.column): r.settings for r in plan(_load(SUITES_DIR / "table3.yaml"), seeds=[0])}
    assert t3[("LDAM-DRW", "+ROS")].train.sampler == "ros" and t3[("LDAM-DRW", "+ROS")].method.mixer == "none"
    assert t3[("RIDE", "+Remix")].backbone.name == "ride_resnet32" and t3[("RIDE", "+Remix")].method.mixer == "remix"
    t8 = {r.column: r.settings.backbone.name for r in plan(_load(SUITES_DIR / "table8.yaml"), seeds=[0])}
    assert t8 == {"ResNet-50": "resnet50", "Wide ResNet-50": "wide_resnet50_2", "ResNet-101": "resnet101",
                  "ResNet-152": "resnet152"}
    fig3 = [r.settings.mixer.alpha for r in plan(_load(SUITES_DIR / "fig3.yaml"), seeds=[0])
            if r.settings.method.mixer == "cmo"]
    assert fig3 == [0.1, 0.25, 0.5, 1.0, 2.0, 4.0]
    t4 = {r.row: r.settings for r in plan(_load(SUITES_DIR / "table4.yaml"), seeds=[0])}
    assert t4["BS + CMO"].train.batch_size == 256 and t4["BS + CMO"].train.epochs == 100  # the paper's recipe
    t7 = {r.row: r.settings for r in plan(_load(SUITES_DIR / "table7.yaml"), seeds=[0])}
    assert t7["CE + CMO"].train.batch_size == 512 and t7["CE + CMO"].train.epochs == 200
    t6 = plan(_load(SUITES_DIR / "table6.yaml"), seeds=[0])[0].settings.train
    assert (t6.epochs, t6.lr, t6.weight_decay, t6.schedule) == (400, 0.02, 5e-4, "cosine_warmup")
    t15 = plan(_load(SUITES_DIR / "table15.yaml"), seeds=[0])[0].settings.train
    assert (t15.epochs, t15.lr, t15.weight_decay, t15.schedule) == (400, 0.02, 1e-4, "cosine_warmup")
    t14 = plan(_load(SUITES_DIR / "table14.yaml"), seeds=[0])[0].settings.train
    assert (t14.epochs, t14.schedule, t14.augment) == (400, "paco_step", "cifar_strong")
