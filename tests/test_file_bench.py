"""`lt-bench bench --dataset`: the PIL reference and gpu_decode pipelines timed side by side on a JPEG set."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.data.prepare import prepare
from benchmark.data.synthetic_jpeg import SynthSpec, write_synthetic
from benchmark.tools.file_bench import format_file_bench, run_file_bench


def test_file_bench_times_both_pipelines_on_a_given_root(tmp_path: Path) -> None:
    write_synthetic(SynthSpec("imagenet_lt", classes=4, max_per_class=10, min_per_class=3, size=48), tmp_path)
    prepare("imagenet_lt", tmp_path)
    res = run_file_bench("imagenet_lt", tmp_path, device="cpu", steps=2, batch_size=4, image_size=32, train=False,
                         quiet=True)
    rows = {r["name"]: r for r in res["variants"]}
    assert set(rows) == {"reference input only", "gpu_decode input only"}
    for r in rows.values():
        assert r["images"] == 8 and r["shape"] == [4, 3, 32, 32] and r["images_per_s"] > 0
    ratio = rows["gpu_decode input only"]["images_per_s"] / rows["reference input only"]["images_per_s"]
    assert abs(res["ratios_gpu_decode_over_reference"]["input"] - ratio) < 1e-9
    assert res["synthetic"] and res["data_root"] == str(tmp_path)
    assert "gpu_decode / reference (input)" in format_file_bench(res)


def test_bench_dataset_flag_runs_on_a_synthetic_set_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--dataset", "inat2018", "--device", "cpu", "--steps", "1",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert {r["name"] for r in doc["variants"]} == {"reference input only", "reference train CE + CMO",
                                                   "gpu_decode input only", "gpu_decode train CE + CMO"}
    assert all("images_per_s" in r for r in doc["variants"]), doc["variants"]
    assert doc["synthetic"] and doc["data_root"] is None and set(doc["ratios_gpu_decode_over_reference"]) == {
        "input", "train"}
    bad = CliRunner().invoke(app, ["bench", "--dataset", "cifar100_lt"])
    assert bad.exit_code == 2 and bad.output.count("error:") == 1
