"""Throughput profiles: the last `lt-bench bench` result per device, images/s of the product loop by pack size."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmark.config.suite import PERF_DIR, SuiteError, slug
from benchmark.schema.files import atomic_write_text

COMMITTED_PROFILE = PERF_DIR / "bench-h100.json"


def cache_dir() -> Path:
    """$LTBENCH_CACHE_DIR, else the user cache dir of lt-bench (~/.cache/lt-bench)."""
    env = os.environ.get("LTBENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lt-bench"))


def profile_path(device_name: str) -> Path:
    """Where the last bench result of a device lives: <cache>/bench/<slug of the device name>.json."""
    return cache_dir() / "bench" / f"{slug(device_name)}.json"


def save_profile(result: dict[str, Any]) -> Path:
    """Keep a `lt-bench bench` result (its JSON) as the throughput profile of its device; returns the file."""
    if not result.get("device_name") or not isinstance(result.get("variants"), list):
        raise ValueError("a bench result needs 'device_name' and a 'variants' list")
    path = profile_path(str(result["device_name"]))
    atomic_write_text(path, json.dumps(result, indent=1, default=str))
    return path


_LOOP_ROW = re.compile(r"^loop(?: packed K=(\d+))?(\+compile)?$")


def parse_profile(result: dict[str, Any]) -> dict[bool, dict[int, float]]:
    """{compiled?: {K: images/s}} of the product loop rows of a bench result.

    Rows are `loop` (K = 1), `loop packed K=16`, with `+compile` for torch.compile; newer results also give a
    product row the fields `function` and `k`. Rows without images/s (errors) and the reference configuration are
    left out; where two rows measure one K (a pack of one method and a heterogeneous pack), the slower counts.
    """
    out: dict[bool, dict[int, float]] = {False: {}, True: {}}
    for row in result.get("variants", []):
        ips = row.get("images_per_s")
        if not isinstance(ips, (int, float)) or ips <= 0:
            continue
        name = str(row.get("name", ""))
        if name.startswith("reference"):
            continue
        m = _LOOP_ROW.match(name)
        if "function" in row and row.get("k") is not None:
            k = int(row["k"])
            compiled = bool(row.get("compile")) or name.endswith("+compile")
        elif m:
            k = int(m.group(1) or 1)
            compiled = m.group(2) is not None
        else:
            continue
        out[compiled][k] = min(float(ips), out[compiled].get(k, math.inf))
    return out


def interpolate(points: dict[int, float], k: int) -> float:
    """Linear in K between measured pack sizes; clamped outside them."""
    ks = sorted(points)
    if k <= ks[0]:
        return points[ks[0]]
    if k >= ks[-1]:
        return points[ks[-1]]
    hi = next(i for i, x in enumerate(ks) if x >= k)
    k0, k1 = ks[hi - 1], ks[hi]
    return points[k0] + (points[k1] - points[k0]) * (k - k0) / (k1 - k0)


@dataclass
class Profile:
    """Images/s of the product loop by pack size on one device, and the file it came from."""

    device_kind: str
    device_name: str
    file: Path
    source: Literal["cache", "committed"]
    points: dict[bool, dict[int, float]]
    note: str | None = None
    model: str | None = None  # the backbone the bench measured (workload.model)

    def images_per_s(self, k: int, compiled: bool = False) -> float:
        pts = self.points[True] if compiled and self.points[True] else self.points[False] or self.points[True]
        return interpolate(pts, k)


def _read_profile(path: Path, source: Literal["cache", "committed"], kind: str) -> Profile:
    data = json.loads(path.read_text())
    points = parse_profile(data)
    if not points[False] and not points[True]:
        raise ValueError(f"{path}: no product-loop rows ('loop', 'loop packed K=...') with images_per_s")
    workload = data.get("workload") if isinstance(data.get("workload"), dict) else {}
    return Profile(kind, str(data.get("device_name", "?")), path, source, points, model=workload.get("model"))


def load_profile(device_kind: str) -> Profile:
    """The newest bench result in <cache>/bench/ whose device name matches `device_kind` (a name or part of one,
    e.g. 'h100'), else the committed reports/perf/bench-<kind>.json, else reports/perf/bench-h100.json."""
    kind = slug(device_kind)
    bench_dir = cache_dir() / "bench"
    cands = [p for p in bench_dir.glob("*.json") if p.stem == kind or f"-{kind}-" in f"-{p.stem}-"] \
        if bench_dir.is_dir() else []
    for p in sorted(cands, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return _read_profile(p, "cache", device_kind)
        except (ValueError, OSError, AttributeError):
            continue
    committed = PERF_DIR / f"bench-{kind}.json"
    path = committed if committed.is_file() else COMMITTED_PROFILE
    try:
        prof = _read_profile(path, "committed", device_kind)
    except (ValueError, OSError) as e:
        raise SuiteError(f"no usable throughput profile ({e})") from None
    if kind not in slug(prof.device_name).split("-") and kind != slug(prof.device_name):
        prof.note = (f"no bench result for '{device_kind}' in {bench_dir}; projected with the committed profile "
                     f"of {prof.device_name}")
    return prof


def default_device_kind() -> str:
    """The local GPU's name, else 'h100'."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # no usable torch / driver: project for the committed profile
        pass
    return "h100"


