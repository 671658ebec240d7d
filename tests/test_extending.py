"""Extending lt-bench: a loss and a mixer with its own setting each take one new file plus one import line (the README's
count), proved on a copy of the package; every component axis takes its options through one `*_args` mapping."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.config.catalog import load_dataset
from benchmark.config.suite import SuiteError
from benchmark.config.validation import check_components
from benchmark.engine.parts import build_model, build_parts
from benchmark.methods.mixers import MixContext, mixers, remix_label_weight
from benchmark.schema.registry import Registry, option_names
from benchmark.schema.settings import RunSettings
from tests.conftest import TINY_SUITE

PKG = Path(__file__).resolve().parents[1] / "benchmark"

TOY_LOSS = '''"""Focal loss: (1 - p_t)^gamma-weighted cross-entropy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.losses import LossDef, logits_of, losses, weighted_reduce


class Focal(nn.Module):
    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, out: Any, target: torch.Tensor, class_weight: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        logp = F.log_softmax(logits_of(out).float(), 1).gather(1, target[:, None])[:, 0]
        return weighted_reduce(-((1 - logp.exp()) ** self.gamma) * logp, target, class_weight, reduction)


losses.register("toy_focal", "focal loss")(LossDef(lambda ctx, gamma=2.0: Focal(gamma)))
'''

TOY_MIXER = '''"""Blend: the foreground image laid over the background with a fixed weight, its own setting."""

from __future__ import annotations

from benchmark.methods.mixers import Mixed, MixerSpec, mixers


def blend_op(xb, yb, xf, yf, rng, ctx):  # noqa: ANN001, ANN201
    w = float(ctx.args["weight"])
    return Mixed((1 - w) * xb + w * xf, yb, yf, 1.0 - w)


mixers.register("toy_blend", "blend a minority image over the batch")(
    MixerSpec("instance", "q", blend_op, options={"weight": 0.3}))
