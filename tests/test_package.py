"""The package a team installs: files readable as the umask allows, outputs in the working directory, --json alone on
stdout, --version, and a wheel from a clean checkout that ships every suite and finds them from any directory."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from benchmark import __version__
from benchmark.cli import app
from benchmark.config.suite import REPO_ROOT, list_suite_names
from benchmark.run.executors import queue_file, write_queue
from benchmark.run.jobs import RunJob
from benchmark.run.profiles import save_profile
from benchmark.run.recording import wandb_dir
from benchmark.schema.files import atomic_write, atomic_write_text, current_umask

runner = CliRunner()


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def test_current_umask_reads_without_changing_it() -> None:
    with umask(0o027):
        assert current_umask() == 0o027 and current_umask() == 0o027


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writers_give_the_umask_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mask: int,
                                            mode: int) -> None:
    monkeypatch.setenv("LTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    with umask(mask):
        atomic_write_text(tmp_path / "a" / "t.txt", "x")
        atomic_write(tmp_path / "a" / "b.bin", lambda tmp: Path(tmp).write_bytes(b"\0"), suffix=".bin")
        prof = save_profile({"device_name": "Fake GPU", "variants": []})
        run = SimpleNamespace(run_id="r1")  # write_queue reads only the run id and the record path
        write_queue([RunJob(run, tmp_path / "res" / "s" / "cell" / "r1.json")], ["123"])  # type: ignore[arg-type]
    assert stat.S_IMODE(prof.stat().st_mode) == mode
    assert json.loads(queue_file(tmp_path / "res" / "s").read_text()) == {"r1": "123"}
    assert set(modes(tmp_path).values()) == {mode}, modes(tmp_path)
    assert not list(tmp_path.rglob(".*.tmp")) and not list(tmp_path.rglob(".*.bin"))  # no temp file left


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_suite_in_the_working_directory_json_everywhere_and_0644(tiny_suite: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Run, dry run, status, report, validate and ls with --json from another directory: every stdout parses as JSON
    alone; records, weights and reports land under the working directory, mode 0644 under umask 022."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    assert wandb_dir() == work
    suite = str(tiny_suite)
    with umask(0o022):
        dry = runner.invoke(app, ["run", "suite", suite, "--dry-run", "--json"])
        assert dry.exit_code == 0, dry.output
        assert json.loads(dry.stdout)["counts"]["to_train"] == 2 and not (work / "results").exists()
        ran = runner.invoke(app, ["run", "suite", suite, "--tracker", "none", "--json"])
        assert ran.exit_code == 0, ran.output
        outs = json.loads(ran.stdout)
        assert [(o["row"], o["status"]) for o in outs] == [("CE", "done"), ("CE + CMO", "done")]
        assert all(Path(o["record"]).is_relative_to(work / "results" / "tiny") for o in outs)
        assert "run [1/2] CE s0" in ran.stderr and "suite 2/2 runs, 100%" in ran.stderr  # progress on stderr
        status = json.loads(runner.invoke(app, ["status", suite, "--json"]).stdout)
        assert status["counts"] == {"done": 2} and [r["status"] for r in status["runs"]] == ["done", "done"]
        rep = runner.invoke(app, ["report", suite, "--json"])
        assert rep.exit_code == 0, rep.output
        report = json.loads(rep.stdout)
        assert {Path(f).parent for f in report["files"].values()} == {Path("reports")}
        assert {c["row"] for c in report["cells"]} == {"CE", "CE + CMO", "Cited"}
    valid = json.loads(runner.invoke(app, ["validate", suite, "--json"]).stdout)
    assert valid == {"suite": "tiny", "path": suite, "ok": True, "rows": 3, "runs": 2}  # one row is cited
    ls = json.loads(runner.invoke(app, ["ls", "mixers", "--json"]).stdout)
    assert list(ls) == ["mixers"] and "cmo" in {e["name"] for e in ls["mixers"]}
    written = {**{f"results/{k}": v for k, v in modes(work / "results").items()},
               **{f"reports/{k}": v for k, v in modes(work / "reports").items()}}
    kinds = {Path(k).name.split(".", 1)[-1] for k in written}
    assert {"json", "weights.pt", "md", "csv", "png"} <= kinds, written
    assert set(written.values()) == {0o644}, written


def test_json_errors_stay_off_stdout(tmp_path: Path) -> None:
    res = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml"), "--json"])
    assert res.exit_code == 2 and res.stdout == "" and res.stderr.startswith("error: ")
    assert len(res.stderr.strip().splitlines()) == 1


def test_version_completion_and_choices_in_help() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout == f"lt-bench {__version__}\n"
    top = runner.invoke(app, ["--help"]).stdout
    assert "--install-completion" in top and "--version" in top
    helptext = runner.invoke(app, ["run", "suite", "--help"], terminal_width=200).stdout
    assert "[wandb|none]" in helptext and "[inline|local|slurm]" in helptext and "--log-every" in helptext


def test_declared_dependencies_cover_every_import() -> None:
    import ast

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = [d for ds in project.get("optional-dependencies", {}).values() for d in ds]
    declared = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"] + extras}
    dist = {"PIL": "pillow", "yaml": "pyyaml", "wandb_workspaces": "wandb-workspaces"}
    imported = set()
    for path in (REPO_ROOT / "benchmark").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            imported |= {n.split(".")[0] for n in names}
    third = {dist.get(m, m).lower() for m in imported if m not in sys.stdlib_module_names and m != "benchmark"}
    assert third and third <= declared, sorted(third - declared)
    assert all(any(c in d for c in "<>=") for d in
               tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"])  # floors


@pytest.mark.slow
def test_wheel_from_a_clean_checkout_ships_every_suite(tmp_path: Path) -> None:
    """Build a wheel from a `git clone` of this checkout (committed files only), list it, install it into a plain
    folder and find suites by name from another directory."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    src, dist, target, elsewhere = (tmp_path / n for n in ("src", "dist", "target", "elsewhere"))
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(src)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(src)], check=True, capture_output=True)
    (wheel,) = dist.glob("lt_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    committed = subprocess.run(["git", "ls-files", "suites", "benchmark"], cwd=src, capture_output=True, text=True,
                               check=True).stdout.split()
    suites = {f"benchmark/suites/{Path(f).name}" for f in committed if f.startswith("suites/") and f.endswith(".yaml")}
    assert len(suites) >= 20 and suites <= names, sorted(suites - names)
    assert {f for f in committed if f.endswith(".py")} <= names  # every module, new subpackages too
    assert "benchmark/perf/bench-h100.json" in names  # dry runs project with the committed profile
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "disabled"}
    script = """if True:
        import json
        from typer.testing import CliRunner
        import benchmark
        from benchmark.cli import app
        out = {"file": benchmark.__file__}
        for key, args in (("list", ["suites", "list", "--json"]), ("valid", ["validate", "quickstart", "--json"]),
                          ("dry", ["run", "suite", "quickstart", "--dry-run", "--json"])):
            res = CliRunner().invoke(app, args)
            out[key] = json.loads(res.stdout) if res.exit_code == 0 else res.output
        print(json.dumps(out))
    """
    proc = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert Path(got["file"]) == target / "benchmark" / "__init__.py"  # the installed copy, not this checkout
    assert {r["suite"] for r in got["list"]} == set(list_suite_names()), got["list"]
    assert Path(got["valid"]["path"]) == target / "benchmark" / "suites" / "quickstart.yaml"
    assert got["dry"]["counts"]["to_train"] == 2, got["dry"]
    assert not any(elsewhere.iterdir())  # a dry run writes nothing
