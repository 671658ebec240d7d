"""A packed smoke of every CIFAR row of every paper suite: each trains (in heterogeneous packs where it can) and
writes its record; unpackable rows (Table 12's minority augmentations, second stages) train alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config.suite import list_suite_names, load_suite, plan
from benchmark.run.records import read_record
from benchmark.run.runner import run_suite
from benchmark.run.unit import InlineExecutor

CIFAR_SUITES = [n for n in list_suite_names() if n.startswith(("table", "fig"))
                and any(r.settings.data.name.startswith("cifar") for r in plan(load_suite(n)[0], smoke=True))]
# The CIFAR rows on generated data of CIFAR-100's class count (no files here), tiny images and steps.
TINY = {"data.name": "synthetic_lt", "data.num_classes": 100, "data.max_per_class": 100, "data.test_per_class": 1,
        "data.image_size": 8, "train.batch_size": 4, "train.steps_per_epoch": 2, "train.epochs": 1,
        "stage2.epochs": 1, "stage2.batch_size": 4, "train.device": "cpu"}


def test_the_cifar_suites_are_the_papers() -> None:
    assert sorted(["fig3", "table2", "table3", "table9", "table10", "table11", "table12", "table13",
                                   "table14"]) == CIFAR_SUITES


@pytest.mark.parametrize("suite", CIFAR_SUITES)
def test_every_cifar_row_trains_packed(suite: str, tmp_path: Path) -> None:
    spec, path = load_suite(suite)
    overrides = {k: v for k, v in TINY.items() if not k.startswith("stage2.")}
    stage2 = any(r.settings.stage2 is not None for r in plan(spec, smoke=True))
    if stage2:
        overrides.update({k: v for k, v in TINY.items() if k.startswith("stage2.")})
    rows = sorted({r.row for r in plan(spec, smoke=True) if r.settings.data.name.startswith("cifar")})
    outcomes = run_suite(spec, where=str(path), smoke=True, overrides=overrides, results_dir=tmp_path,
                         tracker="none", executor=InlineExecutor(pack=64), rows=rows)
    assert {o.run.row for o in outcomes} == set(rows)
    assert outcomes and all(o.status == "done" for o in outcomes), [(o.run.row, o.status, o.error) for o in outcomes
                                                                    if o.status != "done"]
    records = [read_record(o.path) for o in outcomes]
    sizes = {r.run_id: r.environment["execution"].get("pack_size", 1) for r in records}
    packable = [r for r in records if r.settings["method"]["mixer"] not in ("minority_blur", "minority_jitter")
                and r.settings.get("stage2") is None]
    ratios = [r.settings["data"]["imbalance_ratio"] for r in packable]
    if any(ratios.count(x) > 1 for x in ratios):  # rows of different methods on the same data shared a pack
        packed = [r for r in packable if sizes[r.run_id] > 1]
        assert packed, sizes
        rows_in_a_pack = {read_record(o.path).row for o in outcomes
                          if o.run.run_id in packed[0].environment["execution"]["pack_runs"]}
        assert len(rows_in_a_pack) > 1
    for r in records:
        if r.settings["method"]["mixer"].startswith("minority_") or r.settings.get("stage2") is not None:
            assert sizes[r.run_id] == 1  # trained alone
