"""The throughput benchmark times only the product's own loop, beside that loop in the reference configuration."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

import benchmark.tools.bench as bench
from benchmark.tools.bench import METHODS, BenchConfig, run_bench, variants


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return run_bench(device="cpu", ks=(1, 2, 4), steps=1, epochs=2, quiet=True)


def test_every_row_times_a_product_function(result: dict[str, Any]) -> None:
    rows = {r["name"]: r for r in result["variants"]}
    assert list(rows) == ["reference", "loop", "loop packed K=2", "loop packed K=4", "loop hetero K=4"]
    for name, r in rows.items():
        assert "error" not in r, (name, r.get("error"))
        module, _, func = r["function"].rpartition(".")
        assert callable(getattr(importlib.import_module(module), func))  # a real product function, not a probe
        assert r["function"] == "benchmark.engine.loop.train_pack"
        for key in ("images_per_s", "ratio", "min_per_run", "min_per_run_wall", "suite_hours", "ms_per_step"):
            assert r[key] > 0, (name, key)
        assert r["pack_size"] == r["k"] == len(r["pack_runs"])
    assert rows["reference"]["ratio"] == pytest.approx(1.0)
    ref = rows["reference"]
    assert (ref["precision"], ref["cuda_graph"], ref["channels_last"]) == ("fp32", False, False)
    assert rows["loop packed K=4"]["images"] == 4 * rows["loop"]["images"]
    assert rows["loop packed K=2"]["min_per_run_wall"] == pytest.approx(2 * rows["loop packed K=2"]["min_per_run"])
    assert result["workload"]["n_train"] == 10847
    assert result["summary"]["loop_hetero"]["name"] == "loop hetero K=4"


def test_heterogeneous_row_mixes_losses_mixers_and_backbones() -> None:
    cfg = BenchConfig(device="cpu", batch_size=8, steps=1, epochs=2, workers=0, ks=(1, 16), compile=True)
    rows = dict(variants(cfg))
    hetero = rows["loop hetero K=16"]
    assert len(hetero) == 16 and len({s.seed for s in hetero}) == 16
    kinds = {(s.method.loss, s.method.rule, s.method.mixer, s.backbone.name) for s in hetero}
    assert kinds == set(METHODS) and len(METHODS) == 12  # CE, LDAM-DRW, BS, RIDE, each plain / CMO / Remix
    assert all(s.train.compile for s in rows["loop hetero K=16+compile"])
    assert not any(s.train.compile for s in hetero)
    ref = rows["reference"][0]
    assert ref.train.pipeline == "reference" and ref.train.precision == "fp32"


def test_bench_main_writes_json_and_refuses_bad_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake(**kw: Any) -> dict[str, Any]:
        seen.update(kw)
        return {"device_name": "cpu", "torch": "x", "settings": {"batch_size": 1, "steps": 1, "epochs": 2},
                "variants": [], "workload": {"n_train": 1}}

    monkeypatch.setattr(bench, "run_bench", fake)
    out = tmp_path / "b.json"
    bench.bench_main(device="cpu", json_out=out, ks="1, 8,16")
    assert seen["ks"] == [1, 8, 16] and json.loads(out.read_text())["device_name"] == "cpu"
    with pytest.raises(ValueError, match="pack sizes"):
        bench.bench_main(device="cpu", ks="0,2")
