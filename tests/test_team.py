"""The team's W&B side without a network: run ids, pull from recorded API responses, the dashboard spec, report runs.

tests/fixtures/wandb_api_tiny.json was recorded from a CPU run of TINY_SUITE logged offline (what `wandb sync` uploads,
read back by tests/wandb_replay.py); tests/fixtures/results_tiny holds that run's local records. Besides the two runs
it lists an older --force'd W&B run of CE (an older record, best top-1 1.0), a run still running (no record file) and
a run of another suite.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import wandb
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.config.suite import load_suite, plan
from benchmark.run.dashboard import dashboard_spec, paper_table_markdown, save_dashboard, to_report
from benchmark.run.jobs import RunJob
from benchmark.run.recording import tracker_id
from benchmark.run.records import read_record
from benchmark.run.tracking import WANDB_ID_MAX, offline_sync_hint, wandb_run_id
from tests.conftest import TINY_SUITE
from tests.wandb_reader import flush_wandb, read_run
from tests.wandb_replay import ReplayApi, recorded_from_offline

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures"


def _one_error_line(out: str) -> str:
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    return lines[0]


def _replay(monkeypatch: pytest.MonkeyPatch, recorded: dict) -> list[ReplayApi]:
    made: list[ReplayApi] = []

    def api(*args: object, **kwargs: object) -> ReplayApi:
        made.append(ReplayApi(recorded))
        return made[-1]

    monkeypatch.setattr(wandb, "Api", api)
    return made


# ------------------------------------------------------------------------------------------------ W&B run ids


def test_wandb_run_id_mapping() -> None:
    assert wandb_run_id("ce-cmo-s0-1eeef83267") == "ce-cmo-s0-1eeef83267"  # lt-bench's ids map to themselves
    assert wandb_run_id("ce-s0-abc", "-f20261130T000000") == "ce-s0-abc-f20261130T000000"
    odd = wandb_run_id("a/b:c#d")
    assert odd.startswith("a-b-c-d-") and len(odd) == len("a-b-c-d-") + 8
    assert not set(odd) & set(":;,#?/'")
    assert wandb_run_id("a/b") != wandb_run_id("a:b")  # same sanitised text, different hashes
    long = "x" * 100
    assert len(wandb_run_id(long)) == WANDB_ID_MAX and wandb_run_id(long) != wandb_run_id(long + "y")
    assert len(wandb_run_id(long, "-f20261130T000000")) == WANDB_ID_MAX


def test_force_gets_a_new_wandb_id_kept_while_the_checkpoint_lives(tiny_suite: Path, tmp_path: Path) -> None:
    spec, _ = load_suite(str(tiny_suite))
    run = plan(spec)[0]
    path = tmp_path / "res" / "tiny" / run.cell / f"{run.run_id}.json"
    assert tracker_id(RunJob(run, path, "wandb")) == run.run_id
    forced = tracker_id(RunJob(run, path, "wandb", force=True))
    assert forced.startswith(run.run_id + "-f") and len(forced) == len(run.run_id) + 17
    assert tracker_id(RunJob(run, path, "wandb")) == run.run_id  # no checkpoint: the forced run never started
    tracker_id(RunJob(run, path, "wandb", force=True))
    path.with_suffix(".ckpt").write_bytes(b"x")
    resumed = tracker_id(RunJob(run, path, "wandb"))
    assert resumed.startswith(run.run_id + "-f")  # the forced run resumes into its own W&B run
    assert path.with_suffix(".wandb-id").read_text() == resumed
    assert tracker_id(RunJob(run, path, "none", force=True)) == run.run_id  # no W&B: no id file either
    assert path.with_suffix(".wandb-id").read_text() == resumed


def test_smoke_runs_in_their_own_group_with_git_and_version(tiny_suite: Path, tmp_path: Path,
                                                            wandb_offline: Path) -> None:
    res = runner.invoke(app, ["run", "suite", str(tiny_suite), "--results-dir", str(tmp_path / "res"),
                              "--tracker", "wandb", "--smoke", "--rows", "CE"])
    assert res.exit_code == 0, res.output
    flush_wandb()
    (f,) = wandb_offline.glob("wandb/offline-run-*/run-*.wandb")
    run = read_run(f)
    rec = read_record(next((tmp_path / "res").glob("tiny/ce/smoke-*.json")))
    assert run["run"]["group"] == "tiny-smoke" and run["run"]["id"] == rec.run_id
    assert run["config"]["smoke"] is True and run["config"]["suite"] == "tiny"
    assert run["config"]["git_commit"] == rec.environment["git_commit"]
    assert run["config"]["git_dirty"] == rec.environment["git_dirty"]
    assert "lt_bench_version" in run["config"]
    assert f"wandb sync {wandb_offline / 'wandb'}/offline-run-*" in res.output


# ------------------------------------------------------------------------------------------------ pull


def test_pull_rebuilds_the_local_records_of_a_cpu_run(tiny_suite: Path, tmp_path: Path, wandb_offline: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    res = runner.invoke(app, ["run", "suite", str(tiny_suite), "--results-dir", str(tmp_path / "res"),
                              "--tracker", "wandb"])
    assert res.exit_code == 0, res.output
    flush_wandb()
    made = _replay(monkeypatch, {"projects": {"team/lt-bench": recorded_from_offline(wandb_offline)}})
    pulled = tmp_path / "pulled"
    res = runner.invoke(app, ["pull", str(tiny_suite), "--entity", "team", "--project", "lt-bench",
                              "--results-dir", str(pulled)])
    assert res.exit_code == 0, res.output
    assert "2 records written" in res.output
    assert made[0].calls == [("team/lt-bench", {"config.suite": "tiny"})]
    local = sorted(p.relative_to(tmp_path / "res") for p in (tmp_path / "res").rglob("*.json"))
    assert len(local) == 2 and sorted(p.relative_to(pulled) for p in pulled.rglob("*.json")) == local
    for rel in local:
        assert read_record(pulled / rel) == read_record(tmp_path / "res" / rel)
        assert (pulled / rel).read_bytes() == (tmp_path / "res" / rel).read_bytes()
    again = runner.invoke(app, ["pull", str(tiny_suite), "--entity", "team", "--project", "lt-bench",
                                "--results-dir", str(pulled)])
    assert "0 records written, 2 unchanged" in again.output
    reports = [runner.invoke(app, ["report", str(tiny_suite), "--results-dir", str(d), "--out-dir",
                                   str(tmp_path / f"rep-{d.name}")]) for d in (tmp_path / "res", pulled)]
    assert all(r.exit_code == 0 for r in reports)
    assert (tmp_path / "rep-res" / "tiny.md").read_text() == (tmp_path / "rep-pulled" / "tiny.md").read_text()


def test_pull_makes_the_linked_copies_of_another_suites_runs(tiny_suite: Path, tmp_path: Path, wandb_offline: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """tiny2 has tiny's settings: `run suite tiny2` trains nothing and writes copies (reused_from); pulling tiny2
    from W&B, where only tiny's runs are, gives the same copies and tiny's records they point to."""
    tiny2 = tmp_path / "suites" / "tiny2.yaml"
    tiny2.write_text(TINY_SUITE.replace("suite: tiny\n", "suite: tiny2\n"))
    res = tmp_path / "res"
    for s in (tiny_suite, tiny2):
        out = runner.invoke(app, ["run", "suite", str(s), "--results-dir", str(res), "--tracker", "wandb"])
        assert out.exit_code == 0, out.output
    flush_wandb()
    local = sorted(p.relative_to(res) for p in res.rglob("*.json"))
    assert len(local) == 4 and all(read_record(res / p).reused_from for p in local if p.parts[0] == "tiny2")
    recorded = recorded_from_offline(wandb_offline)
    assert sorted(r["config"]["suite"] for r in recorded) == ["tiny", "tiny"]  # copies have no W&B run
    _replay(monkeypatch, {"projects": {"team/lt-bench": recorded}})
    pulled = tmp_path / "pulled"
    out = runner.invoke(app, ["pull", str(tiny2), "--entity", "team", "--project", "lt-bench", "--results-dir",
                              str(pulled)])
    assert out.exit_code == 0, out.output
    assert "0 W&B runs of tiny2; 2 records written" in out.output and "2 linked copies" in out.output
    assert sorted(p.relative_to(pulled) for p in pulled.rglob("*.json")) == local
    for rel in local:
        assert (pulled / rel).read_bytes() == (res / rel).read_bytes(), rel


def test_pull_from_the_recorded_project(tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _replay(monkeypatch, json.loads((FIXTURES / "wandb_api_tiny.json").read_text()))
    pulled = tmp_path / "pulled"
    res = runner.invoke(app, ["pull", str(tiny_suite), "--entity", "team", "--project", "lt-bench",
                              "--results-dir", str(pulled)])
    assert res.exit_code == 0, res.output
    assert "4 W&B runs of tiny; 2 records written" in res.output  # the other suite's run is filtered out by W&B
    assert "skipped smoke-ce-s1-0000: running" in res.output
    local = FIXTURES / "results_tiny"
    files = sorted(p.relative_to(local) for p in local.rglob("*.json"))
    assert sorted(p.relative_to(pulled) for p in pulled.rglob("*.json")) == files
    for rel in files:
        # the same record; the pulled copy carries the digest its writer adds (the fixture predates digests)
        assert read_record(pulled / rel).model_copy(update={"digest": None}) == read_record(local / rel)
    ce = read_record(next(pulled.glob("tiny/ce/*.json")))
    assert ce.metrics["best"]["acc/all"] != 1.0  # the older --force'd W&B run's record lost to the newer one
    rep = runner.invoke(app, ["report", str(tiny_suite), "--results-dir", str(pulled), "--out-dir",
                              str(tmp_path / "rep")])
    assert rep.exit_code == 0
    assert f"| CE | 50.0 | {ce.metrics['best']['acc/all']:.1f} (n=1) |" in (tmp_path / "rep" / "tiny.md").read_text()


def test_pull_keeps_a_newer_local_record(tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _replay(monkeypatch, json.loads((FIXTURES / "wandb_api_tiny.json").read_text()))
    pulled = tmp_path / "pulled"
    shutil.copytree(FIXTURES / "results_tiny", pulled)
    p = next(pulled.glob("tiny/ce/*.json"))
    newer = read_record(p).model_copy(update={"created": "2099-01-01T00:00:00+00:00"})
    p.write_text(newer.model_dump_json(indent=1))
    res = runner.invoke(app, ["pull", str(tiny_suite), "--entity", "team", "--project", "lt-bench",
                              "--results-dir", str(pulled)])
    assert "0 records written, 1 unchanged, 1 kept" in res.output
    assert read_record(p) == newer


def test_pull_errors_one_line_exit_2(tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["pull", str(tiny_suite), "--entity", "team", "--project", "lt-bench", "--results-dir", str(tmp_path / "r")]
    # not logged in: the real client, no key anywhere
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "not logged in to W&B" in _one_error_line(res.output)
    # no network: the real client with a key, against a port where nothing listens
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "cannot reach W&B" in _one_error_line(res.output)
    # unknown project
    _replay(monkeypatch, json.loads((FIXTURES / "wandb_api_tiny.json").read_text()))
    res = runner.invoke(app, [*args[:5], "nope", "--results-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and "no W&B project 'team/nope'" in _one_error_line(res.output)
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------------ dashboard


def test_dashboard_spec_of_a_table_and_of_fig3(tiny_suite: Path) -> None:
    spec, _ = load_suite(str(tiny_suite))
    d = dashboard_spec(spec, "team", "lt-bench")
    assert d["title"] == "lt-bench tiny: Tiny suite for tests"
    assert d["runset"] == {"name": "tiny", "filters": "Group = 'tiny'", "groupby": ["config.row"]}
    assert [(p["type"], p["title"]) for p in d["panels"]] == [
        ("markdown", "Paper table"), ("bar", "Top-1 (best epoch), mean ± std over seeds"),
        ("bar", "Many / medium / few"), ("line", "Learning curves: test top-1"),
        ("line", "Learning curves: training loss")]
    assert d["panels"][2]["metrics"] == ["best/acc/many", "best/acc/medium", "best/acc/few"]
    assert d["panels"][3]["y"] == ["test/acc/all"] and d["panels"][3]["x"] == "epoch"
    assert paper_table_markdown(spec).splitlines() == [
        "| row | acc/all | acc/many | acc/medium | acc/few |", "|---|---|---|---|---|",
        "| CE | 50 | n/a | n/a | n/a |", "| CE + CMO | 60 | n/a | n/a | 10 |",
        "| Cited (cited) | 70 | n/a | n/a | n/a |"]
    smoke = dashboard_spec(spec, "team", "lt-bench", smoke=True)
    assert smoke["runset"]["filters"] == "Group = 'tiny-smoke'" and "(smoke)" in smoke["title"]

    fig3, _ = load_suite("fig3")
    f = dashboard_spec(fig3, "team", "lt-bench")
    scatter = [p for p in f["panels"] if p["type"] == "scatter"]
    assert len(scatter) == 1 and scatter[0]["x"] == "mixer.alpha" and scatter[0]["y"] == "best/acc/all"
    assert "| CE | 38.6 |" in f["panels"][0]["markdown"]
    t3, _ = load_suite("table3")
    assert dashboard_spec(t3, "team", "p")["runset"]["groupby"] == ["config.row", "config.column"]


def test_dashboard_report_objects_built_offline() -> None:
    wr = pytest.importorskip("wandb_workspaces.reports.v2")
    spec, _ = load_suite("fig3")
    report = to_report(dashboard_spec(spec, "team", "lt-bench"))
    assert isinstance(report, wr.Report) and report.entity == "team" and report.project == "lt-bench"
    assert report.title.startswith("lt-bench fig3: Figure 3")
    h1, p, grid = report.blocks
    assert isinstance(h1, wr.H1) and isinstance(p, wr.P) and isinstance(grid, wr.PanelGrid)
    (rs,) = grid.runsets
    assert rs.filters == "Group = 'fig3'" and rs.groupby == ["config.row"]
    kinds = [type(x).__name__ for x in grid.panels]
    assert kinds == ["MarkdownPanel", "BarPlot", "BarPlot", "ScatterPlot", "LinePlot", "LinePlot"]
    assert "| CE | 38.6 |" in grid.panels[0].markdown
    assert grid.panels[1].groupby == wr.Config("row") and grid.panels[1].groupby_rangefunc == "stddev"
    assert grid.panels[3].x == wr.Config("mixer.alpha") and grid.panels[3].y == wr.SummaryMetric("best/acc/all")
    assert grid.panels[4].x == "epoch" and grid.panels[4].y == ["test/acc/all"]


def test_dashboard_command(tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb_workspaces")
    res = runner.invoke(app, ["dashboard", "fig3", "--entity", "team", "--project", "lt-bench", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "scatter: Top-1 vs α" in res.output and "Group = 'fig3'" in res.output
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    res = runner.invoke(app, ["dashboard", "fig3", "--entity", "team", "--project", "lt-bench"])
    assert res.exit_code == 2 and "not logged in to W&B" in _one_error_line(res.output)


# ------------------------------------------------------------------------------------------------ report runs


def test_report_logs_table_and_plot_to_a_report_run(tiny_suite: Path, tmp_path: Path, wandb_offline: Path) -> None:
    shutil.copytree(FIXTURES / "results_tiny", tmp_path / "res")
    res = runner.invoke(app, ["report", str(tiny_suite), "--results-dir", str(tmp_path / "res"), "--out-dir",
                              str(tmp_path / "rep"), "--tracker", "wandb"])
    assert res.exit_code == 0, res.output
    flush_wandb()
    (f,) = wandb_offline.glob("wandb/offline-run-*/run-*.wandb")
    run = read_run(f)
    assert run["run"]["job_type"] == "report" and run["run"]["group"] == "tiny"
    assert run["config"]["report_of"] == "tiny" and "suite" not in run["config"]  # pull never meets it
    table, image = ({k.removeprefix(key + "/"): v for k, v in run["summary"].items() if k.startswith(key + "/")}
                    for key in ("report/tiny/table", "report/tiny/plot"))  # logged with run.log: nested keys
    assert table["_type"] == "table-file" and image["_type"] == "image-file"
    logged = json.loads((f.parent / "files" / table["path"]).read_text())
    csv_lines = (tmp_path / "rep" / "tiny.csv").read_text().splitlines()
    assert logged["columns"] == csv_lines[0].split(",") and len(logged["data"]) == len(csv_lines) - 1
    assert (f.parent / "files" / image["path"]).stat().st_size > 1000
    assert image["width"] > 100 and image["height"] > 100
    assert "wandb sync" in res.output
    bad = runner.invoke(app, ["report", str(tiny_suite), "--results-dir", str(tmp_path / "res"), "--tracker", "wb"])
    assert bad.exit_code == 2 and "--tracker 'wb': use wandb or none" in _one_error_line(bad.output)


def test_dashboard_save_updates_the_report_with_the_same_title(monkeypatch: pytest.MonkeyPatch) -> None:
    wr = pytest.importorskip("wandb_workspaces.reports.v2")
    spec, _ = load_suite("fig3")
    d = dashboard_spec(spec, "team", "lt-bench")
    saved: list[str] = []
    monkeypatch.setattr(wr.Report, "save", lambda self, draft=False, clone=False: saved.append(self.id) or self)
    monkeypatch.setattr(wr.Report, "url", property(lambda self: f"https://wandb.ai/team/lt-bench/reports/{self.id}"))

    class Existing:
        def __init__(self, title: str, id_: str) -> None:
            self.display_name, self.id = title, id_

    class Api:
        def __init__(self, reports: list[Existing]) -> None:
            self._reports, self.paths = reports, []

        def reports(self, path: str) -> list[Existing]:
            self.paths.append(path)
            return self._reports

    api = Api([Existing("lt-bench table9: x", "r1"), Existing(d["title"], "r2")])
    assert save_dashboard(d, api) == "https://wandb.ai/team/lt-bench/reports/r2"
    assert saved == ["r2"] and api.paths == ["team/lt-bench"]
    assert save_dashboard(d, Api([Existing("other", "r1")])) == "https://wandb.ai/team/lt-bench/reports/"
    assert saved == ["r2", ""]  # no report of that title yet: a new one


def test_offline_sync_hint() -> None:
    off = {"tracker": "wandb", "mode": "offline", "dir": "/w/wandb/offline-run-1-a/files"}
    assert offline_sync_hint([{"tracker": "none"}, {"tracker": "wandb", "mode": "online", "dir": "/x/files"}]) is None
    hint = offline_sync_hint([off, {**off, "dir": "/w/wandb/offline-run-2-b/files"}, {"tracker": "none"}])
    assert hint == ("W&B: 2 offline run(s) written under /w/wandb; upload them with:\n"
                    "  wandb sync /w/wandb/offline-run-*")
