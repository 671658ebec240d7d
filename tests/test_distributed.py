"""Sharded evaluation over two gloo ranks on the CPU equals the evaluation in one process; so does a two-process
run's record."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.config.catalog import load_dataset
from benchmark.config.suite import load_suite
from benchmark.data.base import LTData
from benchmark.data.profile import shot_groups
from benchmark.data.sources import LoaderSource, TensorSource
from benchmark.engine.checkpoint import load_sealed
from benchmark.engine.distributed import shard_range
from benchmark.engine.evaluation import evaluate
from benchmark.engine.fused import PackNet
from benchmark.engine.parts import build_model
from benchmark.run.executors import LocalExecutor
from benchmark.run.records import read_record
from benchmark.run.runner import run_suite
from benchmark.schema.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 5


def small_data() -> LTData:
    """37 test images (uneven per class and over two ranks), 8x8 pixels; train counts 20/12/8/5/3."""
    rng = np.random.default_rng(3)
    train_y = np.repeat(np.arange(NUM_CLASSES), [20, 12, 8, 5, 3])
    test_y = rng.integers(0, NUM_CLASSES, 37)
    return LTData("tiny", NUM_CLASSES, rng.integers(0, 256, (len(train_y), 8, 8, 3), dtype=np.uint8), train_y,
                  rng.integers(0, 256, (37, 8, 8, 3), dtype=np.uint8), test_y, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def small_net() -> PackNet:
    torch.manual_seed(0)
    return PackNet([nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, NUM_CLASSES))])


def evaluate_both(shard: tuple[int, int]) -> dict[str, list]:
    """Evaluation of the small net through the device-tensor and the DataLoader source."""
    data, device = small_data(), torch.device("cpu")
    groups = shot_groups(data.class_counts, 10, 6)
    net = small_net()
    seen = [0]
    net.register_forward_hook(lambda mod, args, out: seen.__setitem__(0, seen[0] + args[0].shape[1]))
    out: dict[str, list] = {}
    for name, source in (("tensor", TensorSource(data, "standard", device)),
                         ("loader", LoaderSource.for_arrays(data, device, 0))):
        seen[0] = 0
        out[name] = list(evaluate(net, [(source, NUM_CLASSES, groups)], None, shard)[0])
        out[f"{name}_images"] = [seen[0]]  # test images this rank pushed through the network
    return out


WORKER = """
import json, sys, torch
sys.path.insert(0, {root!r})
from benchmark.engine import distributed
from tests.test_distributed import evaluate_both
device, rank, world = distributed.setup(torch.device("cpu"))
res = evaluate_both((rank, world))
bn = torch.nn.BatchNorm2d(3)
bn.running_mean.fill_(rank + 1.0)
distributed.sync_buffers(bn)  # rank 0's BN statistics on every rank
res["synced"] = bn.running_mean.tolist()
open({out!r} + f"/rank{{rank}}.json", "w").write(json.dumps(res))
"""


def test_shard_ranges_cover_every_item_once() -> None:
    for n in (0, 1, 7, 37, 50_000):
        for world in (1, 2, 3, 8):
            parts = [shard_range(n, r, world) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard_range(37, 0, 2) == range(0, 18) and shard_range(37, 1, 2) == range(18, 37)


def test_sharded_evaluation_over_two_gloo_ranks_equals_one_process(tmp_path: Path) -> None:
    single = json.loads(json.dumps(evaluate_both((0, 1))))
    metrics, pc = single["tensor"]
    assert 0 < metrics["acc/all"] < 100 and len(set(pc)) > 2  # the check below is not between constant outputs
    assert single["loader"] == single["tensor"] and single["tensor_images"] == [37]
    # hand check of the overall accuracy: correct predictions over 37 images
    data, net = small_data(), small_net()
    x = (torch.from_numpy(data.test_x).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    pred = net.groups[0](x).argmax(-1).numpy()
    assert metrics["acc/all"] == pytest.approx(100 * float((pred == data.test_y).mean()), abs=1e-12)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = WORKER.format(root=str(ROOT), out=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                              env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    for r, n in enumerate((18, 19)):  # each rank its own slice; the numbers exactly those of one process
        got = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert got.pop("synced") == [1.0, 1.0, 1.0]
        assert got["tensor_images"] == got["loader_images"] == [n]
        assert (got["tensor"], got["loader"]) == (single["tensor"], single["tensor"])


def test_two_process_run_records_the_single_process_evaluation_of_its_model(tiny_suite: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """--gpus-per-run 2 with bn_groups 2 (one BatchNorm batch per process): the record's last-epoch metrics, from
    the two ranks' halves of the test split, are exactly those of its saved weights evaluated in one process."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec, _ = load_suite(str(tiny_suite))
    outcomes = run_suite(spec, rows=["CE + CMO"], results_dir=tmp_path / "res", tracker="none",
                         overrides={"train.bn_groups": 2}, executor=LocalExecutor(gpus=2, gpus_per_run=2))
    assert [o.status for o in outcomes] == ["done"], outcomes[0].error
    rec = read_record(outcomes[0].path)
    assert rec.environment["world_size"] == 2 and rec.settings["train"]["bn_groups"] == 2
    s = RunSettings.model_validate(rec.settings)
    data = load_dataset(s.data).limit_test(s.eval.test_limit_per_class)
    model = build_model(s, data.num_classes)
    model.load_state_dict(load_sealed(outcomes[0].path.with_suffix(".weights.pt"), "weights"))
    source = TensorSource(data, s.train.augment, torch.device("cpu"))
    groups = shot_groups(data.class_counts, s.eval.many_above, s.eval.few_below)
    metrics, pc = evaluate(PackNet([model]), [(source, data.num_classes, groups)])[0]
    assert metrics == {k: v for k, v in rec.metrics["last"].items() if k.startswith("acc/")}
    assert pc == rec.per_class["last"]
