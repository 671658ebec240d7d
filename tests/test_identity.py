"""What a run id covers: settings that change the numbers (precision, Remix's label form) are in it, execution
details that leave the maths alone (CUDA graph, layout, compile, packing, checkpoint cadence) are not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.engine.step import resolve_execution
from benchmark.schema.settings import RunSettings

BASE = {"data": {"name": "synthetic_lt"}, "train": {"device": "cpu"}}


def _with(**train: object) -> RunSettings:
    return RunSettings.model_validate({**BASE, "train": {**BASE["train"], **train}})


def test_precision_is_part_of_the_run_id() -> None:
    auto, fp32, bf16 = _with(), _with(precision="fp32"), _with(precision="bf16")
    assert len({auto.run_hash(), fp32.run_hash(), bf16.run_hash()}) == 3
    assert auto.run_hash() == RunSettings.model_validate(BASE).run_hash()  # 'auto' is the default experiment


def test_execution_details_are_not() -> None:
    ref = _with().run_hash()
    for change in ({"cuda_graph": False}, {"cuda_graph": True}, {"channels_last": True}, {"compile": True},
                   {"checkpoint_every_s": 0}, {"workers": 0}, {"device": "cuda"}):
        assert _with(**change).run_hash() == ref, change


def test_remix_label_form_is_part_of_the_run_id() -> None:
    a = RunSettings.model_validate({**BASE, "method": {"mixer": "remix"}})
    b = RunSettings.model_validate({**BASE, "method": {"mixer": "remix"}, "mixer": {"remix_labels": "per_sample"}})
    assert a.run_hash() != b.run_hash() and a.mixer.remix_labels == "batch"  # the code's form by default


def test_fp32_turns_tf32_off_on_cuda() -> None:
    cuda = torch.device("cuda")
    assert not resolve_execution("fp32", None, None, cuda).tf32
    assert resolve_execution("bf16", None, None, cuda).tf32 and resolve_execution("auto", None, None, cuda).tf32
    assert not resolve_execution("auto", None, None, torch.device("cpu")).tf32


def test_schedule_refuses_settings_it_ignores(tiny_suite: Path) -> None:
    res = CliRunner().invoke(app, ["validate", str(tiny_suite)])
    assert res.exit_code == 0, res.output
    text = tiny_suite.read_text().replace("train: {", "train: {schedule: cosine_warmup, milestones: [1], ")
    tiny_suite.write_text(text)
    res = CliRunner().invoke(app, ["validate", str(tiny_suite)])
    assert res.exit_code == 2 and "cosine_warmup has no milestones" in res.output
    assert len([ln for ln in res.output.strip().splitlines() if ln]) <= 3  # one error line (wrapped at most)


def test_file_dataset_colour_jitter_is_a_recorded_choice() -> None:
    from torchvision import transforms as T

    from benchmark.config.choices import choices_for
    from benchmark.data.split_lists import train_transform

    def jitter(kind: str, on: bool | None) -> bool:
        return any(isinstance(t, T.ColorJitter) for t in train_transform(kind, 64, on).transforms)

    assert jitter("imagenet_lt", None) and not jitter("inat2018", None)  # naver-ai/cmo's loaders
    assert jitter("inat2018", True) and not jitter("imagenet_lt", False)  # the paper's form, one --set away

    class Data:
        reweight_epoch = 160

    s = RunSettings.model_validate({"data": {"name": "inat2018"}, "backbone": {"name": "resnet50"}})
    assert choices_for(s, Data())["color_jitter"] == "off (official code)"
    s = RunSettings.model_validate({"data": {"name": "inat2018", "color_jitter": True}})
    assert choices_for(s, Data())["color_jitter"] == "on (set)"


def test_suite_version_from_2_on_is_part_of_the_run_id(tiny_suite: Path) -> None:
    from benchmark.config.suite import load_suite, plan

    v1 = plan(load_suite(str(tiny_suite))[0])
    tiny_suite.write_text(tiny_suite.read_text().replace("version: 1", "version: 2"))
    v2 = plan(load_suite(str(tiny_suite))[0])
    assert [r.settings.run_hash() for r in v1] == [r.run_hash for r in v1]  # version 1: the ids records already have
    assert all(a.settings == b.settings and a.run_id != b.run_id for a, b in zip(v1, v2, strict=True))
    assert all(r.run_id.endswith(r.settings.run_hash(2)) for r in v2)


@pytest.mark.parametrize(("key", "value", "field"), [
    ("train.epochs", "1e30", "train.epochs"), ("train.batch_size", "1000000000000", "train.batch_size"),
    ("train.lr", ".inf", "train.lr"), ("train.gamma", "1e30", "train.gamma"), ("train.milestones", "[-5, 10]",
                                                                             "train.milestones.0"),
    ("data.image_size", "100000", "data.image_size"), ("data.split_seed", "9223372036854775808", "data.split_seed"),
])
def test_absurd_values_are_refused_naming_the_field(tiny_suite: Path, key: str, value: str, field: str) -> None:
    res = CliRunner().invoke(app, ["run", "suite", str(tiny_suite), "--dry-run", "--set", f"{key}={value}"])
    assert res.exit_code == 2 and field in res.output, res.output


def test_seeds_follow_one_rule_everywhere(tiny_suite: Path) -> None:
    for args, needle in ((["--seeds", "0,0"], "distinct"), (["--seeds", str(2**63)], "2^32"),
                         (["--set", "seed=5"], "--seeds")):
        res = CliRunner().invoke(app, ["run", "suite", str(tiny_suite), "--dry-run", *args])
        assert res.exit_code == 2 and needle in res.output, (args, res.output)
    tiny_suite.write_text(tiny_suite.read_text().replace("seeds: [0]", f"seeds: [0, {2**40}]"))
    res = CliRunner().invoke(app, ["validate", str(tiny_suite)])
    assert res.exit_code == 2 and "seeds" in res.output
