"""Hardening: damaged checkpoints, records and weights; untrusted records; stale temp files; suite rules; OS errors."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.config.suite import load_suite, plan
from benchmark.engine.checkpoint import (
    DamagedFileError,
    TrainState,
    checkpoint_epoch,
    load_checkpoint,
    load_sealed,
    save_checkpoint,
)
from benchmark.run.records import RunRecord, read_record, record_path, write_record
from benchmark.run.stage1 import save_weights
from tests.conftest import TINY_SUITE

runner = CliRunner()


def _one_line(res: object, code: int, *needles: str) -> None:
    """The command exited `code` with one 'error:' line holding every needle."""
    out = res.output  # type: ignore[attr-defined]
    assert res.exit_code == code, out  # type: ignore[attr-defined]
    assert out.startswith("error: ") and len(out.strip().splitlines()) == 1, out
    for n in needles:
        assert n in out, (n, out)


def _suite(tmp_path: Path, text: str = TINY_SUITE, name: str = "tiny") -> Path:
    p = tmp_path / "suites" / f"{name}.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _flip(path: Path, *offsets: int) -> None:
    """Flip bits of a few bytes in place (offsets count from the end when negative)."""
    b = bytearray(path.read_bytes())
    for off in offsets:
        b[off] ^= 0x5A
    path.write_bytes(bytes(b))


def _fake_done(res: Path, run: object, run_id: str | None = None) -> Path:
    """A finished record of `run` without training."""
    path = record_path(res, run.suite, run.cell, run.run_id)  # type: ignore[attr-defined]
    write_record(path, RunRecord(status="done", run_id=run_id or run.run_id,  # type: ignore[attr-defined]
                                 config_hash=run.config_hash, suite=run.suite,  # type: ignore[attr-defined]
                                 suite_version=run.suite_version, row=run.row,  # type: ignore[attr-defined]
                                 seed=run.seed, settings=run.settings.model_dump(mode="json"),  # type: ignore
                                 metrics={"best": {"acc/all": 12.5}, "last": {"acc/all": 10.0}}))
    return path


# ------------------------------------------------------------------------------------------- suite file rules


def test_duplicate_yaml_key_is_refused_with_its_line(tmp_path: Path) -> None:
    text = TINY_SUITE.replace("version: 1\n", "version: 1\nversion: 2\n")
    line = text.splitlines().index("version: 2") + 1
    _one_line(runner.invoke(app, ["validate", str(_suite(tmp_path, text))]), 2,
              f"duplicate key 'version' (line {line})")


def test_suite_field_must_match_the_file_name(tmp_path: Path) -> None:
    _one_line(runner.invoke(app, ["validate", str(_suite(tmp_path, name="other"))]), 2,
              "suite: 'tiny' differs from the file name 'other'")


def test_rows_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    text = TINY_SUITE.replace("  - name: Cited\n", "  - name: ce\n    method: {loss: ce}\n  - name: Cited\n")
    _one_line(runner.invoke(app, ["validate", str(_suite(tmp_path, text))]), 2,
              "two rows named 'CE' and 'ce'")
    text = TINY_SUITE.replace("  - name: Cited\n", "  - name: CE+CMO\n    method: {loss: ce}\n  - name: Cited\n")
    _one_line(runner.invoke(app, ["validate", str(_suite(tmp_path, text))]), 2,
              "two rows named 'CE + CMO' and 'CE+CMO'")


def test_num_experts_needs_a_ride_backbone(tmp_path: Path) -> None:
    text = TINY_SUITE.replace("  mixer: {start: -1, end: 0}\n",
                              "  mixer: {start: -1, end: 0}\n  backbone: {num_experts: 3}\n")
    _one_line(runner.invoke(app, ["validate", str(_suite(tmp_path, text))]), 2,
              "backbone.num_experts is for multi-expert backbones (ride_*), not 'resnet32_cifar'")


def test_include_outside_the_allowed_folders_is_refused_without_echo(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "base.yaml"
    secret.parent.mkdir()
    secret.write_text("hunter2_password: [unclosed\n")
    text = TINY_SUITE.replace("suite: tiny\n", f"suite: tiny\ninclude: {secret}\n")
    res = runner.invoke(app, ["validate", str(_suite(tmp_path, text))])
    _one_line(res, 2, "is outside the suites and working folders")
    assert "hunter2" not in res.output.replace(str(secret), "")
    # relative to the suite's folder it may go anywhere the user points it; a parse error there names the line only
    rel = TINY_SUITE.replace("suite: tiny\n", "suite: tiny\ninclude: ../elsewhere/base.yaml\n")
    res = runner.invoke(app, ["validate", str(_suite(tmp_path, rel))])
    _one_line(res, 2, "base.yaml:2: malformed YAML")
    assert "hunter2" not in res.output


def test_non_utf8_suite_and_unknown_device(tmp_path: Path) -> None:
    p = _suite(tmp_path)
    p.write_bytes(TINY_SUITE.replace('"Tiny suite for tests"', '"caf\xe9"').encode("latin-1"))
    _one_line(runner.invoke(app, ["validate", str(p)]), 2, "not UTF-8 text", "save the suite as UTF-8")
    ok = _suite(tmp_path)
    _one_line(runner.invoke(app, ["run", "suite", str(ok), "--set", "train.device=tpu", "--tracker", "none",
                                  "--results-dir", str(tmp_path / "res")]), 2, "train.device")
    assert not (tmp_path / "res").exists()


# ------------------------------------------------------------------------------------------- digests


def test_record_digest_round_trip_and_legacy_records(tmp_path: Path) -> None:
    run = plan(load_suite(str(_suite(tmp_path)))[0])[0]
    path = _fake_done(tmp_path / "res", run)
    stored = json.loads(path.read_text())
    assert len(stored["digest"]) == 64 and read_record(path).metrics["best"]["acc/all"] == 12.5
    del stored["digest"]  # as written before digests existed (the committed results/ records)
    path.write_text(json.dumps(stored))
    assert read_record(path).digest is None and read_record(path).metrics["best"]["acc/all"] == 12.5


def test_damaged_record_stops_the_command_and_force_overwrites(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    run = plan(load_suite(str(suite))[0])[0]
    path = _fake_done(tmp_path / "res", run)
    path.write_text(path.read_text().replace('"acc/all": 12.5', '"acc/all": 92.5'))
    args = ["run", "suite", str(suite), "--results-dir", str(tmp_path / "res"), "--tracker", "none", "--dry-run"]
    _one_line(runner.invoke(app, args), 2, str(path), "damaged record", "--force", "delete it")
    assert path.is_file()
    status = runner.invoke(app, ["status", str(suite), "--results-dir", str(tmp_path / "res")])
    assert status.exit_code == 0 and "damaged record" in status.output
    forced = runner.invoke(app, [*args, "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert [r["action"] for r in json.loads(forced.output)["runs"]] == ["train", "train"]


def test_record_of_another_run_at_this_path_is_not_trusted(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    ce, cmo = plan(load_suite(str(suite))[0])
    other = _fake_done(tmp_path / "res", cmo)
    target = record_path(tmp_path / "res", ce.suite, ce.cell, ce.run_id)
    target.parent.mkdir(parents=True)
    shutil.copy(other, target)  # another run's finished record copied to this run's path
    args = ["run", "suite", str(suite), "--results-dir", str(tmp_path / "res"), "--tracker", "none", "--dry-run"]
    _one_line(runner.invoke(app, args), 2, str(target), f"record is of run '{cmo.run_id}'", "--force")
    assert target.read_bytes() == other.read_bytes()
    target.unlink()
    target.mkdir()  # a folder where the record belongs
    _one_line(runner.invoke(app, args), 2, str(target), "a folder")


def _state() -> tuple[torch.Generator, np.random.Generator]:
    return torch.Generator().manual_seed(0), np.random.default_rng(0)


def test_damaged_checkpoint_is_refused_and_legacy_checkpoints_load(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    gen, rng = _state()
    model = {"w": torch.arange(1000, dtype=torch.float32)}
    save_checkpoint(ckpt, "r1", TrainState(epoch=3), model, {}, gen, rng)
    assert ckpt.read_bytes().startswith(b"LTBENCH-SHA256 ") and checkpoint_epoch(ckpt) == 3
    st, m, _ = load_checkpoint(ckpt, "r1", *_state())
    assert st.epoch == 3 and torch.equal(m["w"], model["w"])
    _flip(ckpt, -3000, -2990)  # inside the float data
    with pytest.raises(DamagedFileError, match="damaged checkpoint .* delete it or rerun with --force"):
        load_checkpoint(ckpt, "r1", *_state())
    assert ckpt.is_file() and checkpoint_epoch(ckpt) == 0
    legacy = tmp_path / "legacy.ckpt"  # written by torch.save directly, before digests
    gen, rng = _state()
    save_checkpoint(tmp_path / "fresh.ckpt", "r1", TrainState(epoch=2), model, {}, gen, rng)
    raw = (tmp_path / "fresh.ckpt").read_bytes()
    legacy.write_bytes(raw[raw.index(b"\n") + 1:])
    assert load_checkpoint(legacy, "r1", *_state())[0].epoch == 2


def test_damaged_weights_file_is_refused(tmp_path: Path) -> None:
    w = tmp_path / "run.weights.pt"
    net = torch.nn.Linear(50, 20)
    save_weights(net, w)
    assert torch.equal(load_sealed(w, "weights file")["weight"], net.weight.detach())
    _flip(w, -500)
    with pytest.raises(DamagedFileError, match=f"{w}: damaged weights file"):
        load_sealed(w, "weights file")
    assert w.is_file()


def test_damaged_checkpoint_on_the_cli_and_stale_temp_files(tmp_path: Path) -> None:
    """A flipped checkpoint: exit 2 naming it, the file kept; stale temp files of the run are removed, saying so."""
    suite = _suite(tmp_path)
    res = tmp_path / "res"
    run = plan(load_suite(str(suite))[0])[0]
    rec = record_path(res, run.suite, run.cell, run.run_id)
    ckpt = rec.with_suffix(".ckpt")
    gen, rng = _state()
    save_checkpoint(ckpt, run.run_id, TrainState(epoch=1), {"w": torch.zeros(2000)}, {}, gen, rng)
    _flip(ckpt, -4000)
    stale = [rec.parent / f".{ckpt.name}.abc123.tmp", rec.parent / f".{rec.stem}.xyz.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    keep = rec.parent / ".other-run.ckpt.q.tmp"  # another run's temp file: not this run's to clean
    keep.write_bytes(b"x")
    out = runner.invoke(app, ["run", "suite", str(suite), "--results-dir", str(res), "--tracker", "none",
                              "--rows", "CE"])
    assert out.exit_code == 2, out.output
    assert f"error: {ckpt}: damaged checkpoint" in out.output and "--force" in out.output
    assert all(f"removed stale temp file {p}" in out.output.replace("\n", "") for p in stale)
    assert ckpt.is_file() and keep.is_file() and not any(p.exists() for p in stale) and not rec.exists()


# ------------------------------------------------------------------------------------------- OS errors


def test_results_path_of_the_wrong_kind(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    (tmp_path / "afile").write_text("x")
    for res in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        _one_line(runner.invoke(app, ["run", "suite", str(suite), "--results-dir", str(res), "--tracker", "none"]),
                  2, f"{tmp_path / 'afile'} is a file, not a folder")
    cell = tmp_path / "res" / "tiny" / "ce"
    cell.parent.mkdir(parents=True)
    cell.write_text("x")  # a file where the cell's folder belongs
    _one_line(runner.invoke(app, ["run", "suite", str(suite), "--results-dir", str(tmp_path / "res"), "--tracker",
                                  "none"]), 2, str(cell))


def test_garbage_queue_file_under_status(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    q = tmp_path / "res" / "tiny" / "_queue.json"
    q.parent.mkdir(parents=True)
    for garbage in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        q.write_bytes(garbage)
        _one_line(runner.invoke(app, ["status", str(suite), "--results-dir", str(tmp_path / "res")]), 2,
                  f"{q}: not a queue file", "delete it")


def test_absurd_sizes_run_out_of_memory_as_one_line(tmp_path: Path) -> None:
    text = TINY_SUITE.replace("max_per_class: 24", "max_per_class: 100000").replace("image_size: 8",
                                                                                     "image_size: 1024")
    res = runner.invoke(app, ["run", "suite", str(_suite(tmp_path, text)), "--results-dir", str(tmp_path / "res"),
                              "--tracker", "none", "--rows", "CE"])
    _one_line(res, 2, "out of memory", "data.image_size")


def test_os_error_classes_become_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PermissionError (e.g. an unsearchable working folder: as root it cannot be made), read-only file system,
    no space: raised where a relative suite path is looked up, each is one line naming the path and the cause."""
    import benchmark.config.suite as suite_mod

    for err, cause in ((PermissionError(errno.EACCES, "Permission denied", "tiny.yaml"), "permission denied"),
                       (OSError(errno.EROFS, "Read-only file system", "tiny.yaml"), "read-only file system"),
                       (OSError(errno.ENOSPC, "No space left on device", "tiny.yaml"), "no space left"),
                       (NotADirectoryError(errno.ENOTDIR, "Not a directory", "tiny.yaml"), "is a file, not a folder"),
                       (IsADirectoryError(errno.EISDIR, "Is a directory", "tiny.yaml"), "is a folder where a file")):
        def boom(*a: object, e: OSError = err, **k: object) -> None:
            raise e
        monkeypatch.setattr(suite_mod, "find_suite", boom)
        _one_line(runner.invoke(app, ["validate", "tiny.yaml"]), 2, "tiny.yaml: ", cause)