'''

TOY_SUITE = TINY_SUITE.split("rows:")[0] + """rows:
  - name: Focal + Blend
    method: {loss: toy_focal, loss_args: {gamma: 1.0}, mixer: toy_blend, mixer_args: {weight: 0.25}}
"""

CHECK = """
import sys, torch
from benchmark.config.suite import load_suite, plan
from benchmark.config.catalog import load_dataset
from benchmark.engine.parts import build_parts
r = plan(load_suite(sys.argv[1])[0])[0]
data = load_dataset(r.settings.data)
p = build_parts(r.settings, data, torch.from_numpy(data.train_y), torch.device("cpu"))
print(p.mix_ctx.args["weight"], p.criterion.gamma)
"""


def _changed(a: Path, b: Path, rel: Path = Path()) -> tuple[set[str], set[str]]:
    """(files only in b, files that differ), relative paths, ignoring caches."""
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    added = {str(rel / n) for n in cmp.right_only}
    changed = {str(rel / n) for n in cmp.diff_files}
    for sub in cmp.common_dirs:
        more_added, more_changed = _changed(a / sub, b / sub, rel / sub)
        added |= more_added
        changed |= more_changed
    return added, changed


def test_a_loss_and_a_mixer_with_its_own_setting_take_one_file_and_one_import_each(tmp_path: Path) -> None:
    copy = tmp_path / "src" / "benchmark"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "methods" / "toy_focal.py").write_text(TOY_LOSS)
    (copy / "methods" / "toy_blend.py").write_text(TOY_MIXER)
    init = copy / "methods" / "__init__.py"
    init.write_text(init.read_text().replace("    las,\n", "    las,\n    toy_blend,\n    toy_focal,\n"))
    assert _changed(PKG, copy) == ({"methods/toy_blend.py", "methods/toy_focal.py"}, {"methods/__init__.py"})

    suite = tmp_path / "suites" / "tiny.yaml"
    suite.parent.mkdir()
    suite.write_text(TOY_SUITE)
    env = {**os.environ, "PYTHONPATH": str(copy.parent), "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "benchmark", "run", "suite", str(suite), "--tracker", "none",
           "--results-dir", str(tmp_path / "res")]
    out = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    (record,) = (tmp_path / "res" / "tiny").glob("*/*.json")
    rec = json.loads(record.read_text())
    assert rec["status"] == "done" and rec["settings"]["method"]["mixer_args"] == {"weight": 0.25}
    used = subprocess.run([sys.executable, "-c", CHECK, str(suite)], env=env, cwd=tmp_path, capture_output=True,
                          text=True)
    assert used.stdout.split() == ["0.25", "1.0"], used.stderr  # the run's options reach the mixer and the loss

    suite.write_text(TOY_SUITE.replace("weight: 0.25", "wieght: 0.25"))
    bad = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "method.mixer_args: 'wieght' is not an option of mixer 'toy_blend'" in bad.stdout \
        + bad.stderr and "Did you mean 'weight'?" in bad.stdout + bad.stderr


def _settings(**over: dict) -> RunSettings:
    base = {"data": {"name": "synthetic_lt", "num_classes": 4, "max_per_class": 24, "test_per_class": 4,
                     "imbalance_ratio": 4,
                     "image_size": 8}, "train": {"device": "cpu", "epochs": 4}}
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v}
    return RunSettings.model_validate(base)


def test_option_names_come_from_declared_options_or_the_factory_defaults() -> None:
    assert option_names(mixers.get("remix")) == ["kappa", "tau"]
    assert option_names(mixers.get("cmo")) == []
    reg: Registry[object] = Registry("widgets")
    reg.register("w", "a widget")(lambda ctx, size=3, *, colour="red": None)
    assert option_names(reg.get("w")) == ["size", "colour"]
    with pytest.raises(ValueError, match="widgets.args: 'sise' is not an option of widget 'w'. Did you mean 'size'"):
        reg.check_args("w", {"sise": 1}, "widgets.args")


@pytest.mark.parametrize("over, message", [
    ({"method": {"rule": "drw", "rule_args": {"bta": 0.9}}}, "method.rule_args: 'bta' is not an option of rule 'drw'"),
    ({"method": {"mixer": "cmo", "mixer_args": {"kappa": 2}}}, "'kappa' is not an option of mixer 'cmo'"),
    ({"train": {"sampler_args": {"power": 2}}}, "train.sampler_args: 'power' is not an option of sampler 'instance'"),
    ({"train": {"schedule_args": {"gamma": 0.5}}}, "set gamma with train.gamma"),
    ({"backbone": {"num_experts": 3}}, "backbone.num_experts is for multi-expert backbones"),
    ({"backbone": {"args": {"no_such_kwarg": 1}}}, "backbone.args: timm model 'resnet32_cifar' does not take them"),
])
def test_every_axis_refuses_options_its_component_does_not_take(over: dict, message: str) -> None:
    with pytest.raises(SuiteError, match=message.replace("(", r"\(").replace(".", r"\.")):
        check_components(_settings(**over))


def test_rule_and_mixer_options_change_what_the_run_computes() -> None:
    s = _settings(method={"rule": "drw", "rule_args": {"beta": 0.5}, "mixer": "remix",
                          "mixer_args": {"kappa": 1.5}})
    check_components(s)
    data = load_dataset(s.data)
    p = build_parts(s, data, torch.from_numpy(data.train_y), torch.device("cpu"))
    n = torch.tensor(data.class_counts, dtype=torch.float64)
    w = (1 - 0.5) / (1 - 0.5 ** n)
    assert torch.allclose(p.rule(s.train.epochs - 1), (w / w.sum() * len(n)).float())  # beta 0.5 by hand
    assert p.mix_ctx.args == {"kappa": 1.5, "tau": 0.5}
    ctx = MixContext(1.0, torch.tensor([20, 10]), args=p.mix_ctx.args)
    # n_i / n_j = 2 >= kappa 1.5 and lam 0.3 < tau: the majority label gets weight 0 (the default kappa 3 keeps lam)
    assert remix_label_weight(0.3, ctx.class_counts[:1], ctx.class_counts[1:], 1.5, 0.5).item() == 0.0
    assert remix_label_weight(0.3, ctx.class_counts[:1], ctx.class_counts[1:]).item() == pytest.approx(0.3)


def test_backbone_args_reach_timm() -> None:
    s = _settings(backbone={"name": "resnet50", "args": {"drop_rate": 0.25}})
    check_components(s)
    assert build_model(s, 5).drop_rate == 0.25
