"""Read back an offline W&B run from its run-<id>.wandb transaction log (LevelDB-log framed protobufs)."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7


def records(path: Path) -> Iterator[Any]:
    """Yield wandb_internal_pb2.Record messages in file order."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, buf = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        crc, n, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + n]
        pos += HEADER + n
        if kind == 0:
            continue
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, "corrupt chunk"
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL / FIRST start a record, MIDDLE / LAST extend it
        if kind in (1, 4):
            rec = Record()
            rec.ParseFromString(buf)
            yield rec


def read_run(path: Path) -> dict[str, Any]:
    """Fold a run's records into {run, config, history, summary, exit_code}."""
    out: dict[str, Any] = {"run": {}, "config": {}, "history": [], "summary": {}, "exit_code": None}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["run"] = {"id": r.run.run_id, "name": r.run.display_name, "group": r.run.run_group,
                          "job_type": r.run.job_type, "tags": list(r.run.tags), "project": r.run.project}
            for item in r.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in r.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            for i in r.summary.update:
                out["summary"][i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
        elif kind == "exit":
            out["exit_code"] = r.exit.exit_code
    return out


def flush_wandb() -> None:
    """Wait until W&B's service has written every run of this process: `run.finish()` can return before an offline
    run's transaction log is on disk (seen with wandb 0.31: a 7-byte file just after finish); teardown waits."""
    import wandb

    wandb.teardown()