def test_no_space_mid_run_is_a_failed_record_and_before_a_run_one_line(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmark.run.runner as runner_mod
    import benchmark.run.unit as unit_mod

    suite = _suite(tmp_path)
    res = tmp_path / "res"

    def full(model: object, path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(unit_mod, "save_weights", full)
    out = runner.invoke(app, ["run", "suite", str(suite), "--results-dir", str(res), "--tracker", "none",
                              "--rows", "CE"])
    assert out.exit_code == 1, out.output
    rec = read_record(next(res.glob("tiny/ce/*.json")))
    assert rec.status == "failed" and "weights.pt: no space left on the device" in rec.error
    monkeypatch.setattr(runner_mod, "MIN_FREE_BYTES", 2**62)  # a disk that is (nearly) full before the run
    _one_line(runner.invoke(app, ["run", "suite", str(suite), "--results-dir", str(res), "--tracker", "none",
                                  "--rows", "CE + CMO"]), 2, "free on its disk", "--results-dir")


def test_full_tmpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real full disk: a 1 MiB tmpfs (needs root and mount; skipped where it cannot be mounted)."""
    import benchmark.run.runner as runner_mod

    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    try:
        suite = _suite(tmp_path)
        args = ["run", "suite", str(suite), "--results-dir", str(mnt / "res"), "--tracker", "none", "--rows", "CE"]
        _one_line(runner.invoke(app, args), 2, "KiB free on its disk")  # checked before anything runs
        monkeypatch.setattr(runner_mod, "MIN_FREE_BYTES", 0)
        (mnt / "filler").write_bytes(b"\0" * (2**20 - 8192))
        res = runner.invoke(app, args)  # trains; the weights do not fit, the failed record does
        assert res.exit_code == 1 and "weights.pt: no space left on the device" in res.output, res.output
        rec_path = next((mnt / "res").glob("tiny/ce/*.json"))
        before = rec_path.read_bytes()
        assert read_record(rec_path).status == "failed"
        with pytest.raises(OSError), open(mnt / "filler2", "wb", buffering=0) as f:
            while True:  # fill the disk to the last byte
                f.write(b"\0" * 4096)
        res = runner.invoke(app, [*args, "--retry-failed"])  # now not even the record fits: one line, exit 2
        last = res.output.strip().replace("\n", "")
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert f"error: {rec_path}: no space left on the device" in last, res.output
        assert rec_path.read_bytes() == before and not list((mnt / "res").rglob("*.tmp"))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_unwritable_cell_folder_as_filelock_reports_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """filelock raises PermissionError(EACCES, ..., lock path) in a folder it cannot write (simulated: as root
    every folder is writable; the real case is test_unwritable_cell_folder_for_real)."""
    import benchmark.run.unit as unit_mod

    class Denied:
        def __init__(self, path: str, timeout: float = 0) -> None:
            raise PermissionError(errno.EACCES, "Permission denied", path)
    monkeypatch.setattr(unit_mod, "FileLock", Denied)
    suite = _suite(tmp_path)
    out = runner.invoke(app, ["run", "suite", str(suite), "--results-dir", str(tmp_path / "res"), "--tracker",
                              "none", "--rows", "CE"])
    _one_line(out, 2, str(tmp_path / "res" / "tiny" / "ce"), ".lock: permission denied")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_cell_folder_for_real(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    cell = tmp_path / "res" / "tiny" / "ce"
    cell.mkdir(parents=True)
    cell.chmod(0o500)
    try:
        out = runner.invoke(app, ["run", "suite", str(suite), "--results-dir", str(tmp_path / "res"), "--tracker",
                                  "none", "--rows", "CE"])
        _one_line(out, 2, str(cell), "permission denied")
    finally:
        cell.chmod(0o700)
