"""Suite loading: precedence, include, run ids, and validation errors that name the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config.suite import SuiteError, load_suite, parse_set, plan
from benchmark.config.validation import check_plan
from tests.conftest import TINY_SUITE


def _suite(tmp_path: Path, text: str, name: str = "tiny.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_precedence_defaults_row_set(tmp_path: Path) -> None:
    row_set = "    method: {loss: ce, mixer: cmo}\n    set: {train.epochs: 5, mixer.prob: 0.25}"
    p = _suite(tmp_path, TINY_SUITE.replace("    method: {loss: ce, mixer: cmo}", row_set))
    spec, _ = load_suite(str(p))
    ce, cmo = plan(spec, overrides=parse_set(["train.epochs=7"]))
    assert ce.settings.train.epochs == 7 and cmo.settings.train.epochs == 7  # --set beats row beats defaults
    assert cmo.settings.mixer.prob == 0.25 and ce.settings.mixer.prob == 0.5
    assert ce.settings.eval.many_above == 10 and ce.settings.eval.few_below == 8  # shots from the suite
    assert [r.row for r in plan(spec)] == ["CE", "CE + CMO"]  # cited rows are never run


def test_run_id_tracks_settings_not_location(tmp_path: Path) -> None:
    spec, _ = load_suite(str(_suite(tmp_path, TINY_SUITE)))
    base = plan(spec)[0]
    assert plan(spec, overrides={"train.device": "cuda", "data.root": "/elsewhere"})[0].run_id == base.run_id
    changed = plan(spec, overrides={"train.lr": 0.05})[0]
    assert changed.run_id != base.run_id and changed.run_id.startswith("ce-s0-")
    s1 = plan(spec, seeds=[1])[0]
    assert s1.config_hash == base.config_hash and s1.run_id != base.run_id


def test_include_merges_base(tmp_path: Path) -> None:
    _suite(tmp_path, "defaults:\n  train: {epochs: 9, lr: 0.2}\nseeds: [4, 5]\n", "_base.yaml")
    body = TINY_SUITE.replace("suite: tiny", "suite: tiny\ninclude: _base.yaml").replace("seeds: [0]\n", "")
    spec, _ = load_suite(str(_suite(tmp_path, body)))
    r = plan(spec)[0]
    assert r.settings.train.epochs == 2 and r.settings.train.lr == 0.2 and spec.seeds == [4, 5]


@pytest.mark.parametrize(("edit", "expected"), [
    (("title:", "titel:"), "titel: unknown key"),
    (("epochs: 2", "epochs: two"), "train.epochs: Input should be a valid integer"),
    (("epochs: 2", "epochs: 0"), "train.epochs: Input should be greater than 0"),
    (("imbalance_ratio: 4", "imbalance_ratio: 0.5"), "data.imbalance_ratio: Input should be greater than or equal"),
    (("seeds: [0]", "seeds: []"), "seeds: List should have at least 1 item"),
    (("    method: {loss: ce}\n", "    method: {loss: ce, optimizer: adam}\n"), "rows.0.method"),
    (("batch_size: 16", "batch_size: -1"), "train.batch_size"),
])
def test_bad_suite_names_the_field(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    p = _suite(tmp_path, TINY_SUITE.replace(*edit, 1))
    with pytest.raises(SuiteError) as e:
        load_suite(str(p))
    assert str(p) in str(e.value) and expected in str(e.value) and "\n" not in str(e.value)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    p = _suite(tmp_path, "suite: x\nversion: 1\nrows: [\n  - a: b\n")
    with pytest.raises(SuiteError, match=rf"{p}:\d+: malformed YAML"):
        load_suite(str(p))


def test_unknown_component_did_you_mean(tmp_path: Path) -> None:
    p = _suite(tmp_path, TINY_SUITE.replace("mixer: cmo}", "mixer: cmoo}"))
    spec, _ = load_suite(str(p))
    with pytest.raises(SuiteError) as e:
        check_plan(plan(spec), str(p))
    msg = str(e.value)
    assert "row 'CE + CMO'" in msg and "unknown mixer 'cmoo'" in msg and "Did you mean 'cmo'" in msg


def test_dataset_option_it_does_not_take(tmp_path: Path) -> None:
    p = _suite(tmp_path, TINY_SUITE.replace("name: synthetic_lt, imbalance_ratio: 4, num_classes: 4, "
                                            "max_per_class: 24, test_per_class: 6,\n         image_size: 8",
                                            "name: cifar10_lt, imbalance_ratio: 4, num_classes: 4"))
    spec, _ = load_suite(str(p))
    with pytest.raises(SuiteError, match="data.num_classes is not an option of dataset 'cifar10_lt'"):
        check_plan(plan(spec), str(p))


def test_unknown_suite_name_suggests() -> None:
    with pytest.raises(SuiteError, match="Did you mean .*'table9'"):
        load_suite("table8x")


def test_set_parsing() -> None:
    assert parse_set(["train.milestones=[3, 4]", "mixer.prob=0.25", "x=true"]) == \
        {"train.milestones": [3, 4], "mixer.prob": 0.25, "x": True}
    with pytest.raises(SuiteError, match="expected key=value"):
        parse_set(["train.epochs"])
