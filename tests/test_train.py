"""The training loop: mixing inside the window only, determinism, failure records, a real CIFAR-10 smoke epoch."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config.catalog import load_dataset
from benchmark.config.suite import load_suite, plan
from benchmark.engine.loop import fit
from benchmark.run.runner import run_suite
from benchmark.schema.settings import RunSettings

TINY = {"data": {"name": "synthetic_lt", "imbalance_ratio": 4, "num_classes": 4, "max_per_class": 64,
                 "test_per_class": 4, "image_size": 8},
        "train": {"epochs": 6, "batch_size": 8, "warmup_epochs": 1, "device": "cpu"},
        "method": {"mixer": "cmo"}, "mixer": {"start": 1, "end": 2, "prob": 0.5}}


def test_mixing_only_inside_window_with_probability() -> None:
    s = RunSettings.model_validate(TINY)
    res = fit(s, load_dataset(s.data))
    frac = [row["train/mixed_frac"] for row in res.curve]
    active = [row["mixer_active"] for row in res.curve]
    assert active == [False, False, True, True, False, False]  # 1 < epoch < 6 - 2
    assert frac[0] == frac[1] == frac[4] == frac[5] == 0.0
    mean_active = (frac[2] + frac[3]) / 2  # 2 x 17 batches, Binomial(34, 0.5)
    assert 0.25 < mean_active < 0.75


def test_same_seed_same_result_other_seed_differs() -> None:
    s = RunSettings.model_validate({**TINY, "train": {**TINY["train"], "epochs": 2}})
    data = load_dataset(s.data)
    a, b = fit(s, data), fit(s, data)
    c = fit(s.model_copy(update={"seed": 1}), data)
    assert [r["train/loss"] for r in a.curve] == [r["train/loss"] for r in b.curve]
    assert [r["train/loss"] for r in a.curve] != [r["train/loss"] for r in c.curve]


def test_non_finite_loss_is_a_failed_record_and_the_suite_goes_on(tiny_suite: Path, tmp_path: Path) -> None:
    diverge = "    method: {loss: ce}\n    set: {method.loss: ldam, method.loss_args: {s: 1.0e+38}}\n"
    tiny_suite.write_text(tiny_suite.read_text().replace("    method: {loss: ce}\n", diverge))
    spec, _ = load_suite(str(tiny_suite))
    outcomes = run_suite(spec, results_dir=tmp_path / "res", tracker="none")
    assert [o.status for o in outcomes] == ["failed", "done"]
    assert "non-finite" in (outcomes[0].error or "")
    again = run_suite(spec, results_dir=tmp_path / "res", tracker="none")
    assert [o.status for o in again] == ["skipped (failed)", "skipped (done)"]


def test_real_cifar10_lt_smoke_epoch(real_cifar10: Path) -> None:
    path = Path(__file__).resolve().parents[1] / "suites" / "table9.yaml"
    spec, _ = load_suite(str(path))
    run = plan(spec, smoke=True, overrides={"data.name": "cifar10_lt", "data.root": str(real_cifar10),
                                            "data.download": False, "train.device": "cpu"})[1]
    data = load_dataset(run.settings.data)
    assert data.class_counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    res = fit(run.settings, data)
    assert len(res.curve) == 2 and res.curve[-1]["train/loss"] > 0
    assert res.groups == {"many": 8, "medium": 2, "few": 0} and res.last["acc/few"] is None
    assert 0.0 <= res.last["acc/all"] <= 100.0


@pytest.mark.parametrize("name", ["quickstart", "table9"])
def test_real_suites_validate(name: str) -> None:
    from benchmark.config.validation import check_plan

    spec, path = load_suite(name)
    check_plan(plan(spec), str(path))
    assert len(plan(spec, smoke=True)) == len(spec.rows) - sum(r.cited for r in spec.rows)
