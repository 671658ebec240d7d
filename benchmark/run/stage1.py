"""The first stage of a two-stage run: a finished run's weights reused, else trained here; written atomically."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.config.suite import RunSpec, SuiteError
from benchmark.data.base import LTData
from benchmark.engine.checkpoint import load_sealed, save_sealed
from benchmark.engine.loop import fit
from benchmark.engine.parts import build_model
from benchmark.run.jobs import existing_status
from benchmark.run.records import read_record
from benchmark.schema.files import atomic_write_text


def stage1_model(r: RunSpec, data: LTData, path: Path, hook: Callable[[dict[str, Any]], None]
                 ) -> tuple[Any, dict[str, Any]]:
    """The stage-1 model of a two-stage run: the weights of a finished run of the suite with exactly the stage-1
    settings (e.g. the 'CE-DRW + CMO' row for 'CE-DRW + CMO + LAS'; for a linked copy, the weights of the run it
    names in `reused_from`), else trained here first."""
    s1 = r.settings.stage1()
    suite_dir = path.parent.parent
    for cand in sorted(suite_dir.glob(f"*/*-{s1.run_hash(r.suite_version)}.json")):
        try:
            if existing_status(cand) != "done":
                continue
        except SuiteError:  # another run's damaged or misplaced record: not a source of weights
            continue
        rec = read_record(cand)
        weights = cand.with_suffix(".weights.pt")
        if not weights.is_file() and rec.reused_from:  # a linked copy: the weights are the training run's
            weights = (suite_dir.parent / rec.reused_from["path"]).with_suffix(".weights.pt")
        if weights.is_file():
            model = build_model(s1, data.num_classes)
            model.load_state_dict(load_sealed(weights, "weights file"))
            return model, {"run_id": rec.run_id, "source": "reused", "metrics": rec.metrics}
    own = path.with_name(path.stem + ".stage1.weights.pt")  # trained here by an earlier, interrupted attempt
    info_file = own.with_suffix(".json")
    if own.is_file() and info_file.is_file():
        model = build_model(s1, data.num_classes)
        model.load_state_dict(load_sealed(own, "weights file"))
        return model, json.loads(info_file.read_text())
    ckpt = path.with_name(path.stem + ".stage1.ckpt")
    res = fit(s1, data, on_epoch=hook, checkpoint=ckpt, run_id=f"{r.run_id}/stage1")
    info = {"run_id": f"{r.run_id}/stage1", "source": "trained", "metrics": {"last": res.last, "best": res.best}}
    save_weights(res.model, own)
    atomic_write_text(info_file, json.dumps(info))
    ckpt.unlink(missing_ok=True)
    return res.model, info


def save_weights(model: Any, path: Path) -> None:
    """The final model's state dict, written atomically with its digest."""
    save_sealed(model.state_dict(), path)
